// Optimised CPU kernels (SIMD + OpenMP loops, oneDNN primitives). Each family
// registers its kernels with the op table.
#pragma once
#include "ops/op.h"
#include "qiusuo/autocast.h"

namespace qs::kernels {

// For f32 kernels that also take autocast's bf16 operands by widening them: nullptr when
// every defined input is f32, or bf16 on a CPU where oneDNN has no native bf16 (there
// widening is what oneDNN would do too); else why the kernel declines.
inline const char* f32_or_widened_bf16(const ops::OpCall& c) {
  for (auto& t : c.in) {
    if (!t.defined() || t.dtype() == DType::f32) continue;
    if (t.dtype() != DType::bf16) return "f32 or bf16 only";
    if (native_bf16_available()) return "bf16 runs natively on oneDNN here";
  }
  return nullptr;
}

void register_elementwise_cpu(std::vector<ops::OpDef>& t);
void register_matmul_dnnl(std::vector<ops::OpDef>& t);
void register_matmul_f64(std::vector<ops::OpDef>& t);
void register_index_cpu(std::vector<ops::OpDef>& t);
void register_reduce_cpu(std::vector<ops::OpDef>& t);
void register_softmax_cpu(std::vector<ops::OpDef>& t);
void register_norm_cpu(std::vector<ops::OpDef>& t);
void register_dropout_cpu(std::vector<ops::OpDef>& t);
void register_conv_c1_cpu(std::vector<ops::OpDef>& t);  // conv_c1_cpu.cpp: one input channel, AVX2
void register_conv_bwdw_cpu(std::vector<ops::OpDef>& t);  // conv_bwdw_cpu.cpp: backward-weights, AVX2
void register_conv_dnnl(std::vector<ops::OpDef>& t);
void register_pool_cpu(std::vector<ops::OpDef>& t);
void register_pool_u8_cpu(std::vector<ops::OpDef>& t);  // pool_u8_cpu.cpp: u8 channels-last max_pool
void register_batch_norm_cpu(std::vector<ops::OpDef>& t);
void register_attention_cpu(std::vector<ops::OpDef>& t);
void register_rope_cpu(std::vector<ops::OpDef>& t);
void register_topk_cpu(std::vector<ops::OpDef>& t);
void register_quant_cpu(std::vector<ops::OpDef>& t);
void register_quant_dnnl(std::vector<ops::OpDef>& t);
void register_quant_woq_cpu(std::vector<ops::OpDef>& t);
void register_fake_quant_cpu(std::vector<ops::OpDef>& t);

}  // namespace qs::kernels
