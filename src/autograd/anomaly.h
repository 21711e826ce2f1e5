// Anomaly mode's checks and its stack of module scopes (the switch is in qiusuo/autograd.h).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ops/op.h"

namespace qs::autograd {

struct Node;

// The scopes open on this thread, innermost last: what anomaly mode's errors name as the
// module. nn::ModuleScope pushes "path (Type)" while anomaly mode is on.
void push_anomaly_scope(std::string where);
void pop_anomaly_scope();
// The innermost scope, or null outside any; recorded nodes share it.
std::shared_ptr<const std::string> anomaly_scope();

// Throws when a floating output of `call` holds NaN or infinity, unless this thread is in
// a backward (there the nodes' gradients are checked, not the ops their formulas call).
void check_forward(const ops::OpDef& def, const ops::OpCall& call);
// Throws when a gradient `n`'s backward gave (`grads`, one per input) holds NaN or
// infinity; `received` are the gradients of its outputs that it was given.
void check_backward(const Node& n, const std::vector<Tensor>& received, const std::vector<Tensor>& grads);

// Throws when parameter `i` holds NaN or infinity after an optimiser's update (optimisers
// update parameters in loops of their own, not through ops); `grad` is the gradient it used.
void check_update(const std::string& optimizer, double lr, size_t i, const Tensor& param, const Tensor& grad);

// While alive, this thread is in a backward: check_forward does nothing.
class InBackward {
 public:
  InBackward();
  ~InBackward();
  InBackward(const InBackward&) = delete;
  InBackward& operator=(const InBackward&) = delete;
};

}  // namespace qs::autograd
