// qiusuo info: what this build is and what it will run on.
#include <oneapi/dnnl/dnnl.hpp>

#include <iostream>

#include "cli/cli.h"
#include "ops/op.h"
#include "qiusuo/tensor.h"

namespace qs::cli {

namespace {
const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}
}  // namespace

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
            << isa_name(dnnl::get_effective_cpu_isa()) << "\n";
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
