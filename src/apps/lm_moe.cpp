// The training-step hooks of mixture-of-experts LMs: auxiliary balance losses, router
// bias updates (DeepSeek-V3's auxiliary-loss-free balancing) and expert-load reports.
#include "apps/lm_internal.h"
#include "qiusuo/dist/dist.h"
#include "qiusuo/error.h"
#include "qiusuo/nn/moe.h"
#include "qiusuo/ops.h"

namespace qs::apps {

Tensor add_aux_losses(nn::TransformerLM& model, const Tensor& loss) {
  Tensor aux = model.aux_loss();
  return aux.defined() ? loss + aux : loss;
}

void after_step(nn::TransformerLM& model) {
  for (nn::MoE* m : model.moe_layers()) {
    if (dist::active()) {  // the routing counts of the global batch
      std::vector<int64_t>& c = m->pending_counts();
      std::vector<double> sum(c.begin(), c.end());
      dist::all_reduce_sum(sum);
      for (size_t e = 0; e < c.size(); ++e) c[e] = int64_t(sum[e]);
    }
    m->update_bias();
  }
}

ExpertLoadLog::ExpertLoadLog(nn::TransformerLM& model) : layers_(model.moe_layers()) {
  for (nn::MoE* m : layers_) {
    m->reset_stats();
    run_counts_.emplace_back(size_t(m->config().n_routed), 0);
  }
}

ExpertLoadPoint ExpertLoadLog::record(int64_t step) {
  ExpertLoadPoint p{step, {}, {}};
  for (size_t i = 0; i < layers_.size(); ++i) {
    const nn::ExpertLoad l = layers_[i]->load_stats();
    for (size_t e = 0; e < l.counts.size(); ++e) run_counts_[i][e] += l.counts[e];
    p.max_over_mean.push_back(l.max_over_mean);
    p.cv.push_back(l.cv);
    layers_[i]->reset_stats();
  }
  return p;
}

void ExpertLoadLog::discard() {
  for (nn::MoE* m : layers_) m->reset_stats();
}

std::string ExpertLoadLog::summary() const {
  std::string s;
  for (size_t i = 0; i < run_counts_.size(); ++i) {
    const nn::ExpertLoad l = nn::expert_load_of(run_counts_[i]);
    s += fmt::format("{}layer {} max/mean {:.2f} cv {:.2f}", s.empty() ? "expert load: " : ", ", i, l.max_over_mean,
                     l.cv);
  }
  return s;
}

nlohmann::json ExpertLoadLog::state() const {
  nlohmann::json pending = nlohmann::json::array();
  for (nn::MoE* m : layers_) pending.push_back(m->stats_counts());
  return {{"pending", pending}, {"run", run_counts_}};
}

void ExpertLoadLog::restore(const nlohmann::json& state, const std::string& path) {
  auto pending = state.at("pending").get<std::vector<std::vector<int64_t>>>();
  auto run = state.at("run").get<std::vector<std::vector<int64_t>>>();
  QS_CHECK(pending.size() == layers_.size() && run.size() == layers_.size(),
           "{}: the checkpoint's expert load has {} layers, the model {} MoE layers", path, pending.size(),
           layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    QS_CHECK(pending[i].size() == run_counts_[i].size() && run[i].size() == run_counts_[i].size(),
             "{}: the checkpoint's expert load of MoE layer {} has {} experts, the model {}", path, i,
             pending[i].size(), run_counts_[i].size());
    layers_[i]->stats_counts() = pending[i];
    run_counts_[i] = run[i];
  }
}

}  // namespace qs::apps
