// Optimisers (torch.optim 1.13 update rules, single parameter group) and gradient
// clipping. Updates run in place on the parameters' data, fused, without autograd.
//
// Contract
// - Parameters are leaf tensors (f32 or f64, contiguous); each step() reads .grad and
//   skips a parameter whose .grad is undefined (as PyTorch does).
// - state_dict() holds every per-parameter buffer as "<buffer>.<param index>" (e.g.
//   "exp_avg.3", "momentum_buffer.0", "step.3") plus "step" (steps taken) and "lr".
//   load_state_dict() checks names, shapes and dtypes against the parameters, that each
//   parameter has all of its buffers or none, and that a stepped state has some, and
//   reports every problem at once; afterwards step() continues exactly as the saved
//   optimiser would have.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::optim {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, double lr, std::string name);
  virtual ~Optimizer() = default;

  void step();       // one update of every parameter with a gradient
  void zero_grad();  // drops every parameter's .grad
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  double initial_lr() const { return initial_lr_; }  // the lr given at construction (schedules scale it)
  int64_t step_count() const { return steps_; }
  const std::vector<Tensor>& params() const { return params_; }

  NamedTensors state_dict() const;
  void load_state_dict(const NamedTensors& dict);

  // fn runs at the end of every step() (after every parameter's update), in the order
  // added: prune::Masks zeroes pruned entries again there.
  void add_step_hook(std::function<void()> fn);

 protected:
  // Updates parameter i with gradient g (contiguous, same dtype as the parameter).
  virtual void update(size_t i, const Tensor& g) = 0;
  // A per-parameter buffer: shaped like its parameter, or a 0-d f64 scalar (a count).
  struct BufferSpec {
    std::string name;
    bool scalar = false;
  };
  // Registers the per-parameter buffers (in state_dict order); call once, in the constructor.
  void declare_buffers(std::vector<BufferSpec> specs);
  // Whether an update makes buffers (load_state_dict then refuses a stepped state without
  // any): true by default; SGD without momentum keeps none.
  virtual bool keeps_state() const { return !buffer_specs_.empty(); }
  // Buffer k (in declaration order) of parameter i; undefined until the subclass creates it.
  Tensor& buffer(size_t k, size_t i) { return buffers_[k][i]; }

  std::vector<Tensor> params_;
  double lr_;

 private:
  bool parse_buffer_key(const std::string& key, size_t& k, size_t& i) const;

  std::string name_;
  double initial_lr_;
  int64_t steps_ = 0;
  std::vector<BufferSpec> buffer_specs_;
  std::vector<std::vector<Tensor>> buffers_;  // [buffer][param]
  std::vector<std::function<void()>> step_hooks_;
};

// torch.optim.SGD: d = g + wd p; with momentum: buf = d (first step) or
// momentum buf + (1 - dampening) d; d = d + momentum buf (nesterov) or buf; p -= lr d.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr, double momentum = 0.0, double dampening = 0.0,
      double weight_decay = 0.0, bool nesterov = false);

 protected:
  void update(size_t i, const Tensor& g) override;
  bool keeps_state() const override { return momentum_ != 0; }

 private:
  double momentum_, dampening_, weight_decay_;
  bool nesterov_;
};

// torch.optim.Adam (decoupled = false: L2 added to the gradient) and AdamW (decoupled:
// p *= 1 - lr wd first). m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), t counted per parameter.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, double lr = 1e-3, std::pair<double, double> betas = {0.9, 0.999},
       double eps = 1e-8, double weight_decay = 0.0);

 protected:
  Adam(std::vector<Tensor> params, double lr, std::pair<double, double> betas, double eps, double weight_decay,
       bool decoupled, std::string name);
  void update(size_t i, const Tensor& g) override;

 private:
  double beta1_, beta2_, eps_, weight_decay_;
  bool decoupled_;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, double lr = 1e-3, std::pair<double, double> betas = {0.9, 0.999},
        double eps = 1e-8, double weight_decay = 1e-2)
      : Adam(std::move(params), lr, betas, eps, weight_decay, true, "AdamW") {}
};

// torch.nn.utils.clip_grad_norm_: the norm of all gradients together (norm_type 2, or
// infinity); if it exceeds max_norm every gradient is scaled by max_norm / (norm + 1e-6).
// Returns the total norm before clipping. Parameters without .grad are ignored. The
// scaled gradients are new tensors (a .grad may be shared with another parameter).
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

}  // namespace qs::optim
