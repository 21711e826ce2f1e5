// `qiusuo prune LM_CKPT --method ffn|heads` (include/qiusuo/apps/prune.h). ffn: on a dense
// LM the channel groups come from prune::analyse, as for the CNN, and the prunable ones are
// exactly the feed-forward hidden layers; on an MoE LM one group per SwiGLU (each expert)
// is built from the modules. heads: one group per attention layer (MHA or MLA), built here
// from the layer's shape (a reshape into heads keeps analyse from following them).
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "apps/lm_internal.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/apps/prune.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/head_mask.h"
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
    add_aux_losses(m, loss).backward();
    opt.step();
    after_step(m);
    if (!o.quiet) progress.update(step + 1, loss.item(), b.x.numel());
  }
  m.eval();
  return o.finetune_steps;
}

// The hidden width of the first block's feed-forward (c_fc or gate_proj rows).
int64_t ffn_width(const nn::TransformerLM& m) {
  for (auto& [name, t] : m.named_parameters())
    if (name.find("c_fc.weight") != std::string::npos || name.find("gate_proj.weight") != std::string::npos)
      return t.size(0);
  return 0;
}

void describe(PruneLmStats& s, nn::TransformerLM& m) {
  s.ffn_hidden = ffn_width(m);
  s.n_heads = m.config().n_heads;
  s.n_kv_heads = m.config().n_kv_heads > 0 ? m.config().n_kv_heads : m.config().n_heads;
  s.params = m.num_parameters();
  s.flops = graph::trace(m, zeros({1, m.config().max_seq_len}, DType::i64)).flops();
}

// Michel et al. 2019's masking importance: the rise of the mean loss over fixed training
// batches when a group's query heads are masked (nn::HeadMask); the least important
// floor(ratio * groups) groups of every layer go.
prune::Plan plan_heads(nn::TransformerLM& m, const prune::Dependencies& dep, const text::TokenStream& train,
                       const PruneLmOptions& o, std::map<std::string, std::vector<double>>& importance) {
  QS_CHECK(o.importance_batches >= 1, "prune --method heads: --importance-batches must be at least 1");
  const int64_t g = dep.groups[0].size;
  const auto k = int64_t(std::floor(o.ratio * double(g) + 1e-9));
  QS_CHECK(k < g, "prune --method heads: ratio {} would remove all {} head groups of each layer", o.ratio, g);
  Generator gen(o.seed);
  std::vector<data::Batch> batches;
  for (int64_t i = 0; i < o.importance_batches; ++i) batches.push_back(train.sample(4, m.config().max_seq_len, gen));
  NoGrad ng;
  nn::EvalScope eval(m);
  const int64_t vocab = m.config().vocab_size;
  auto loss = [&] {
    double s = 0;
    for (const data::Batch& b : batches) s += cross_entropy(m(b.x).reshape({-1, vocab}), b.y.reshape({-1})).item();
    return s / double(batches.size());
  };
  const double base = loss();
  std::map<std::string, nn::AttentionLayer*> layers;
  for (auto& [name, mod] : m.named_modules())
    if (auto* a = dynamic_cast<nn::AttentionLayer*>(mod.get())) layers[name] = a;
  prune::Plan plan;
  plan.removed.resize(dep.groups.size());
  for (size_t l = 0; l < dep.groups.size(); ++l) {
    nn::AttentionLayer& a = *layers.at(dep.groups[l].name);
    const int64_t rep = a.n_heads() / g;
    std::vector<double> imp(static_cast<size_t>(g));
    for (int64_t j = 0; j < g; ++j) {
      std::vector<double> mask(size_t(a.n_heads()), 1.0);
      for (int64_t q = j * rep; q < (j + 1) * rep; ++q) mask[size_t(q)] = 0.0;
      nn::HeadMask hm(a, mask);
      imp[size_t(j)] = loss() - base;
    }
    importance[dep.groups[l].name] = imp;
    plan.removed[l] = prune::lowest(imp, k);
  }
  return plan;
}

}  // namespace

nlohmann::json to_json(const PruneLmStats& s) {
  return {{"ffn_hidden", s.ffn_hidden}, {"n_heads", s.n_heads},       {"n_kv_heads", s.n_kv_heads},
          {"params", s.params},         {"flops", s.flops},           {"file_bytes", s.file_bytes},
          {"perplexity", s.perplexity}, {"fwd_ms", s.fwd_ms}};
}

