// Optimizer base: parameter checks, the step loop, state dicts; gradient clipping.
#include <fmt/ranges.h>
#include <cmath>
#include <map>

#include "autograd/anomaly.h"
#include "kernels/elementwise_fns.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"

namespace qs::optim {

Optimizer::Optimizer(std::vector<Tensor> params, double lr, std::string name)
    : params_(std::move(params)), lr_(lr), name_(std::move(name)), initial_lr_(lr) {
  QS_CHECK(lr >= 0.0, "{}: learning rate must be >= 0, got {}", name_, lr);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    QS_CHECK(p.defined() && p.is_leaf(), "{}: parameter {} must be a defined leaf tensor", name_, i);
    QS_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "{}: parameter {} has dtype {}; f32 or f64 expected",
             name_, i, dtype_name(p.dtype()));
    QS_CHECK(p.is_contiguous(), "{}: parameter {} ({}) is not contiguous", name_, i, shape_str(p.shape()));
  }
}

void Optimizer::declare_buffers(std::vector<BufferSpec> specs) {
  buffer_specs_ = std::move(specs);
  buffers_.assign(buffer_specs_.size(), std::vector<Tensor>(params_.size()));
}

void Optimizer::step() {
  NoGrad ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    QS_CHECK(g.shape() == params_[i].shape(), "{}: gradient of parameter {} has shape {}, the parameter {}", name_, i,
             shape_str(g.shape()), shape_str(params_[i].shape()));
    update(i, g.to(params_[i].dtype()).contiguous());
    if (anomaly_enabled()) autograd::check_update(name_, lr_, i, params_[i], g);
  }
  ++steps_;
  for (auto& fn : step_hooks_) fn();
}

void Optimizer::add_step_hook(std::function<void()> fn) { step_hooks_.push_back(std::move(fn)); }

void Optimizer::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

NamedTensors Optimizer::state_dict() const {
  NamedTensors out;
  out.emplace_back("step", scalar_tensor(double(steps_), DType::i64));
  out.emplace_back("lr", scalar_tensor(lr_, DType::f64));
  for (size_t k = 0; k < buffer_specs_.size(); ++k)
    for (size_t i = 0; i < params_.size(); ++i)
      if (buffers_[k][i].defined()) out.emplace_back(fmt::format("{}.{}", buffer_specs_[k].name, i), buffers_[k][i].clone());
  return out;
}

// "<buffer>.<param index>" -> (buffer k, param i); false if the key names neither.
bool Optimizer::parse_buffer_key(const std::string& key, size_t& k, size_t& i) const {
  size_t dot = key.rfind('.');
  if (dot == std::string::npos) return false;
  std::string digits = key.substr(dot + 1);
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return false;
  i = std::stoul(digits);
  for (k = 0; k < buffer_specs_.size(); ++k)
    if (key.compare(0, dot, buffer_specs_[k].name) == 0 && buffer_specs_[k].name.size() == dot) break;
  return k < buffer_specs_.size() && i < params_.size();
}

