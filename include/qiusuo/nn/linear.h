// Linear and Embedding layers (torch.nn.Linear, torch.nn.Embedding).
#pragma once
#include "qiusuo/nn/module.h"

namespace qs::nn {

// y = x W^T + b. x [..., in] -> [..., out]. weight [out, in], bias [out] (f32).
// Init as PyTorch: W ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
// b ~ U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined when built without bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  Tensor weight_, bias_;
};

// A lookup table: i64 indices of any shape -> [..., embedding_dim]. weight
// [num_embeddings, embedding_dim] ~ N(0, 1). padding_idx >= 0: that row starts at zero
// and never receives a gradient; padding_idx < 0: none. Indices out of range are errors.
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx = -1,
            Generator& gen = default_generator());
  Tensor forward(const Tensor& indices) override;
  std::string extra_repr() const override;
  const Tensor& weight() const { return weight_; }
  int64_t padding_idx() const { return padding_idx_; }

 private:
  int64_t num_, dim_, padding_idx_;
  Tensor weight_;
};

}  // namespace qs::nn
