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

// Anomaly mode (torch.autograd.detect_anomaly): while on, the outputs of every op's forward
// (at the dispatch point) and the input gradients of every backward node are checked for NaN
// and infinity, and the first found throws a qs::Error that names the op, forward or backward,
// its inputs' dtypes and shapes (and whether they were finite), and the module whose forward
// ran it ("blocks.1.attn (MultiheadAttention)": nn::Module forwards open an nn::ModuleScope).
// The ops a backward formula calls are not checked one by one: their node's gradients are.
// An infinity a forward passes on from an input that already holds one (an additive -inf
// mask before a softmax) is not reported; a NaN always is.
// Off by default; QS_DETECT_ANOMALY=1 turns it on for the whole process (0 or unset: off,
// anything else is an error at the first op). The switch is process-wide, not per thread.
// Costs while off: one flag test per op and per module forward. While on: a pass over every
// output, and a module path kept with every recorded node.
bool anomaly_enabled();
void set_detect_anomaly(bool on);

// Anomaly mode on (or off) for a scope; the previous state is restored on the way out.
class DetectAnomaly {
 public:
  explicit DetectAnomaly(bool on = true) : prev_(anomaly_enabled()) { set_detect_anomaly(on); }
  ~DetectAnomaly() { set_detect_anomaly(prev_); }
  DetectAnomaly(const DetectAnomaly&) = delete;
  DetectAnomaly& operator=(const DetectAnomaly&) = delete;

 private:
  bool prev_;
};

// Gradients of `output` (scalar, or with an explicit `grad_output`) with respect to
// `inputs`, returned instead of accumulated into .grad (torch.autograd.grad).
// An input the output does not depend on gets an undefined Tensor.
std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs,
                         const Tensor& grad_output = Tensor(), bool retain_graph = false);

}  // namespace qs
