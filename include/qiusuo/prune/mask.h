// Masks, as torch.nn.utils.prune keeps them: one per parameter (1 keeps an entry, 0 prunes
// it), for unstructured magnitude pruning and as the training-time form of structured
// pruning (docs/prune.md).
//
//   prune::Masks masks(model);
//   masks.add("fc.weight", prune::l1_unstructured(model_param, 0.3));  // 30% of its entries
//   prune::global_unstructured(masks, {"c2.weight", "c3.weight"}, 0.5);  // 50% over both
//   masks.attach(sgd);                 // pruned entries stay zero through every step
//   ... train ...
//   masks.finalize();                  // torch's prune.remove: the zeros stay, the masks go
//
// PyTorch keeps weight_orig and recomputes weight = weight_orig * mask before each forward.
// qiusuo's layers read their parameter directly, so a mask acts on the parameter itself:
// add() zeroes the pruned entries, a gradient hook zeroes their gradients (gradients reach
// the survivors only), and after each step of an attached optimiser the pruned entries are
// zeroed again (momentum or Adam state accumulated before the mask could move them). What
// PyTorch's model computes, this one computes; what differs is that the pruned entries'
// old values are gone (PyTorch can still read them in weight_orig).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qiusuo/nn/module.h"
#include "qiusuo/tensor.h"

namespace qs::optim {
class Optimizer;
}

namespace qs::prune {

struct Dependencies;
struct Plan;

class Masks {
 public:
  explicit Masks(nn::Module& model);
  ~Masks();
  Masks(const Masks&) = delete;
  Masks& operator=(const Masks&) = delete;

  // Masks parameter `param` (a state-dict name of a parameter, not a buffer) with `mask`
  // (its shape, values 0 or 1; a second mask of the same parameter is multiplied into the
  // first, as PyTorch's PruningContainer does). Zeroes the pruned entries now. Errors: no
  // such parameter, a shape mismatch, values other than 0 and 1.
  void add(const std::string& param, const Tensor& mask);
  // Zeroes every pruned entry again (what an attached optimiser runs after each step).
  void apply() const;
  // After each step() of `opt`, apply(). Either may outlive the other: after finalize() or
  // this object's destruction the optimiser's hook does nothing.
  void attach(optim::Optimizer& opt);
  // Drops the masks and the hooks: the zeros stay, nothing keeps them zero any more.
  void finalize();

  const Tensor& mask(const std::string& param) const;  // error if not masked
  std::vector<std::string> params() const;             // masked parameters, in the order added
  int64_t zeros(const std::string& param) const;       // pruned entries of one parameter
  int64_t zeros() const;                               // over every masked parameter
  const nn::Module& model() const { return model_; }
  // "<param>_mask" for each mask (f32 0/1), as in PyTorch's state dict (without weight_orig).
  nn::StateDict state_dict() const;

 private:
  struct State;
  nn::Module& model_;
  std::shared_ptr<State> state_;
};

// The mask that prunes the fraction `amount` (in [0, 1]) of w's entries with the smallest
// |w| (round(amount * numel) of them; ties: the later entry goes), as PyTorch's
// l1_unstructured.
Tensor l1_unstructured(const Tensor& w, double amount);
// The same over several parameters together: the smallest |w| of all of them.
void global_unstructured(Masks& masks, const std::vector<std::string>& params, double amount);
// The masks of a structured plan (prune::plan_channels): every member slice of every removed
// channel, so that training can go on masked before prune::shrink removes them.
void add_plan_masks(Masks& masks, const Dependencies& dep, const Plan& plan);

}  // namespace qs::prune
