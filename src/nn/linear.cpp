// Linear and Embedding layers.
#include "qiusuo/nn/linear.h"

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/init.h"
#include "qiusuo/ops.h"

namespace qs::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen)
    : Module("Linear"), in_(in_features), out_(out_features) {
  QS_CHECK(in_features >= 0 && out_features >= 0, "Linear: feature counts must be >= 0, got in={} out={}", in_features,
           out_features);
  weight_ = register_parameter("weight", empty({out_, in_}));
  init::kaiming_uniform_(weight_, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
  if (bias) {
    bias_ = register_parameter("bias", empty({out_}));
    double bound = in_ > 0 ? 1.0 / std::sqrt(double(in_)) : 0.0;
    init::uniform_(bias_, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) {
  ModuleScope scope(*this);
  QS_CHECK(x.dim() >= 1 && x.size(-1) == in_, "Linear: expected input [..., {}], got {}", in_, shape_str(x.shape()));
  return linear(x, weight_, bias_);
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_, out_, bias_.defined() ? "True" : "False");
}

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx, Generator& gen)
    : Module("Embedding"), num_(num_embeddings), dim_(embedding_dim), padding_idx_(padding_idx < 0 ? -1 : padding_idx) {
  QS_CHECK(num_ > 0 && dim_ > 0, "Embedding: sizes must be positive, got num_embeddings={} embedding_dim={}", num_, dim_);
  QS_CHECK(padding_idx_ < num_, "Embedding: padding_idx {} is out of range for num_embeddings={}", padding_idx_, num_);
  weight_ = register_parameter("weight", empty({num_, dim_}));
  init::normal_(weight_, 0.0, 1.0, gen);
  if (padding_idx_ >= 0) {
    NoGrad ng;  // the row view is for filling only, not part of any graph
    init::zeros_(weight_.select(0, padding_idx_));
  }
}

Tensor Embedding::forward(const Tensor& indices) {
  ModuleScope scope(*this);
  return embedding(indices, weight_, padding_idx_);
}

std::string Embedding::extra_repr() const {
  std::string s = fmt::format("{}, {}", num_, dim_);
  if (padding_idx_ >= 0) s += fmt::format(", padding_idx={}", padding_idx_);
  return s;
}

}  // namespace qs::nn
