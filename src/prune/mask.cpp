// Masks on parameters (include/qiusuo/prune/mask.h).
#include "qiusuo/prune/mask.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/prune/prune.h"

namespace qs::prune {

// Shared with the gradient hooks, which outlive nothing but may outlive finalize():
// `active` turns them into no-ops.
struct Masks::State {
  std::vector<std::pair<std::string, Tensor>> masks;  // in the order added
  std::map<std::string, Tensor> params;
  bool active = true;
  // Zeroes every pruned entry.
  void apply() const {
    if (!active) return;
    NoGrad ng;
    for (auto& [name, m] : masks) {
      Tensor p = params.at(name);
      p.copy_(mul(p, m));
    }
  }
  Tensor* find(const std::string& name) {
    for (auto& [n, m] : masks)
      if (n == name) return &m;
    return nullptr;
  }
};

Masks::Masks(nn::Module& model) : model_(model), state_(std::make_shared<State>()) {
  for (auto& [name, t] : model_.named_parameters()) state_->params[name] = t;
}

// The hooks hold the state weakly: once it is gone (or inactive) they do nothing, so an
// optimiser or a parameter may outlive this object.
Masks::~Masks() { state_->active = false; }

void Masks::add(const std::string& param, const Tensor& mask) {
  auto it = state_->params.find(param);
  QS_CHECK(it != state_->params.end(), "prune: masks: {} is not a parameter of the model", param);
  Tensor p = it->second;
  QS_CHECK(mask.shape() == p.shape(), "prune: the mask of {} has shape {}, the parameter {}", param,
           shape_str(mask.shape()), shape_str(p.shape()));
  Tensor m = mask.to(p.dtype()).contiguous().clone();
  {
    Tensor md = m.to(DType::f64).contiguous();
    const double* v = md.data_ptr<double>();
    for (int64_t i = 0; i < md.numel(); ++i)
      QS_CHECK(v[i] == 0.0 || v[i] == 1.0, "prune: the mask of {} holds {} at entry {}; masks hold 0 and 1", param,
               v[i], i);
  }
  if (Tensor* old = state_->find(param)) {
    NoGrad ng;
    old->copy_(mul(*old, m));
  } else {
    state_->masks.push_back({param, m});
    if (p.requires_grad()) {
      std::weak_ptr<State> weak = state_;
      p.register_hook([weak, param](const Tensor& g) -> Tensor {
        auto s = weak.lock();
        if (!s || !s->active) return Tensor();
        Tensor* mk = s->find(param);
        return mk ? mul(g, *mk) : Tensor();
      });
    }
  }
  apply();
}

void Masks::apply() const { state_->apply(); }

void Masks::attach(optim::Optimizer& opt) {
  std::weak_ptr<State> weak = state_;
  opt.add_step_hook([weak] {
    if (auto s = weak.lock()) s->apply();
  });
}

void Masks::finalize() {
  apply();
  state_->masks.clear();
  state_->active = false;
  state_ = std::make_shared<State>();  // a fresh set: add() may start again
  for (auto& [name, t] : model_.named_parameters()) state_->params[name] = t;
}

const Tensor& Masks::mask(const std::string& param) const {
  const Tensor* m = state_->find(param);
  QS_CHECK(m, "prune: masks: {} has no mask", param);
  return *m;
}

std::vector<std::string> Masks::params() const {
  std::vector<std::string> out;
  for (auto& [n, m] : state_->masks) out.push_back(n);
  return out;
}

int64_t Masks::zeros(const std::string& param) const {
  const Tensor& m = mask(param);
  return m.numel() - int64_t(sum(m.to(DType::f64)).item());
}

int64_t Masks::zeros() const {
  int64_t n = 0;
  for (auto& [name, m] : state_->masks) n += zeros(name);
  return n;
}

nn::StateDict Masks::state_dict() const {
  nn::StateDict out;
  for (auto& [name, m] : state_->masks) out.push_back({name + "_mask", m.to(DType::f32)});
  return out;
}

namespace {

// Entries of |w| in ascending order, ties broken by the later index first: the first k go.
std::vector<int64_t> smallest(const std::vector<double>& a, int64_t k) {
  std::vector<int64_t> order(a.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
    return a[size_t(x)] != a[size_t(y)] ? a[size_t(x)] < a[size_t(y)] : x > y;
  });
  order.resize(size_t(k));
  return order;
}

int64_t count_of(double amount, int64_t n, const std::string& what) {
  QS_CHECK(std::isfinite(amount) && amount >= 0 && amount <= 1, "prune: amount {} for {} is outside [0, 1]", amount,
           what);
  return int64_t(std::llround(amount * double(n)));
}

std::vector<double> abs_values(const Tensor& w) {
  Tensor a = abs(w.detach()).to(DType::f64).contiguous();
  return std::vector<double>(a.data_ptr<double>(), a.data_ptr<double>() + a.numel());
}

}  // namespace

Tensor l1_unstructured(const Tensor& w, double amount) {
  const std::vector<double> a = abs_values(w);
  const int64_t k = count_of(amount, int64_t(a.size()), "l1_unstructured");
  std::vector<double> m(a.size(), 1.0);
  for (int64_t i : smallest(a, k)) m[size_t(i)] = 0.0;
  return from_vector(m, w.shape(), DType::f32);
}

void global_unstructured(Masks& masks, const std::vector<std::string>& params, double amount) {
  std::vector<double> all;
  std::vector<std::pair<std::string, Tensor>> ps;
  for (const std::string& name : params) {
    Tensor t;
    for (auto& [n, p] : masks.model().named_parameters())
      if (n == name) t = p;
    QS_CHECK(t.defined(), "prune: global_unstructured: {} is not a parameter of the model", name);
    const auto a = abs_values(t);
    all.insert(all.end(), a.begin(), a.end());
    ps.push_back({name, t});
  }
  const int64_t k = count_of(amount, int64_t(all.size()), "global_unstructured");
  std::vector<double> m(all.size(), 1.0);
  for (int64_t i : smallest(all, k)) m[size_t(i)] = 0.0;
  size_t at = 0;
  for (auto& [name, t] : ps) {
    std::vector<double> part(m.begin() + int64_t(at), m.begin() + int64_t(at) + t.numel());
    at += size_t(t.numel());
    masks.add(name, from_vector(part, t.shape(), DType::f32));
  }
}

void add_plan_masks(Masks& masks, const Dependencies& dep, const Plan& plan) {
  QS_CHECK(plan.removed.size() == dep.groups.size(), "prune: the plan has {} groups, the dependencies {}",
           plan.removed.size(), dep.groups.size());
  std::map<std::string, Tensor> ms;
  for (auto& [n, p] : masks.model().named_parameters()) ms[n] = Tensor();
  std::map<std::string, Shape> shapes;
  for (auto& [n, p] : masks.model().named_parameters()) shapes[n] = p.shape();
  for (size_t g = 0; g < dep.groups.size(); ++g) {
    for (const Member& m : dep.groups[g].members) {
      if (!shapes.count(m.param)) continue;  // a buffer (running statistics): not trained, not masked
      Tensor& mk = ms[m.param];
      if (!mk.defined()) mk = ones(shapes[m.param]);
      for (int64_t ch : plan.removed[g])
        if (ch >= m.group_start && ch < m.group_start + m.length)
          mk.narrow(m.dim, (m.offset + ch - m.group_start) * m.inner, m.inner).zero_();
    }
  }
  for (auto& [name, mk] : ms)
    if (mk.defined()) masks.add(name, mk);
}

}  // namespace qs::prune
