// Activation modules: thin wrappers over the functional ops.
#include "qiusuo/nn/activation.h"

#include "qiusuo/ops.h"

namespace qs::nn {

Tensor ReLU::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return relu(x);
}
GELU::GELU(std::string approximate) : Module("GELU"), approximate_(std::move(approximate)) {
  QS_CHECK(approximate_ == "none" || approximate_ == "tanh", "GELU: approximate must be 'none' or 'tanh', got '{}'",
           approximate_);
}
Tensor GELU::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return gelu(x, approximate_);
}
Tensor SiLU::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return silu(x);
}
Tensor Tanh::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return tanh(x);
}
Tensor Sigmoid::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return sigmoid(x);
}

}  // namespace qs::nn
