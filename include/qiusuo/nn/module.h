// nn::Module: the base of every layer, like torch.nn.Module. A module owns named
// parameters (leaf tensors that require grad), named buffers (state that is saved but
// not trained, e.g. running statistics) and named child modules, in registration order.
//
// Contract
// - Names are dotted paths from this module: "features.0.weight". Registering a name
//   twice, or a name containing '.', is an error.
// - Parameters are held by handle: a subclass keeps its own `Tensor weight_` member and
//   registers the same handle. load_state_dict copies values *in place*, so those
//   handles (and optimisers holding them) stay valid.
// - train()/eval() set the mode of this module and every descendant.
// - state_dict(): parameters then buffers of this module, then each child's, depth first
//   (PyTorch's order); the tensors are detached aliases of the live ones.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StateDict = NamedTensors;

// What load_state_dict(strict = false) skipped.
struct LoadResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Single-tensor forward; modules with other signatures define their own and leave
  // this one erroring.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  const std::string& type_name() const { return type_name_; }
  // The text inside the parentheses of this module's line in to_string().
  virtual std::string extra_repr() const { return ""; }

  // ---- registration (returns what it registered)
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  // ---- traversal
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  // Every descendant (not this module), depth first, with dotted names: "features", "features.0", ...
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
  std::shared_ptr<Module> child(const std::string& name) const;  // error if absent
  // Replaces a descendant in place (same name, same position) and returns the old one;
  // a dotted name reaches into children ("features.0"). Errors: no such module, a null
  // replacement. A module that keeps typed pointers to its children sees the change only
  // if its forward reaches them through child(name) (as Sequential and FashionCNN do):
  // this is how quantisation swaps layers (quant::prepare_qat).
  std::shared_ptr<Module> replace_child(const std::string& name, std::shared_ptr<Module> m);
  // The dotted name of this module from the root of the tree it was last registered in
  // ("blocks.1.attn"); "" for a root, or a module whose parent is gone.
  std::string path() const;
  int64_t num_parameters() const;  // total elements over all parameters

  // ---- modes and gradients
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();  // drops .grad of every parameter (set_to_none, PyTorch's default)

  // ---- checkpoints
  StateDict state_dict() const;
  // Checks every key first and reports all problems in one error: missing keys and
  // unexpected keys (only when strict), shape and dtype mismatches (always), each with
  // the expected and found value. Copies only if there is no error.
  LoadResult load_state_dict(const StateDict& dict, bool strict = true);

  // PyTorch-style tree: "Sequential(\n  (0): Linear(in_features=3, ...)\n)".
  std::string to_string() const;

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool buffers, bool recurse, NamedTensors& out) const;

  std::string type_name_;
  const Module* parent_ = nullptr;  // set by registration; cleared by the parent's destructor
  std::string name_;                // the name in parent_
  bool training_ = true;
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Names `m` in anomaly mode's errors (qs::set_detect_anomaly) while its forward runs:
// "blocks.1.attn (MultiheadAttention)", its path() and type. Every forward of the project's
// modules opens one first (a new module's forward should too); while anomaly mode is off it
// costs one flag test.
class ModuleScope {
 public:
  explicit ModuleScope(const Module& m);
  ~ModuleScope();
  ModuleScope(const ModuleScope&) = delete;
  ModuleScope& operator=(const ModuleScope&) = delete;

 private:
  bool open_;
};

// Puts a module (and its descendants) in eval mode for a scope and restores the mode it
// had on the way out, also when an exception leaves the scope (a failed evaluation or
// capture must not leave a model that was training stuck in eval mode, or the reverse).
class EvalScope {
 public:
  explicit EvalScope(Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalScope() { m_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  Module& m_;
  bool was_training_;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

}  // namespace qs::nn
