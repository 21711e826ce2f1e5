// Mixture of experts: the SwiGLU feed-forward (Llama, DeepSeek) and the DeepSeek-V3
// mixture-of-experts layer (DeepSeek-AI 2024, arXiv:2412.19437; V2: arXiv:2405.04434).
// Parameter names follow Hugging Face's DeepSeek checkpoints, so state dicts map 1:1:
//   experts.{i}.gate_proj.weight / up_proj.weight / down_proj.weight
//   gate.weight [n_routed, d_model], gate.e_score_correction_bias [n_routed] (a buffer)
//   shared_experts.gate_proj.weight / ...
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "qiusuo/nn/linear.h"

namespace qs::nn {

// SwiGLU (Shazeer 2020): y = down_proj(silu(gate_proj(x)) * up_proj(x)).
// x [..., d_model] -> [..., d_model]; gate_proj and up_proj are Linear(d_model, d_hidden),
// down_proj is Linear(d_hidden, d_model), with or without bias; PyTorch's Linear init.
class SwiGLU : public Module {
 public:
  SwiGLU(int64_t d_model, int64_t d_hidden, bool bias = false, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const std::shared_ptr<Linear>& gate_proj() const { return gate_proj_; }
  const std::shared_ptr<Linear>& up_proj() const { return up_proj_; }
  const std::shared_ptr<Linear>& down_proj() const { return down_proj_; }

 private:
  int64_t d_model_, d_hidden_;
  std::shared_ptr<Linear> gate_proj_, up_proj_, down_proj_;
};

struct MoEConfig {
  int64_t d_model = 0;
  int64_t d_expert = 0;             // hidden width of each expert's SwiGLU
  int64_t n_routed = 0;             // routed experts (>= 1)
  int64_t n_shared = 0;             // shared experts, run as one SwiGLU of width n_shared * d_expert
  int64_t top_k = 1;                // experts per token, 1 <= top_k <= n_routed
  std::string score = "sigmoid";    // "sigmoid" (V3) or "softmax" (V2)
  bool norm_topk_prob = true;       // gate weights of a token renormalised to sum 1 (when top_k > 1)
  double routed_scaling = 1.0;      // gate weights multiplied by this
  double bias_update_speed = 1e-3;  // gamma of the auxiliary-loss-free balancing; 0 disables
  double aux_loss_alpha = 0.0;      // weight of the balance loss; 0 disables
};

// Routing load since the last reset_stats(). A token counts once for each of its top_k
// experts, so sum(counts) = tokens * top_k.
struct ExpertLoad {
  std::vector<int64_t> counts;   // per routed expert
  std::vector<double> fraction;  // counts / total (0 when total is 0)
  int64_t total = 0;
  double max_over_mean = 0;  // max(counts) / mean(counts): 1 is perfect balance (0 when total is 0)
  double cv = 0;             // coefficient of variation: population std / mean (0 when total is 0)
};
// The load statistics of per-expert routing counts.
ExpertLoad expert_load_of(std::vector<int64_t> counts);

// One routing decision for T tokens.
struct Routing {
  Tensor scores;   // [T, n_routed]: s = score(x W_gate^T), without the bias (differentiable)
  Tensor indices;  // [T, top_k] i64: the experts with the largest s + bias, best first, ties to the lower id
  Tensor weights;  // [T, top_k]: s at those experts (normalised when norm_topk_prob, top_k > 1) * routed_scaling
};

// DeepSeek-V3 mixture of experts. forward(x [b, n, d_model]) -> [b, n, d_model]:
//   y_t = sum over the top_k experts e of token t of  w_{t,e} SwiGLU_e(x_t)  +  Shared(x_t)
// Routing (Routing above): the selection uses s + bias, where bias is the buffer
// gate.e_score_correction_bias (no gradient); the gate weights use s alone, so the
// gradient reaches gate.weight through them. Tokens are grouped per expert and each
// expert runs only on its own tokens.
// Balancing without an auxiliary loss: every forward in training mode adds its per-expert
// counts c_i to a pending total; update_bias() (call it after the optimiser step) does
// bias_i += gamma * sign(mean(c) - c_i) with those counts, then clears them.
// Balance loss (aux_loss_alpha > 0, training mode), alpha * sum_i f_i P_i:
//   "sigmoid": V3's sequence-wise loss, averaged over the b sequences: per sequence,
//              f_i = n_routed / (top_k n) * #tokens routed to i, P_i = mean_t s_{t,i} / sum_j s_{t,j};
//   "softmax": V2's expert-level loss over all b n tokens: f_i = n_routed / (top_k b n) * count_i,
//              P_i = mean_t s_{t,i}.
// f is a constant; the gradient flows through P. Errors: config values out of range,
// x not [b, n, d_model].
class MoE : public Module {
 public:
  explicit MoE(const MoEConfig& cfg, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  // Routing of x [T, d_model] (no statistics recorded).
  Routing route(const Tensor& x) const;

  void update_bias();
  // The counts update_bias() will use; data-parallel training replaces them with their sum
  // over the ranks first, so that every rank moves its biases alike.
  std::vector<int64_t>& pending_counts() { return pending_counts_; }
  // The balance loss of the last forward: a 0-d tensor, undefined when aux_loss_alpha is 0
  // or the last forward was not in training mode.
  Tensor aux_loss() const { return aux_loss_; }
  ExpertLoad load_stats() const;
  void reset_stats();
  // The counts load_stats() reports, so a resumed training run can restore them.
  std::vector<int64_t>& stats_counts() { return stats_counts_; }

  const MoEConfig& config() const { return cfg_; }
  const Tensor& gate_weight() const { return gate_weight_; }  // [n_routed, d_model]
  const Tensor& score_bias() const { return bias_; }          // [n_routed]
  std::shared_ptr<SwiGLU> expert(int64_t i) const;
  const std::shared_ptr<SwiGLU>& shared_experts() const { return shared_; }  // null when n_shared = 0
  std::string extra_repr() const override;

 private:
  Tensor balance_loss(const Routing& r, int64_t b, int64_t n, const std::vector<int64_t>& idx) const;

  MoEConfig cfg_;
  std::vector<std::shared_ptr<SwiGLU>> experts_;
  std::shared_ptr<SwiGLU> shared_;
  Tensor gate_weight_, bias_;
  Tensor aux_loss_;
  std::vector<int64_t> pending_counts_;  // training forwards since the last update_bias()
  std::vector<int64_t> stats_counts_;    // every forward since the last reset_stats()
};

}  // namespace qs::nn
