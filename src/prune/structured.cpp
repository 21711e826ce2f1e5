// Channel scores, the pruning plan, and its two applications: a smaller state dict
// (shrink) and zeroed channels in place (apply_masks). include/qiusuo/prune/prune.h.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/prune/prune.h"

namespace qs::prune {

namespace {

// A tensor as [outer, n, rest] around `dim`.
struct Around {
  int64_t outer = 1, n = 1, rest = 1;
  Around(const Shape& s, int dim) {
    for (int i = 0; i < int(s.size()); ++i) (i < dim ? outer : i == dim ? n : rest) *= s[size_t(i)];
  }
};

// The parameter and buffer tensors of a model by state-dict name.
std::map<std::string, Tensor> tensors_of(const nn::Module& model) {
  std::map<std::string, Tensor> m;
  for (auto& [name, t] : model.named_parameters()) m[name] = t;
  for (auto& [name, t] : model.named_buffers()) m[name] = t;
  return m;
}

const Tensor& tensor_for(const std::map<std::string, Tensor>& ts, const Member& m, const std::string& group) {
  auto it = ts.find(m.param);
  QS_CHECK(it != ts.end(), "prune: group {}: parameter {} is not in the model", group, m.param);
  const Tensor& t = it->second;
  QS_CHECK(m.dim < t.dim() && t.size(m.dim) >= (m.offset + m.length) * m.inner,
           "prune: group {}: parameter {} has shape {}, too small for channels [{}, {}) x{} along dim {}", group,
           m.param, shape_str(t.shape()), m.offset, m.offset + m.length, m.inner, m.dim);
  return t;
}

// The indices along the member's dim that the removed group channels own.
std::vector<int64_t> member_indices(const Member& m, const std::vector<int64_t>& removed) {
  std::vector<int64_t> idx;
  for (int64_t ch : removed)
    if (ch >= m.group_start && ch < m.group_start + m.length)
      for (int64_t k = 0; k < m.inner; ++k) idx.push_back((m.offset + ch - m.group_start) * m.inner + k);
  return idx;
}

// For every (parameter, dim): the indices to remove, over all groups.
std::map<std::pair<std::string, int>, std::set<int64_t>> removals(const Dependencies& dep, const Plan& plan) {
  QS_CHECK(plan.removed.size() == dep.groups.size(), "prune: the plan has {} groups, the dependencies {}",
           plan.removed.size(), dep.groups.size());
  std::map<std::pair<std::string, int>, std::set<int64_t>> r;
  for (size_t g = 0; g < dep.groups.size(); ++g) {
    if (plan.removed[g].empty()) continue;
    for (const Member& m : dep.groups[g].members) {
      auto idx = member_indices(m, plan.removed[g]);
      r[{m.param, m.dim}].insert(idx.begin(), idx.end());
    }
  }
  return r;
}

}  // namespace

Criterion parse_criterion(const std::string& method) {
  if (method == "l1-channel") return Criterion::l1;
  if (method == "l2-channel") return Criterion::l2;
  if (method == "bn-scale") return Criterion::bn_scale;
  throw Error(fmt::format("prune: unknown method '{}' (expected l1-channel, l2-channel or bn-scale)", method));
}

const char* criterion_name(Criterion c) {
  switch (c) {
    case Criterion::l1: return "l1-channel";
    case Criterion::l2: return "l2-channel";
    case Criterion::bn_scale: return "bn-scale";
  }
  return "?";
}

std::vector<double> channel_scores(const Group& g, const nn::Module& model, Criterion c, bool per_entry) {
  const auto ts = tensors_of(model);
  std::vector<double> score(size_t(g.size), 0.0), count(size_t(g.size), 0.0);
  bool any = false;
  for (const Member& m : g.members) {
    const bool use = c == Criterion::bn_scale
                         ? m.role == Role::norm && m.param.size() > 7 && m.param.substr(m.param.size() - 7) == ".weight"
                         : m.role == Role::producer;
    if (!use) continue;
    any = true;
    Tensor t = tensor_for(ts, m, g.name).to(DType::f64).contiguous();
    const Around a(t.shape(), m.dim);
    const double* p = t.data_ptr<double>();
    for (int64_t ch = m.group_start; ch < m.group_start + m.length; ++ch) {
      double s = 0;
      for (int64_t k = 0; k < m.inner; ++k) {
        const int64_t i = (m.offset + ch - m.group_start) * m.inner + k;
        for (int64_t o = 0; o < a.outer; ++o)
          for (int64_t r = 0; r < a.rest; ++r) {
            const double v = p[(o * a.n + i) * a.rest + r];
            s += c == Criterion::l2 ? v * v : std::abs(v);
          }
      }
      score[size_t(ch)] += s;
      count[size_t(ch)] += double(m.inner * a.outer * a.rest);
    }
  }
  QS_CHECK(any, "prune: group {} has no {} to score its channels by{}", g.name,
           c == Criterion::bn_scale ? "batch norm" : "producer weight",
           c == Criterion::bn_scale ? "; hint: use l1-channel or l2-channel for it" : "");
  for (size_t i = 0; i < score.size(); ++i) {
    if (per_entry && count[i] > 0) score[i] /= count[i];
    if (c == Criterion::l2) score[i] = std::sqrt(score[i]);
  }
  return score;
}

int64_t Plan::channels_removed() const {
  int64_t n = 0;
  for (const auto& r : removed) n += int64_t(r.size());
  return n;
}

namespace {

// Every prunable group's channels ranked together by per-entry score; the lowest go until
// floor(ratio * total) have, skipping a group's last channel.
void plan_global(const Dependencies& dep, const nn::Module& model, const PruneOptions& opt, Plan& plan) {
  struct Candidate {
    double score;
    size_t group;
    int64_t channel;
  };
  std::vector<Candidate> all;
  std::vector<int64_t> left(dep.groups.size(), 0);
  for (size_t i = 0; i < dep.groups.size(); ++i) {
    const Group& g = dep.groups[i];
    if (!g.prunable) continue;
    const std::vector<double> s = channel_scores(g, model, opt.criterion, /*per_entry=*/true);
    for (int64_t ch = 0; ch < g.size; ++ch) all.push_back({s[size_t(ch)], i, ch});
    left[i] = g.size;
  }
  std::stable_sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.group != b.group ? a.group > b.group : a.channel > b.channel;
  });
  int64_t n = int64_t(std::floor(opt.ratio * double(all.size()) + 1e-9));
  for (const Candidate& c : all) {
    if (n == 0) break;
    if (left[c.group] <= 1) continue;
    plan.removed[c.group].push_back(c.channel);
    --left[c.group], --n;
  }
  for (auto& r : plan.removed) std::sort(r.begin(), r.end());
}

}  // namespace

