// nn::Module: registration, traversal, modes, state dicts and printing.
#include "qiusuo/nn/module.h"

#include <functional>
#include <map>
#include <ostream>

#include "autograd/anomaly.h"
#include "qiusuo/autograd.h"

namespace qs::nn {

Module::~Module() {
  for (auto& [n, c] : children_)
    if (c->parent_ == this) c->parent_ = nullptr;
}

std::string Module::path() const {
  std::string p;
  for (const Module* m = this; m->parent_; m = m->parent_) p = p.empty() ? m->name_ : m->name_ + "." + p;
  return p;
}

ModuleScope::ModuleScope(const Module& m) : open_(anomaly_enabled()) {
  if (!open_) return;
  const std::string p = m.path();
  autograd::push_anomaly_scope(p.empty() ? m.type_name() : fmt::format("{} ({})", p, m.type_name()));
}

ModuleScope::~ModuleScope() {
  if (open_) autograd::pop_anomaly_scope();
}

Tensor Module::forward(const Tensor&) {
  QS_FAIL("{}: has no single-tensor forward(); call its own forward signature", type_name_);
}

void Module::check_new_name(const std::string& name) const {
  QS_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "{}: a parameter, buffer or child name must be non-empty and contain no '.', got '{}'", type_name_, name);
  auto taken = [&](const auto& list) {
    for (auto& kv : list)
      if (kv.first == name) return true;
    return false;
  };
  QS_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "{}: the name '{}' is already registered",
           type_name_, name);
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name);
  QS_CHECK(t.defined(), "{}: parameter '{}' is an undefined tensor", type_name_, name);
  QS_CHECK(t.is_leaf(), "{}: parameter '{}' must be a leaf tensor; hint: pass t.detach()", type_name_, name);
  if (requires_grad) t.requires_grad_(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  QS_CHECK(t.defined(), "{}: buffer '{}' is an undefined tensor", type_name_, name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  QS_CHECK(m != nullptr, "{}: child module '{}' is null", type_name_, name);
  m->parent_ = this;
  m->name_ = name;
  children_.emplace_back(name, std::move(m));
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
  for (auto& [n, m] : children_)
    if (n == name) return m;
  QS_FAIL("{}: has no child module named '{}'", type_name_, name);
}

std::shared_ptr<Module> Module::replace_child(const std::string& name, std::shared_ptr<Module> m) {
  QS_CHECK(m != nullptr, "{}: replacement for child module '{}' is null", type_name_, name);
  size_t dot = name.find('.');
  if (dot != std::string::npos) return child(name.substr(0, dot))->replace_child(name.substr(dot + 1), std::move(m));
  for (auto& [n, c] : children_)
    if (n == name) {
      std::shared_ptr<Module> old = std::move(c);
      if (old->parent_ == this) old->parent_ = nullptr;
      m->parent_ = this;
      m->name_ = name;
      c = std::move(m);
      return old;
    }
  QS_FAIL("{}: has no child module named '{}' to replace", type_name_, name);
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (auto& [n, m] : children_) {
    out.emplace_back(n, m);
    for (auto& [sub, d] : m->named_modules()) out.emplace_back(n + "." + sub, d);
  }
  return out;
}

void Module::collect(const std::string& prefix, bool params, bool buffers, bool recurse, NamedTensors& out) const {
  if (params)
    for (auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  if (buffers)
    for (auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  if (recurse)
    for (auto& [n, m] : children_) m->collect(prefix + n + ".", params, buffers, true, out);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  collect("", true, false, recurse, out);
  return out;
}
std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& kv : named_parameters(recurse)) out.push_back(kv.second);
  return out;
}
NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  collect("", false, true, recurse, out);
  return out;
}
std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& kv : named_buffers(recurse)) out.push_back(kv.second);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& t : parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& kv : children_) kv.second->train(on);
}

void Module::zero_grad() {
  for (auto& t : parameters()) t.zero_grad();
}

StateDict Module::state_dict() const {
  // Per module: parameters, then buffers, then children (torch's order).
  StateDict out;
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m, const std::string& prefix) {
    for (auto& [n, t] : m.params_) out.emplace_back(prefix + n, t.detach());
    for (auto& [n, t] : m.buffers_) out.emplace_back(prefix + n, t.detach());
    for (auto& [n, c] : m.children_) walk(*c, prefix + n + ".");
  };
  walk(*this, "");
  return out;
}

LoadResult Module::load_state_dict(const StateDict& dict, bool strict) {
  StateDict own = state_dict();
  std::map<std::string, const Tensor*> given;
  for (auto& [k, t] : dict) given[k] = &t;
  std::map<std::string, bool> known;
  LoadResult res;
  std::vector<std::string> problems;
  for (auto& [k, t] : own) {
    known[k] = true;
    auto it = given.find(k);
    if (it == given.end()) {
      res.missing_keys.push_back(k);
      if (strict)
        problems.push_back(fmt::format("missing key '{}' (expected {} {})", k, dtype_name(t.dtype()), shape_str(t.shape())));
      continue;
    }
    const Tensor& src = *it->second;
    if (!src.defined())
      problems.push_back(fmt::format("key '{}': the tensor is undefined", k));
    else if (src.shape() != t.shape())
      problems.push_back(fmt::format("shape mismatch for '{}': expected {}, found {}", k, shape_str(t.shape()),
                                     shape_str(src.shape())));
    else if (src.dtype() != t.dtype())
      problems.push_back(fmt::format("dtype mismatch for '{}': expected {}, found {}", k, dtype_name(t.dtype()),
                                     dtype_name(src.dtype())));
  }
  for (auto& [k, t] : dict)
    if (!known.count(k)) {
      res.unexpected_keys.push_back(k);
      if (strict)
        problems.push_back(fmt::format("unexpected key '{}' ({} {})", k, t.defined() ? dtype_name(t.dtype()) : "undefined",
                                       t.defined() ? shape_str(t.shape()) : ""));
    }
  if (!problems.empty()) {
    std::string msg = fmt::format("load_state_dict for {}: {} problem(s), nothing was loaded:", type_name_, problems.size());
    for (auto& p : problems) msg += "\n  " + p;
    throw Error(msg);
  }
  NoGrad ng;
  for (auto& [k, t] : own) {
    auto it = given.find(k);
    if (it != given.end()) Tensor(t).copy_(*it->second);
  }
  return res;
}

std::string Module::to_string() const {
  std::string extra = extra_repr();
  if (children_.empty()) return type_name_ + "(" + extra + ")";
  std::string s = type_name_ + "(\n";
  if (!extra.empty()) s += "  " + extra + "\n";
  for (auto& [n, c] : children_) {
    std::string sub = c->to_string();
    std::string indented;
    for (char ch : sub) {
      indented += ch;
      if (ch == '\n') indented += "  ";
    }
    s += "  (" + n + "): " + indented + "\n";
  }
  return s + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.to_string(); }

}  // namespace qs::nn
