// Autograd controls: grad mode, no-grad scopes, and gradients as values.
#pragma once
#include <vector>

#include "qiusuo/tensor.h"

namespace qs {

bool grad_enabled();
void set_grad_enabled(bool on);

// While alive, ops record no history (like torch.no_grad()).
class NoGrad {
 public:
  NoGrad() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGrad() { set_grad_enabled(prev_); }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

// Gradients of `output` (scalar, or with an explicit `grad_output`) with respect to
// `inputs`, returned instead of accumulated into .grad (torch.autograd.grad).
// An input the output does not depend on gets an undefined Tensor.
std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs,
                         const Tensor& grad_output = Tensor(), bool retain_graph = false);

}  // namespace qs
