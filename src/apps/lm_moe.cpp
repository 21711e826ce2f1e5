// The training-step hooks of mixture-of-experts LMs: auxiliary balance losses, router
// bias updates (DeepSeek-V3's auxiliary-loss-free balancing) and expert-load reports.
#include "apps/lm_internal.h"
#include "qiusuo/dist/dist.h"
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

std::string expert_load_summary(nn::TransformerLM& model) {
  std::string s;
  int layer = 0;
  for (nn::MoE* m : model.moe_layers()) {
    nn::ExpertLoad l = m->load_stats();
    s += fmt::format("{}layer {} max/mean {:.2f} cv {:.2f}", s.empty() ? "expert load: " : ", ", layer++,
                     l.max_over_mean, l.cv);
    m->reset_stats();
  }
  return s;
}

}  // namespace qs::apps
