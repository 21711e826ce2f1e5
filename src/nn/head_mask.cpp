// nn::HeadMask: a head's output scaled before the output projection, via its weight columns.
#include "qiusuo/nn/head_mask.h"

#include "qiusuo/autograd.h"
#include "qiusuo/error.h"
#include "qiusuo/ops.h"

namespace qs::nn {

HeadMask::HeadMask(MultiheadAttention& layer, const std::vector<double>& mask) {
  QS_CHECK(int64_t(mask.size()) == layer.n_heads(), "HeadMask: expected {} mask values (one per head), got {}",
           layer.n_heads(), mask.size());
  for (auto& [name, p] : layer.named_parameters())
    if (name == "out_proj.weight") weight_ = p;
  QS_CHECK(weight_.defined() && weight_.dim() == 2 && weight_.size(1) == layer.n_heads() * layer.head_dim(),
           "HeadMask: the layer has no out_proj.weight [C, {}]", layer.n_heads() * layer.head_dim());
  NoGrad ng;
  saved_ = weight_.detach().clone();
  const int64_t dh = layer.head_dim();
  for (size_t h = 0; h < mask.size(); ++h)
    if (mask[h] != 1.0) {
      Tensor cols = weight_.narrow(1, int64_t(h) * dh, dh);
      cols.copy_(cols * mask[h]);
    }
}

HeadMask::~HeadMask() { weight_.copy_(saved_); }

}  // namespace qs::nn