void Optimizer::load_state_dict(const NamedTensors& dict) {
  std::vector<std::string> problems;
  std::vector<std::vector<Tensor>> loaded(buffer_specs_.size(), std::vector<Tensor>(params_.size()));
  std::vector<std::vector<bool>> present(buffer_specs_.size(), std::vector<bool>(params_.size()));  // right or wrong
  const Tensor *step = nullptr, *lr = nullptr;
  auto check = [&](const std::string& key, const Tensor& t, const Shape& shape, DType dt) {
    if (!t.defined() || t.shape() != shape || t.dtype() != dt) {
      problems.push_back(fmt::format("'{}': expected {} {}, found {}", key, dtype_name(dt), shape_str(shape),
                                     t.defined() ? std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape()) : "undefined"));
      return false;
    }
    return true;
  };
  for (auto& [key, t] : dict) {
    if (key == "step") {
      if (check(key, t, {}, DType::i64)) step = &t;
      continue;
    }
    if (key == "lr") {
      if (check(key, t, {}, DType::f64)) lr = &t;
      continue;
    }
    size_t k = 0, i = 0;
    if (!parse_buffer_key(key, k, i)) {
      std::string names;
      for (auto& b : buffer_specs_) names += (names.empty() ? "" : "|") + b.name;
      problems.push_back(fmt::format("unexpected key '{}' (expected step, lr or <{}>.<0..{}>)", key, names,
                                     int64_t(params_.size()) - 1));
      continue;
    }
    const Tensor& p = params_[i];
    present[k][i] = true;
    bool scalar = buffer_specs_[k].scalar;
    if (check(key, t, scalar ? Shape{} : p.shape(), scalar ? DType::f64 : p.dtype())) loaded[k][i] = t.clone();
  }
  if (!step) problems.push_back("missing key 'step'");
  else if (step->item() < 0) problems.push_back(fmt::format("'step' is {}, below 0", int64_t(step->item())));
  if (!lr) problems.push_back("missing key 'lr'");
  // A parameter's buffers are made together at its first update: some without the others
  // is a damaged file. None at all is a parameter that never had a gradient, but no buffer
  // for any parameter after steps that needed them means the optimiser's state is gone
  // (resuming would restart its moments silently).
  bool any = false;
  for (size_t i = 0; i < params_.size(); ++i) {
    std::vector<std::string> have, lack;
    for (size_t k = 0; k < buffer_specs_.size(); ++k)
      (present[k][i] ? have : lack).push_back(fmt::format("{}.{}", buffer_specs_[k].name, i));
    any = any || !have.empty();
    if (!have.empty() && !lack.empty())
      problems.push_back(fmt::format("parameter {} has {} but not {} (a parameter's buffers come together)", i,
                                     fmt::join(have, ", "), fmt::join(lack, ", ")));
  }
  if (step && step->item() > 0 && !any && keeps_state())
    problems.push_back(fmt::format("'step' is {} but no parameter has its buffers (the optimiser's state is missing)",
                                   int64_t(step->item())));
  if (!problems.empty()) {
    std::string msg = fmt::format("{}.load_state_dict: {} problem(s), nothing was loaded:", name_, problems.size());
    for (auto& p : problems) msg += "\n  " + p;
    throw Error(msg);
  }
  steps_ = int64_t(step->item());
  lr_ = lr->item();
  buffers_ = std::move(loaded);
}

namespace {
// sum |g|^p over one gradient (p = 2 fast path), or max |g| when p is infinite.
double grad_norm_part(const Tensor& grad, double p) {
  Tensor g = grad.contiguous();
  bool inf = std::isinf(p);
  return kernels::visit_float(g.dtype(), "clip_grad_norm_", [&]<class T>() {
    const T* d = g.data_ptr<T>();
    int64_t n = g.numel();
    double acc = 0.0;
    if (inf) {
#pragma omp parallel for reduction(max : acc) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) acc = std::max(acc, std::abs(double(d[i])));
    } else if (p == 2.0) {
#pragma omp parallel for reduction(+ : acc) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) acc += double(d[i]) * double(d[i]);
    } else {
#pragma omp parallel for reduction(+ : acc) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) acc += std::pow(std::abs(double(d[i])), p);
    }
    return acc;
  });
}
}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  QS_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be positive or infinity, got {}", norm_type);
  NoGrad ng;
  bool inf = std::isinf(norm_type);
  double acc = 0.0;
  for (auto& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    double part = grad_norm_part(g, norm_type);
    acc = inf ? std::max(acc, part) : acc + part;
  }
  double total = inf ? acc : std::pow(acc, 1.0 / norm_type);
  double coef = max_norm / (total + 1e-6);
  if (coef < 1.0)
    for (auto& p : params)
      if (p.grad().defined()) Tensor(p).set_grad(p.grad() * coef);
  return total;
}

}  // namespace qs::optim