Plan plan_channels(const Dependencies& dep, const nn::Module& model, const PruneOptions& opt) {
  auto check_ratio = [](double r, const std::string& what) {
    QS_CHECK(std::isfinite(r) && r >= 0 && r < 1,
             "prune: ratio {} for {} is outside [0, 1): a ratio of 1 or more would leave it no channels", r, what);
  };
  check_ratio(opt.ratio, "every layer");
  QS_CHECK(!opt.global || opt.per_layer.empty(), "prune: a global ranking and per-layer ratios exclude each other");
  QS_CHECK(opt.round_to >= 1 && opt.round_to <= 4096, "prune: round_to must be between 1 and 4096, got {}",
           opt.round_to);
  QS_CHECK(!opt.global || opt.round_to == 1, "prune: rounding widths applies to per-layer ratios, not a global ranking");
  std::vector<double> ratio(dep.groups.size(), opt.ratio);
  for (const auto& [layer, r] : opt.per_layer) {
    const Group* g = dep.find(layer);
    if (!g) {
      std::string names;
      for (const Group& o : dep.groups) names += (names.empty() ? "" : ", ") + o.name;
      throw Error(fmt::format("prune: per-layer ratio for '{}': no such layer; the groups are {}", layer, names));
    }
    check_ratio(r, "layer " + layer);
    QS_CHECK(g->prunable || r == 0, "prune: layer {} cannot be pruned: {}", layer, g->why);
    const size_t i = size_t(g - dep.groups.data());
    ratio[i] = r;
  }
  Plan plan;
  plan.removed.resize(dep.groups.size());
  if (opt.global) {
    plan_global(dep, model, opt, plan);
    return plan;
  }
  for (size_t i = 0; i < dep.groups.size(); ++i) {
    const Group& g = dep.groups[i];
    if (!g.prunable) continue;
    int64_t n = int64_t(std::floor(ratio[i] * double(g.size) + 1e-9));
    if (opt.round_to > 1 && n > 0 && n < g.size) {
      const int64_t kept = std::min(g.size, (g.size - n + opt.round_to - 1) / opt.round_to * opt.round_to);
      n = g.size - kept;
    }
    if (n == 0) continue;
    QS_CHECK(n < g.size, "prune: ratio {} would remove all {} channels of layer {}", ratio[i], g.size, g.name);
    plan.removed[i] = lowest(channel_scores(g, model, opt.criterion), n);
  }
  return plan;
}

std::vector<int64_t> lowest(const std::vector<double>& s, int64_t n) {
  QS_CHECK(n >= 0 && n <= int64_t(s.size()), "prune: cannot take the {} lowest of {} channels", n, s.size());
  std::vector<int64_t> order(s.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return s[size_t(a)] != s[size_t(b)] ? s[size_t(a)] < s[size_t(b)] : a > b;
  });
  order.resize(size_t(n));
  std::sort(order.begin(), order.end());
  return order;
}

nn::StateDict shrink(const Dependencies& dep, const Plan& plan, const nn::StateDict& state) {
  NoGrad ng;
  auto r = removals(dep, plan);
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : state) by_name[name] = &t;
  for (const auto& [key, idx] : r) {
    auto it = by_name.find(key.first);
    QS_CHECK(it != by_name.end(), "prune: parameter {} is not in the state dict", key.first);
    QS_CHECK(key.second < it->second->dim() && (idx.empty() || *idx.rbegin() < it->second->size(key.second)),
             "prune: parameter {} has shape {}, not the one analysed", key.first, shape_str(it->second->shape()));
  }
  nn::StateDict out;
  for (const auto& [name, t] : state) {
    Tensor x = t;
    for (int d = 0; d < t.dim(); ++d) {
      auto it = r.find({name, d});
      if (it == r.end()) continue;
      std::vector<double> keep;
      for (int64_t i = 0; i < x.size(d); ++i)
        if (!it->second.count(i)) keep.push_back(double(i));
      x = index_select(x, d, from_vector(keep, {int64_t(keep.size())}, DType::i64));
    }
    out.push_back({name, x});
  }
  return out;
}

void apply_masks(const Dependencies& dep, const Plan& plan, nn::Module& model) {
  NoGrad ng;
  const auto ts = tensors_of(model);
  auto r = removals(dep, plan);
  for (const auto& [key, idx] : r) {
    auto it = ts.find(key.first);
    QS_CHECK(it != ts.end(), "prune: parameter {} is not in the model", key.first);
    Tensor t = it->second;
    for (int64_t i : idx) t.narrow(key.second, i, 1).zero_();
  }
}

}  // namespace qs::prune
