// The optimised kernels, in the order dispatch tries them (the reference is always last);
// kernels/kernel.cpp calls this once to build optimised_kernels().
#include "kernels/cpu/cpu_kernels.h"

#include "backend/dnnl_util.h"

namespace qs::kernels {

const char* f32_or_widened_bf16(const ops::OpCall& c) {
  for (auto& t : c.in) {
    if (!t.defined() || t.dtype() == DType::f32) continue;
    if (t.dtype() != DType::bf16) return "f32 or bf16 only";
    if (backend::native_bf16()) return "bf16 runs natively on oneDNN here";
  }
  return nullptr;
}

}  // namespace qs::kernels

namespace qs::ops {

void register_optimised_kernels(KernelTable& table) {
  kernels::register_elementwise_cpu(table);
  kernels::register_gemv_f32_cpu(table);  // before oneDNN: linear at batch <= 4 (decoding)
  kernels::register_matmul_dnnl(table);
  kernels::register_matmul_f64(table);
  kernels::register_index_cpu(table);
  kernels::register_reduce_cpu(table);
  kernels::register_softmax_cpu(table);
  kernels::register_norm_cpu(table);
  kernels::register_dropout_cpu(table);
  kernels::register_conv_c1_cpu(table);  // before oneDNN: it takes the single-input-channel layers
  kernels::register_conv_bwdw_cpu(table);  // before oneDNN: backward-weights on 8-channel blocks
  kernels::register_conv_dnnl(table);
  kernels::register_pool_cpu(table);
  kernels::register_pool_u8_cpu(table);
  kernels::register_batch_norm_cpu(table);
  kernels::register_attention_cpu(table);
  kernels::register_rope_cpu(table);
  kernels::register_topk_cpu(table);
  kernels::register_quant_cpu(table);
  kernels::register_quant_conv_c1_cpu(table);  // before oneDNN: one input channel, AVX-512 VNNI
  kernels::register_quant_dnnl(table);
  kernels::register_quant_woq_cpu(table);
  kernels::register_fake_quant_cpu(table);
}

}  // namespace qs::ops
