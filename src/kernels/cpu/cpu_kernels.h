// Optimised CPU kernels (SIMD + OpenMP loops, oneDNN primitives). Each family
// registers its kernels with the op table.
#pragma once
#include "kernels/kernel.h"

namespace qs::kernels {

// For f32 kernels that also take autocast's bf16 operands by widening them: nullptr when
// every defined input is f32, or bf16 on a CPU where oneDNN has no native bf16 (there
// widening is what oneDNN would do too); else why the kernel declines.
// (register.cpp)
const char* f32_or_widened_bf16(const ops::OpCall& c);

void register_elementwise_cpu(ops::KernelTable& t);
void register_gemv_f32_cpu(ops::KernelTable& t);  // gemv_f32_cpu.cpp: linear at <= 4 rows, before oneDNN
void register_matmul_dnnl(ops::KernelTable& t);
void register_matmul_f64(ops::KernelTable& t);
void register_index_cpu(ops::KernelTable& t);
void register_reduce_cpu(ops::KernelTable& t);
void register_softmax_cpu(ops::KernelTable& t);
void register_norm_cpu(ops::KernelTable& t);
void register_dropout_cpu(ops::KernelTable& t);
void register_conv_c1_cpu(ops::KernelTable& t);  // conv_c1_cpu.cpp: one input channel, AVX2
void register_conv_bwdw_cpu(ops::KernelTable& t);  // conv_bwdw_cpu.cpp: backward-weights, AVX2
void register_conv_dnnl(ops::KernelTable& t);
void register_pool_cpu(ops::KernelTable& t);
void register_pool_u8_cpu(ops::KernelTable& t);  // pool_u8_cpu.cpp: u8 channels-last max_pool
void register_batch_norm_cpu(ops::KernelTable& t);
void register_attention_cpu(ops::KernelTable& t);
void register_rope_cpu(ops::KernelTable& t);
void register_topk_cpu(ops::KernelTable& t);
void register_quant_cpu(ops::KernelTable& t);
void register_quant_dnnl(ops::KernelTable& t);
void register_quant_conv_c1_cpu(ops::KernelTable& t);
void register_quant_woq_cpu(ops::KernelTable& t);
void register_fake_quant_cpu(ops::KernelTable& t);

}  // namespace qs::kernels
