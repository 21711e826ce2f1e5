// Head masking for head importance (Michel et al. 2019): multiply each head's output of an
// attention layer (nn::MultiheadAttention or nn::MultiheadLatentAttention) by mask[h] before
// the output projection.
//
//   {
//     nn::HeadMask m(layer, {1, 1, 0, 1, 1, 1, 1, 1});   // head 2 removed
//     ... evaluate ...
//   }                                                      // the layer is as before
//
// The output projection is linear, so scaling head h's output [B, T, dh] by mask[h] before it
// is the same as scaling the projection's input columns [h dh, (h + 1) dh) of its weight
// (AttentionLayer::output_projection, dh = head_output_dim) by mask[h] (the bias is untouched). HeadMask does exactly that while it lives and restores
// the weights (a saved copy, bit for bit) when destroyed: the layer itself carries no mask
// state, so attention without a mask costs nothing extra. Not thread-safe with concurrent
// forwards of the same layer; masks of different layers may nest and overlap in time.
#pragma once
#include <vector>

#include "qiusuo/nn/transformer.h"

namespace qs::nn {

class HeadMask {
 public:
  // Errors: a mask whose length differs from layer.n_heads(), an output projection that is
  // not [C, n_heads * head_output_dim].
  HeadMask(AttentionLayer& layer, const std::vector<double>& mask);
  ~HeadMask();
  HeadMask(const HeadMask&) = delete;
  HeadMask& operator=(const HeadMask&) = delete;

 private:
  Tensor weight_, saved_;
};

}  // namespace qs::nn
