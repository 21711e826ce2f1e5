// `qiusuo prune LM_CKPT --method ffn`: the feed-forward neurons of a dense language model
// (include/qiusuo/apps/prune.h). The channel groups come from prune::analyse, as for the
// CNN; on a dense LM the prunable ones are exactly the feed-forward hidden layers.
#include <chrono>
#include <filesystem>

#include "apps/lm_internal.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/apps/prune.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/prune/prune.h"
#include "qiusuo/quant/checkpoint.h"
#include "util/progress.h"
#include "util/timing.h"

namespace qs::apps {

namespace {

int64_t finetune(nn::TransformerLM& m, const text::TokenStream& train, const PruneLmOptions& o) {
  optim::AdamW opt(m.parameters(), o.finetune_lr, {0.9, 0.95}, 1e-8, 0.1);
  Generator g(o.seed);
  const int64_t seq = m.config().max_seq_len, vocab = m.config().vocab_size;
  util::Progress progress("finetune", o.finetune_steps, "tok", 20);
  m.train();
  for (int64_t step = 0; step < o.finetune_steps; ++step) {
    data::Batch b = train.sample(o.batch, seq, g);
    opt.zero_grad();
    Tensor loss = cross_entropy(m(b.x).reshape({-1, vocab}), b.y.reshape({-1}));
    loss.backward();
    opt.step();
    if (!o.quiet) progress.update(step + 1, loss.item(), b.x.numel());
  }
  m.eval();
  return o.finetune_steps;
}

void describe(PruneLmStats& s, nn::TransformerLM& m, int64_t hidden) {
  s.ffn_hidden = hidden;
  s.params = m.num_parameters();
  s.flops = graph::trace(m, zeros({1, m.config().max_seq_len}, DType::i64)).flops();
}

}  // namespace

nlohmann::json to_json(const PruneLmStats& s) {
  return {{"ffn_hidden", s.ffn_hidden}, {"params", s.params},         {"flops", s.flops},
          {"file_bytes", s.file_bytes}, {"perplexity", s.perplexity}, {"fwd_ms", s.fwd_ms}};
}

PruneLmResult prune_lm(const PruneLmOptions& o) {
  QS_CHECK(!o.out.empty(), "prune: an output checkpoint (--out) is required");
  QS_CHECK(o.finetune_steps >= 0, "prune: --finetune-steps must be 0 or more, got {}", o.finetune_steps);
  const prune::Criterion criterion = prune::parse_criterion(o.criterion);
  QS_CHECK(criterion != prune::Criterion::bn_scale,
           "prune --method ffn: the language models have no batch norms; score by l1-channel or l2-channel");
  const auto t0 = std::chrono::steady_clock::now();
  io::Checkpoint ck = io::load_checkpoint(o.checkpoint);
  check_lm_checkpoint(ck, o.checkpoint);
  QS_CHECK(!quant::is_quantized_checkpoint(ck), "prune: {} is quantised; prune the float checkpoint, then quantise",
           o.checkpoint);
  LoadedLm lm = load_lm(o.checkpoint);
  nn::TransformerLM& m = *lm.model;
  nn::LMConfig cfg = m.config();
  QS_CHECK(cfg.ffn != "moe" || cfg.block != "deepseek",
           "prune --method ffn: {} has MoE feed-forwards; pruning experts is not supported yet", o.checkpoint);

  const prune::Dependencies dep = prune::analyse(m, zeros({1, std::min<int64_t>(16, cfg.max_seq_len)}, DType::i64));
  PruneLmResult r;
  r.groups = dep.to_text();
  // Every prunable group of a dense LM is a feed-forward hidden layer: check, and that they
  // have one size (the config's ffn_hidden).
  int64_t hidden = 0, ffn_groups = 0;
  for (const prune::Group& g : dep.groups) {
    if (!g.prunable) continue;
    const bool ffn = g.name.find("c_fc") != std::string::npos || g.name.find("gate_proj") != std::string::npos;
    QS_CHECK(ffn, "prune --method ffn: group {} is prunable but is not a feed-forward layer", g.name);
    QS_CHECK(hidden == 0 || g.size == hidden, "prune --method ffn: feed-forward widths differ ({} and {})", hidden,
             g.size);
    hidden = g.size;
    ++ffn_groups;
  }
  QS_CHECK(ffn_groups == cfg.n_layers, "prune --method ffn: found {} feed-forward groups in {} blocks:\n{}", ffn_groups,
           cfg.n_layers, r.groups);
  const prune::Plan plan = prune::plan_channels(dep, m, {criterion, o.ratio, {}});
  r.channels_removed = plan.channels_removed();
  const nn::StateDict small = prune::shrink(dep, plan, m.state_dict());

  nn::LMConfig pcfg = cfg;
  pcfg.ffn_hidden = hidden - r.channels_removed / cfg.n_layers;
  Generator gen(o.seed);
  auto pruned = std::make_unique<nn::TransformerLM>(pcfg, nn::FfnFactory{}, gen);
  pruned->load_state_dict(small);
  pruned->eval();

  text::TextCorpus corpus = open_corpus(lm.train_config.value("corpus", std::string("kjv")));
  text::TokenStream train(corpus, text::Split::train, *lm.tokenizer), test(corpus, text::Split::test, *lm.tokenizer);
  const int64_t seq = cfg.max_seq_len;
  r.before.perplexity = evaluate_lm(m, test, seq, 4, o.eval_windows).perplexity;
  r.pruned_perplexity = r.after.perplexity = evaluate_lm(*pruned, test, seq, 4, o.eval_windows).perplexity;
  if (o.finetune_steps > 0) {
    r.finetune_steps = finetune(*pruned, train, o);
    r.after.perplexity = evaluate_lm(*pruned, test, seq, 4, o.eval_windows).perplexity;
  }

  nlohmann::json config = ck.config;
  config["model"] = pcfg.to_json();
  config["pruned"] = {{"source", o.checkpoint},          {"method", "ffn"},
                      {"criterion", o.criterion},        {"ratio", o.ratio},
                      {"ffn_hidden_before", hidden},     {"perplexity_before", r.before.perplexity},
                      {"perplexity_pruned", r.pruned_perplexity}, {"finetune_steps", r.finetune_steps},
                      {"perplexity_after", r.after.perplexity}};
  std::filesystem::path out(o.out);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  nlohmann::json extra = {{"tokenizer", ck.extra.value("tokenizer", nlohmann::json())}};
  io::save_checkpoint(o.out, io::Checkpoint{pruned->state_dict(), {}, ck.step, {}, config, extra});
  const std::string tmp = o.out + ".size.tmp";
  io::save_checkpoint(tmp, io::Checkpoint{m.state_dict(), {}, ck.step, {}, ck.config, extra});
  r.before.file_bytes = int64_t(std::filesystem::file_size(tmp));
  std::filesystem::remove(tmp);
  r.after.file_bytes = int64_t(std::filesystem::file_size(o.out));

  describe(r.before, m, hidden);
  describe(r.after, *pruned, pcfg.ffn_hidden);
  if (o.latency_rounds > 0) {
    Generator g(1);
    const Tensor x = randint(0, cfg.vocab_size, {1, seq}, DType::i64, &g);
    NoGrad ng;
    std::vector<double> tb, ta, ratio;
    for (int k = 0; k < o.latency_rounds; ++k) {
      tb.push_back(util::seconds_per_call_for([&] { m(x); }, 0.25));
      ta.push_back(util::seconds_per_call_for([&] { (*pruned)(x); }, 0.25));
      ratio.push_back(tb.back() / ta.back());
    }
    r.before.fwd_ms = util::median(tb) * 1e3, r.after.fwd_ms = util::median(ta) * 1e3;
    r.speedup = util::median(ratio);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qs::apps
