// qiusuo info: what this build is and what it will run on.
#include <oneapi/dnnl/dnnl.hpp>

#include <iostream>

#include "backend/dnnl_util.h"
#include "cli/cli.h"
#include "ops/op.h"
#include "qiusuo/autocast.h"
#include "qiusuo/tensor.h"

namespace qs::cli {


int cmd_info(Args a) {
  bool ops_list = a.flag("ops");
  a.finish();
  const dnnl_version_t* v = dnnl_version();
  std::cout << "qiusuo 0.1.0\n";
#ifdef QS_WITH_OPTIMISED
  std::cout << "kernels: optimised + reference\n";
#else
  std::cout << "kernels: reference only\n";
#endif
  std::cout << "oneDNN " << v->major << "." << v->minor << "." << v->patch << ", CPU ISA in use: "
            << backend::cpu_isa_name() << "\n";
  // The fast paths chosen by the ISA (ONEDNN_MAX_CPU_ISA caps them with oneDNN's).
  std::cout << "int8 products: "
            << (backend::exact_u8s8() ? "u8 x s8 exact in s32 (VNNI/AMX): full-range activations in one product"
                                      : "u8 x s8 saturate in s16 (no VNNI): activations above 127 split into 7 + 1 bits")
            << "\n";
  std::cout << "bf16 products: "
            << (native_bf16_available() ? "native on oneDNN (AVX512-BF16/AMX)"
                                        : "widened to f32 (no native bf16): bf16 numerics, f32 speed")
            << "\n";
  std::cout << "threads: " << get_num_threads() << "\n";
  std::cout << "ops in the table: " << ops::op_table().size() << "\n";
  if (ops_list)
    for (auto& d : ops::op_table()) {
      std::cout << "  " << d.name << ":";
      for (auto& k : d.optimised) std::cout << " " << k.name;
      std::cout << " ref" << ((d.flags & ops::kDiff) ? "  (differentiable)" : "") << "\n";
    }
  return kExitOk;
}

}  // namespace qs::cli
