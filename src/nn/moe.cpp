// SwiGLU and the DeepSeek-V3 mixture of experts.
#include "qiusuo/nn/moe.h"

#include <algorithm>
#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/init.h"
#include "qiusuo/ops.h"

namespace qs::nn {

SwiGLU::SwiGLU(int64_t d_model, int64_t d_hidden, bool bias, Generator& gen)
    : Module("SwiGLU"), d_model_(d_model), d_hidden_(d_hidden) {
  QS_CHECK(d_model > 0 && d_hidden > 0, "SwiGLU: sizes must be positive, got d_model={} d_hidden={}", d_model,
           d_hidden);
  gate_proj_ = register_module("gate_proj", std::make_shared<Linear>(d_model, d_hidden, bias, gen));
  up_proj_ = register_module("up_proj", std::make_shared<Linear>(d_model, d_hidden, bias, gen));
  down_proj_ = register_module("down_proj", std::make_shared<Linear>(d_hidden, d_model, bias, gen));
}

Tensor SwiGLU::forward(const Tensor& x) {
  ModuleScope scope(*this);
  QS_CHECK(x.dim() >= 1 && x.size(-1) == d_model_, "SwiGLU: expected input [..., {}], got {}", d_model_,
           shape_str(x.shape()));
  // Through child(): quantisation may have replaced the projections.
  return child("down_proj")->forward(silu(child("gate_proj")->forward(x)) * child("up_proj")->forward(x));
}

std::string SwiGLU::extra_repr() const {
  return fmt::format("d_model={}, d_hidden={}, bias={}", d_model_, d_hidden_,
                     gate_proj_->bias().defined() ? "True" : "False");
}

namespace {

void check_config(const MoEConfig& c) {
  QS_CHECK(c.d_model > 0 && c.d_expert > 0, "MoE: d_model and d_expert must be positive, got {} and {}", c.d_model,
           c.d_expert);
  QS_CHECK(c.n_routed >= 1 && c.n_shared >= 0, "MoE: need n_routed >= 1 and n_shared >= 0, got {} and {}", c.n_routed,
           c.n_shared);
  QS_CHECK(c.top_k >= 1 && c.top_k <= c.n_routed, "MoE: top_k must be in [1, n_routed = {}], got {}", c.n_routed,
           c.top_k);
  QS_CHECK(c.score == "sigmoid" || c.score == "softmax", "MoE: score must be 'sigmoid' or 'softmax', got '{}'",
           c.score);
  QS_CHECK(std::isfinite(c.routed_scaling) && c.routed_scaling > 0, "MoE: routed_scaling must be positive, got {}",
           c.routed_scaling);
  QS_CHECK(c.bias_update_speed >= 0 && c.aux_loss_alpha >= 0,
           "MoE: bias_update_speed and aux_loss_alpha must be >= 0, got {} and {}", c.bias_update_speed,
           c.aux_loss_alpha);
}

Tensor index_tensor(const std::vector<int64_t>& v) { return from_blob_copy(v.data(), {int64_t(v.size())}, DType::i64); }

// The (token, slot) pairs of a [T, K] routing grouped by expert, tokens in order within
// each group: a counting sort of the flat positions p = t K + slot.
struct Dispatch {
  std::vector<int64_t> counts, start;  // per expert; start has n_experts + 1 entries
  std::vector<int64_t> token, pos;     // T K entries, grouped
};
Dispatch group_by_expert(const std::vector<int64_t>& idx, int64_t n_experts, int64_t K) {
  Dispatch d;
  d.counts.assign(size_t(n_experts), 0);
  for (int64_t e : idx) ++d.counts[size_t(e)];
  d.start.assign(size_t(n_experts) + 1, 0);
  for (int64_t e = 0; e < n_experts; ++e) d.start[size_t(e) + 1] = d.start[size_t(e)] + d.counts[size_t(e)];
  std::vector<int64_t> cursor(d.start.begin(), d.start.end() - 1);
  d.token.resize(idx.size());
  d.pos.resize(idx.size());
  for (size_t p = 0; p < idx.size(); ++p) {
    int64_t at = cursor[size_t(idx[p])]++;
    d.token[size_t(at)] = int64_t(p) / K;
    d.pos[size_t(at)] = int64_t(p);
  }
  return d;
}

}  // namespace

MoE::MoE(const MoEConfig& cfg, Generator& gen) : Module("MoE"), cfg_(cfg) {
  check_config(cfg);
  auto list = register_module("experts", std::make_shared<Module>("ModuleList"));
  for (int64_t e = 0; e < cfg.n_routed; ++e)
    experts_.push_back(
        list->register_module(std::to_string(e), std::make_shared<SwiGLU>(cfg.d_model, cfg.d_expert, false, gen)));
  auto gate = register_module("gate", std::make_shared<Module>("MoEGate"));
  gate_weight_ = gate->register_parameter("weight", empty({cfg.n_routed, cfg.d_model}));
  init::kaiming_uniform_(gate_weight_, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
  bias_ = gate->register_buffer("e_score_correction_bias", zeros({cfg.n_routed}));
  if (cfg.n_shared > 0)
    shared_ = register_module("shared_experts",
                              std::make_shared<SwiGLU>(cfg.d_model, cfg.n_shared * cfg.d_expert, false, gen));
  pending_counts_.assign(size_t(cfg.n_routed), 0);
  stats_counts_.assign(size_t(cfg.n_routed), 0);
}

std::shared_ptr<SwiGLU> MoE::expert(int64_t i) const {
  QS_CHECK(i >= 0 && i < cfg_.n_routed, "MoE: expert {} is out of range (n_routed = {})", i, cfg_.n_routed);
  return experts_[size_t(i)];
}

Routing MoE::route(const Tensor& x) const {
  QS_CHECK(x.dim() == 2 && x.size(1) == cfg_.d_model, "MoE: route expects x [T, {}], got {}", cfg_.d_model,
           shape_str(x.shape()));
  Routing r;
  Tensor logits = linear(x, gate_weight_);
  r.scores = cfg_.score == "sigmoid" ? sigmoid(logits) : softmax(logits, 1);
  {
    NoGrad ng;  // the bias steers the choice only
    r.indices = topk(r.scores.detach() + bias_.to(r.scores.dtype()), cfg_.top_k, 1).indices;
  }
  Tensor w = gather(r.scores, 1, r.indices);
  // As Hugging Face's DeepSeek: a single weight is not normalised (that would make it the
  // constant 1 and cut the router's gradient).
  if (cfg_.norm_topk_prob && cfg_.top_k > 1) w = w / (sum(w, {1}, true) + 1e-20);
  if (cfg_.routed_scaling != 1.0) w = w * cfg_.routed_scaling;
  r.weights = w;
  return r;
}

Tensor MoE::forward(const Tensor& x) {
  ModuleScope scope(*this);
  QS_CHECK(x.dim() == 3 && x.size(2) == cfg_.d_model, "MoE: expected x [b, n, {}], got {}", cfg_.d_model,
           shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1), T = B * N, D = cfg_.d_model, K = cfg_.top_k;
  Tensor xf = x.reshape({T, D});
  Routing r = route(xf);
  std::vector<int64_t> idx = r.indices.to_vector_as<int64_t>();
  note_value_dependent("MoE routing: which experts run on which tokens");
  Dispatch d = group_by_expert(idx, cfg_.n_routed, K);
  for (int64_t e = 0; e < cfg_.n_routed; ++e) {
    stats_counts_[size_t(e)] += d.counts[size_t(e)];
    if (is_training()) pending_counts_[size_t(e)] += d.counts[size_t(e)];
  }
  // Each expert on its own tokens; results laid end to end in the grouped order, scaled
  // by their gate weights and added back to their tokens' rows in one scatter.
  Tensor token = index_tensor(d.token);
  std::vector<Tensor> ys;
  for (int64_t e = 0; e < cfg_.n_routed; ++e) {
    if (d.counts[size_t(e)] == 0) continue;
    Tensor rows = index_select(xf, 0, token.narrow(0, d.start[size_t(e)], d.counts[size_t(e)]));
    ys.push_back(experts_[size_t(e)]->forward(rows));
  }
  Tensor out = zeros({T, D}, xf.dtype());
  if (!ys.empty()) {
    Tensor gate = index_select(r.weights.reshape({T * K}), 0, index_tensor(d.pos)).unsqueeze(1);
    Tensor y = cat(ys, 0) * gate;
    out = scatter_add(zeros({T, D}, y.dtype()), 0, token.unsqueeze(1).expand({T * K, D}), y);
  }
  if (shared_) out = out + shared_->forward(xf);
  aux_loss_ = is_training() && cfg_.aux_loss_alpha > 0 ? balance_loss(r, B, N, idx) : Tensor();
  return out.reshape({B, N, D});
}

Tensor MoE::balance_loss(const Routing& r, int64_t b, int64_t n, const std::vector<int64_t>& idx) const {
  const int64_t E = cfg_.n_routed, K = cfg_.top_k;
  const bool per_sequence = cfg_.score == "sigmoid";
  const int64_t groups = per_sequence ? b : 1, tokens = per_sequence ? n : b * n;
  std::vector<double> f(size_t(groups * E), 0.0);
  for (size_t p = 0; p < idx.size(); ++p) {
    int64_t g = per_sequence ? int64_t(p) / K / n : 0;
    f[size_t(g * E + idx[p])] += double(E) / double(K * tokens);
  }
  Tensor s = r.scores;
  if (per_sequence) s = s / sum(s, {1}, true);
  Tensor P = mean(s.reshape({groups, tokens, E}), {1});  // [groups, E]
  Tensor per_group = sum(from_vector(f, {groups, E}, s.dtype()) * P, {1});
  return mean(per_group) * cfg_.aux_loss_alpha;
}

void MoE::update_bias() {
  int64_t total = 0;
  for (int64_t c : pending_counts_) total += c;
  if (cfg_.bias_update_speed > 0 && total > 0) {
    const double mean_c = double(total) / double(cfg_.n_routed);
    std::vector<double> b = bias_.to_vector();
    for (size_t e = 0; e < b.size(); ++e) {
      double err = mean_c - double(pending_counts_[e]);
      b[e] += cfg_.bias_update_speed * double((err > 0) - (err < 0));
    }
    NoGrad ng;
    bias_.copy_(from_vector(b, {cfg_.n_routed}, bias_.dtype()));
  }
  std::fill(pending_counts_.begin(), pending_counts_.end(), 0);
}

ExpertLoad expert_load_of(std::vector<int64_t> counts) {
  ExpertLoad s;
  s.counts = std::move(counts);
  for (int64_t c : s.counts) s.total += c;
  s.fraction.assign(s.counts.size(), 0.0);
  if (s.total == 0) return s;
  const double mean_c = double(s.total) / double(s.counts.size());
  double var = 0, mx = 0;
  for (size_t e = 0; e < s.counts.size(); ++e) {
    double c = double(s.counts[e]);
    s.fraction[e] = c / double(s.total);
    var += (c - mean_c) * (c - mean_c);
    mx = std::max(mx, c);
  }
  s.max_over_mean = mx / mean_c;
  s.cv = std::sqrt(var / double(s.counts.size())) / mean_c;
  return s;
}

ExpertLoad MoE::load_stats() const { return expert_load_of(stats_counts_); }

void MoE::reset_stats() { std::fill(stats_counts_.begin(), stats_counts_.end(), 0); }

std::string MoE::extra_repr() const {
  return fmt::format("d_model={}, d_expert={}, n_routed={}, n_shared={}, top_k={}, score='{}'", cfg_.d_model,
                     cfg_.d_expert, cfg_.n_routed, cfg_.n_shared, cfg_.top_k, cfg_.score);
}

}  // namespace qs::nn
