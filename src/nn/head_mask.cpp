// nn::HeadMask: a head's output scaled before the output projection, via its weight columns.
#include "qiusuo/nn/head_mask.h"

#include "qiusuo/autograd.h"
#include "qiusuo/error.h"
#include "qiusuo/ops.h"

namespace qs::nn {

HeadMask::HeadMask(AttentionLayer& layer, const std::vector<double>& mask) {
  const int64_t h = layer.n_heads(), dh = layer.head_output_dim();
  QS_CHECK(int64_t(mask.size()) == h, "HeadMask: expected {} mask values (one per head), got {}", h, mask.size());
  weight_ = layer.output_projection().weight();
  QS_CHECK(weight_.defined() && weight_.dim() == 2 && weight_.size(1) == h * dh,
           "HeadMask: the output projection is not [C, {}] (a quantised layer?)", h * dh);
  NoGrad ng;
  saved_ = weight_.detach().clone();
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i] != 1.0) {
      Tensor cols = weight_.narrow(1, int64_t(i) * dh, dh);
      cols.copy_(cols * mask[i]);
    }
}

HeadMask::~HeadMask() { weight_.copy_(saved_); }

}  // namespace qs::nn
