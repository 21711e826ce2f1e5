// The optimised kernels, in the order dispatch tries them (the reference is always last).
#include "kernels/cpu/cpu_kernels.h"

namespace qs::ops {

void register_optimised_kernels(std::vector<OpDef>& table) {
  kernels::register_elementwise_cpu(table);
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
  kernels::register_quant_dnnl(table);
  kernels::register_quant_woq_cpu(table);
  kernels::register_fake_quant_cpu(table);
}

}  // namespace qs::ops
