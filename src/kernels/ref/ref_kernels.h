// Reference kernels: the specification of every primitive. Plain loops over logical
// indices as the formula reads, accumulation in double, single-threaded.
#pragma once
#include "kernels/kernel.h"

namespace qs::kernels {

// Elementwise (elementwise_ref.cpp)
template <class Fn> void unary_ref(ops::OpCall& c);
void gelu_ref(ops::OpCall& c);
template <class Fn> void binary_ref(ops::OpCall& c);
template <class Fn> void compare_ref(ops::OpCall& c);
void where_ref(ops::OpCall& c);
void clamp_ref(ops::OpCall& c);
void copy_ref(ops::OpCall& c);  // copy and cast

// Reductions (reduce_ref.cpp)
void sum_ref(ops::OpCall& c);
void mean_ref(ops::OpCall& c);
void var_ref(ops::OpCall& c);
void amax_ref(ops::OpCall& c);
void amin_ref(ops::OpCall& c);
void logsumexp_ref(ops::OpCall& c);
void max_dim_ref(ops::OpCall& c);  // outputs: values, int64 indices
void min_dim_ref(ops::OpCall& c);
void argmax_ref(ops::OpCall& c);

// Softmax (softmax_ref.cpp)
void softmax_ref(ops::OpCall& c);
void log_softmax_ref(ops::OpCall& c);

// Normalisation (norm_ref.cpp)
void layer_norm_ref(ops::OpCall& c);
void rms_norm_ref(ops::OpCall& c);

// Losses and dropout (loss_ref.cpp)
void nll_loss_ref(ops::OpCall& c);
void dropout_ref(ops::OpCall& c);

// Linear algebra (matmul_ref.cpp)
void matmul_ref(ops::OpCall& c);
void linear_ref(ops::OpCall& c);

// Indexing and joining (index_ref.cpp)
void embedding_ref(ops::OpCall& c);
void embedding_dense_backward_ref(ops::OpCall& c);
void index_select_ref(ops::OpCall& c);
void gather_ref(ops::OpCall& c);
void scatter_add_ref(ops::OpCall& c);
void cat_ref(ops::OpCall& c);
// Positions and selection (rope_ref.cpp, topk_ref.cpp)
void rope_ref(ops::OpCall& c);
void topk_ref(ops::OpCall& c);  // outputs: values, int64 indices
// Convolution (conv_ref.cpp)
void convolution_ref(ops::OpCall& c);
void convolution_backward_data_ref(ops::OpCall& c);
void convolution_backward_weight_ref(ops::OpCall& c);
// Writes v (logical row-major order) into a contiguous output.
void store_vector(const Tensor& out, const std::vector<double>& v);

// Pooling (pool_ref.cpp)
void max_pool_ref(ops::OpCall& c);
void max_pool_backward_ref(ops::OpCall& c);
void avg_pool_ref(ops::OpCall& c);
void avg_pool_backward_ref(ops::OpCall& c);
void adaptive_avg_pool_ref(ops::OpCall& c);
void adaptive_avg_pool_backward_ref(ops::OpCall& c);

// Batch normalisation (batch_norm_ref.cpp)
void batch_norm_ref(ops::OpCall& c);
void batch_norm_backward_ref(ops::OpCall& c);

// Resampling (interp_ref.cpp)
void interpolate_ref(ops::OpCall& c);
void interpolate_backward_ref(ops::OpCall& c);

// Attention (attention_ref.cpp)
void attention_ref(ops::OpCall& c);
void attention_backward_ref(ops::OpCall& c);
void attention_weights_ref(ops::OpCall& c);

// Integer quantisation (quant_ref.cpp, quant_linear_ref.cpp)
void quantize_ref(ops::OpCall& c);
void dequantize_ref(ops::OpCall& c);
void qlinear_ref(ops::OpCall& c);
void qconv_ref(ops::OpCall& c);
void dynamic_linear_ref(ops::OpCall& c);
void woq_linear_ref(ops::OpCall& c);

}  // namespace qs::kernels