PruneLmResult prune_lm(const PruneLmOptions& o) {
  QS_CHECK(!o.out.empty(), "prune: an output checkpoint (--out) is required");
  QS_CHECK(o.method == "ffn" || o.method == "heads", "prune: unknown language-model method '{}' (ffn or heads)",
           o.method);
  QS_CHECK(o.finetune_steps >= 0, "prune: --finetune-steps must be 0 or more, got {}", o.finetune_steps);
  const prune::Criterion criterion = prune::parse_criterion(o.criterion);
  QS_CHECK(criterion != prune::Criterion::bn_scale,
           "prune --method ffn: the language models have no batch norms; score by l1-channel or l2-channel");
  QS_CHECK(std::isfinite(o.ratio) && o.ratio >= 0 && o.ratio < 1, "prune: ratio {} is outside [0, 1)", o.ratio);
  const auto t0 = std::chrono::steady_clock::now();
  io::Checkpoint ck = io::load_checkpoint(o.checkpoint);
  check_lm_checkpoint(ck, o.checkpoint);
  QS_CHECK(!quant::is_quantized_checkpoint(ck), "prune: {} is quantised; prune the float checkpoint, then quantise",
           o.checkpoint);
  LoadedLm lm = load_lm(o.checkpoint);
  nn::TransformerLM& m = *lm.model;
  nn::LMConfig cfg = m.config();
  text::TextCorpus corpus = open_corpus(lm.train_config.value("corpus", std::string("kjv")));
  text::TokenStream train(corpus, text::Split::train, *lm.tokenizer), test(corpus, text::Split::test, *lm.tokenizer);
  const int64_t seq = cfg.max_seq_len;

  PruneLmResult r;
  nn::LMConfig pcfg = cfg;
  int64_t hidden = 0;
  prune::Dependencies dep;
  prune::Plan plan;
  if (o.method == "ffn" && !m.moe_layers().empty()) {
    // Every routed expert loses floor(ratio * d_expert) of its own lowest-scoring neurons, the
    // shared experts (one SwiGLU of n_shared * d_expert) n_shared times as many, and the dense
    // first layers floor(ratio * ffn_hidden): the config keeps one d_expert and one ffn_hidden.
    dep = prune::swiglu_groups(m);
    const nn::MoEConfig& mc = m.moe_layers()[0]->config();
    const auto cut = [&](int64_t width) { return int64_t(std::floor(o.ratio * double(width) + 1e-9)); };
    const int64_t ke = cut(mc.d_expert);
    QS_CHECK(ke < mc.d_expert, "prune --method ffn: ratio {} would remove all {} neurons of each expert", o.ratio,
             mc.d_expert);
    plan.removed.resize(dep.groups.size());
    for (size_t i = 0; i < dep.groups.size(); ++i) {
      const prune::Group& g = dep.groups[i];
      int64_t k = 0;
      if (g.name.find(".shared_experts.") != std::string::npos) {
        k = mc.n_shared * ke;
      } else if (g.name.find(".experts.") != std::string::npos) {
        k = ke;
      } else {
        QS_CHECK(hidden == 0 || g.size == hidden, "prune --method ffn: dense feed-forward widths differ ({} and {})",
                 hidden, g.size);
        hidden = g.size, k = cut(g.size);
        QS_CHECK(k < g.size, "prune --method ffn: ratio {} would remove all {} neurons of {}", o.ratio, g.size, g.name);
      }
      plan.removed[i] = prune::lowest(prune::channel_scores(g, m, criterion), k);
    }
    r.channels_removed = plan.channels_removed();
    pcfg.moe_d_expert = mc.d_expert - ke;
    if (hidden > 0) pcfg.ffn_hidden = hidden - cut(hidden);
  } else if (o.method == "ffn") {
    dep = prune::analyse(m, zeros({1, std::min<int64_t>(16, cfg.max_seq_len)}, DType::i64));
    // Every prunable group of a dense LM is a feed-forward hidden layer: check, and that they
    // have one size (the config's ffn_hidden).
    int64_t ffn_groups = 0;
    for (const prune::Group& g : dep.groups) {
      if (!g.prunable) continue;
      const bool ffn = g.name.find("c_fc") != std::string::npos || g.name.find("gate_proj") != std::string::npos;
      QS_CHECK(ffn, "prune --method ffn: group {} is prunable but is not a feed-forward layer", g.name);
      QS_CHECK(hidden == 0 || g.size == hidden, "prune --method ffn: feed-forward widths differ ({} and {})", hidden,
               g.size);
      hidden = g.size;
      ++ffn_groups;
    }
    QS_CHECK(ffn_groups == cfg.n_layers, "prune --method ffn: found {} feed-forward groups in {} blocks:\n{}",
             ffn_groups, cfg.n_layers, dep.to_text());
    plan = prune::plan_channels(dep, m, {criterion, o.ratio, {}});
    r.channels_removed = plan.channels_removed();
    pcfg.ffn_hidden = hidden - r.channels_removed / cfg.n_layers;
  } else {
    QS_CHECK(cfg.pos.kind != nn::PositionEncoding::alibi,
             "prune --method heads: {} uses ALiBi, whose slopes depend on the number of heads: removing a head would "
             "change the others' slopes",
             o.checkpoint);
    dep = prune::head_groups(m);
    QS_CHECK(int64_t(dep.groups.size()) == cfg.n_layers, "prune --method heads: found {} attention layers in {} blocks",
             dep.groups.size(), cfg.n_layers);
    plan = plan_heads(m, dep, train, o, r.importance);
    const int64_t h = cfg.n_heads, g = dep.groups[0].size, k = int64_t(plan.removed[0].size());  // groups removed per layer
    pcfg.n_heads = h - k * (h / g);
    if (cfg.attention == "mla") {
      // The head dims stay: written out, since their default (d_model / n_heads) would change.
      const nn::MlaConfig& mc = dynamic_cast<nn::MultiheadLatentAttention&>(m.blocks()[0]->attention()).config();
      pcfg.qk_nope_head_dim = mc.qk_nope_head_dim, pcfg.v_head_dim = mc.v_head_dim;
    } else {
      pcfg.head_dim = cfg.head_dim > 0 ? cfg.head_dim : cfg.d_model / h;
      if (cfg.n_kv_heads > 0) pcfg.n_kv_heads = g - k;
    }
    r.channels_removed = k * (h / g) * cfg.n_layers;
  }
  r.groups = dep.to_text();
  for (size_t i = 0; i < dep.groups.size(); ++i)
    if (!plan.removed[i].empty()) r.removed[dep.groups[i].name] = plan.removed[i];
  const nn::StateDict small = prune::shrink(dep, plan, m.state_dict());
  Generator gen(o.seed);
  auto pruned = std::make_unique<nn::TransformerLM>(pcfg, nn::FfnFactory{}, gen);
  pruned->load_state_dict(small);
  pruned->eval();

  r.before.perplexity = evaluate_lm(m, test, seq, 4, o.eval_windows).perplexity;
  r.pruned_perplexity = r.after.perplexity = evaluate_lm(*pruned, test, seq, 4, o.eval_windows).perplexity;
  if (o.finetune_steps > 0) {
    r.finetune_steps = finetune(*pruned, train, o);
    r.after.perplexity = evaluate_lm(*pruned, test, seq, 4, o.eval_windows).perplexity;
  }

  nlohmann::json config = ck.config;
  config["model"] = pcfg.to_json();
  config["pruned"] = {{"source", o.checkpoint},          {"method", o.method},
                      {"criterion", o.criterion},        {"ratio", o.ratio},
                      {"ffn_hidden_before", ffn_width(m)}, {"n_heads_before", cfg.n_heads},
                      {"perplexity_before", r.before.perplexity},
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

  describe(r.before, m);
  describe(r.after, *pruned);
  if (o.latency_rounds > 0) {
    Generator g(1);
    const Tensor x = randint(0, cfg.vocab_size, {1, seq}, DType::i64, &g);
    NoGrad ng;
    const util::AlternatingTimes t = util::alternating([&] { m(x); }, [&] { (*pruned)(x); }, o.latency_rounds, 0.25);
    r.before.fwd_ms = t.a * 1e3, r.after.fwd_ms = t.b * 1e3, r.speedup = t.ratio;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qs::apps
