// `qiusuo experiment deepseek`: DeepSeek's multi-head latent attention and mixture of
// experts against a dense model of equal active compute per token (see
// include/qiusuo/apps/experiments.h and docs/experiments/deepseek.md).
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include <fmt/ranges.h>

#include "apps/experiment_util.h"
#include "io/atomic_file.h"
#include "io/read_file.h"
#include "qiusuo/apps/experiments.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/error.h"
#include "qiusuo/nn/moe.h"
#include "qiusuo/util/stats.h"
#include "qiusuo/util/svg_plot.h"

namespace qs::apps {

namespace {

namespace fs = std::filesystem;
using util::mean_of;
using util::sd_of;

struct Size {
  int64_t d_model, layers, heads, batch, steps, seq, eval_tokens;
  double lr;
};

Size size_for(const DeepseekExperimentOptions& o) {
  Size s = o.quick ? Size{64, 2, 4, 4, 20, 64, 2048, 2e-3} : Size{128, 4, 4, 8, 1500, 256, 65536, 2e-3};
  if (o.steps > 0) s.steps = o.steps;
  if (o.seq > 0) s.seq = o.seq;
  QS_CHECK(s.eval_tokens >= s.seq, "experiment deepseek: --seq {} is longer than the {} test tokens evaluated", s.seq,
           s.eval_tokens);
  return s;
}

// One variant: its attention, its feed-forward and how the MoE router is balanced.
struct Variant {
  const char* name;
  const char* attention;  // "mha" | "mla"
  const char* ffn;        // "swiglu" | "moe"
  double bias_speed;      // DeepSeek-V3's router bias update (auxiliary-loss-free balancing); 0: none
  double aux_alpha;       // the balance loss's weight (DeepSeek-V2's way); 0: none
  const char* what;
};

constexpr Variant kVariants[] = {
    {"dense", "mha", "swiglu", 0, 0, "multi-head attention, dense SwiGLU feed-forward"},
    {"mla", "mla", "swiglu", 0, 0, "latent attention (MLA), dense SwiGLU"},
    {"moe", "mha", "moe", 1e-3, 0, "multi-head attention, MoE balanced without an auxiliary loss"},
    {"mla-moe", "mla", "moe", 1e-3, 0, "MLA + MoE balanced without an auxiliary loss (router bias, DeepSeek-V3)"},
    {"mla-moe-nobias", "mla", "moe", 0, 0, "MLA + MoE with no balancing at all"},
    {"mla-moe-aux", "mla", "moe", 0, 0.01, "MLA + MoE balanced by an auxiliary loss (alpha 0.01, DeepSeek-V2)"},
};

const Variant& variant(const std::string& name) {
  for (const Variant& v : kVariants)
    if (name == v.name) return v;
  std::vector<std::string> names;
  for (const Variant& v : kVariants) names.push_back(v.name);
  throw Error(fmt::format("experiment deepseek: unknown model '{}' (available: {})", name, fmt::join(names, ", ")));
}

// Parameters a token uses: all of them, less the routed experts it is not sent to.
int64_t active_parameters(nn::TransformerLM& model) {
  int64_t n = 0;
  for (const Tensor& p : model.parameters()) n += p.numel();
  for (nn::MoE* m : model.moe_layers()) {
    int64_t per_expert = 0;
    for (const Tensor& p : m->expert(0)->parameters()) per_expert += p.numel();
    n -= (m->config().n_routed - m->config().top_k) * per_expert;
  }
  return n;
}

const nlohmann::json* row_named(const nlohmann::json& res, const std::string& name) {
  for (const auto& r : res["rows"])
    if (r["name"] == name) return &r;
  return nullptr;
}

// The sentences results.md opens with, each computed from the table below it.
std::string headline(const nlohmann::json& res) {
  const nlohmann::json* dense = row_named(res, "dense");
  std::string s;
  for (const char* name : {"mla-moe", "mla", "moe"}) {
    const nlohmann::json* r = row_named(res, name);
    if (!dense || !r) continue;
    const double pd = (*dense)["test_perplexity"].get<double>(), pr = (*r)["test_perplexity"].get<double>();
    const double spread = std::hypot((*dense)["test_perplexity_sd"].get<double>(), (*r)["test_perplexity_sd"].get<double>());
    const double kd = (*dense)["kv_bytes_per_token"].get<double>(), kr = (*r)["kv_bytes_per_token"].get<double>();
    const double ad = (*dense)["active_parameters"].get<double>(), ar = (*r)["active_parameters"].get<double>();
    const double tot = (*r)["parameters"].get<double>();
    s += fmt::format(
        "**{}** reaches a test perplexity of {:.3f} against the dense model's {:.3f} ({:.1f}% {}{}), with {:.0f}% of "
        "its active parameters per token ({} of {} in all), a KV cache of {:.0f} against {:.0f} bytes per token "
        "({:.1f}% smaller) and {:.0f}% of its training speed. ",
        name, pr, pd, std::fabs(100 * (pr / pd - 1)), pr <= pd ? "lower" : "higher",
        res["seeds"].get<int64_t>() < 2 ? "; one seed, so its spread is unknown"
        : std::fabs(pr - pd) < 2 * spread
            ? fmt::format(", less than twice the seeds' spread of {:.3f}: no difference is shown", spread)
            : fmt::format(", more than twice the seeds' spread of {:.3f}", spread),
        100 * ar / ad, int64_t(ar),
        int64_t(tot), kr, kd, 100 * (1 - kr / kd),
        100 * (*r)["tokens_per_s"].get<double>() / (*dense)["tokens_per_s"].get<double>());
    break;  // the fullest DeepSeek variant run leads
  }
  std::vector<std::string> loads;
  for (const auto& r : res["rows"])
    if (r["final_load_max_over_mean"].is_number())
      loads.push_back(fmt::format("{} {:.2f}x", r["name"].get<std::string>(),
                                  r["final_load_max_over_mean"].get<double>()));
  if (!loads.empty())
    s += fmt::format("Over the last tenth of training the busiest expert of a layer got, on average over layers, this "
                     "multiple of the mean load (1x is perfect balance): {}.",
                     fmt::join(loads, "; "));
  return s;
}

void write_report(const nlohmann::json& res, const fs::path& dir) {
  std::string md = "# DeepSeek blocks: latent attention and mixture of experts against a dense model\n\n";
  md += headline(res) + "\n\n";
  md += fmt::format("Command: `{}`  \nEvery model: DeepSeek blocks (RMSNorm, RoPE, SwiGLU experts), {}; trained at {} "
                    "tokens for {} steps of {} sequences ({} tokens seen), {} seed(s); byte-level tokens of {}; test "
                    "perplexity per byte-token on the first {} tokens of the test split (mean over seeds ± sample sd). "
                    "The MoE layers have {} routed experts (top {}) and {} shared, each expert {} wide, so a token's "
                    "feed-forward compute equals the dense SwiGLU's.\n\n",
                    res["command"].get<std::string>(), res["model"].get<std::string>(), res["seq"].get<int64_t>(),
                    res["steps"].get<int64_t>(), res["batch"].get<int64_t>(), res["tokens_seen"].get<int64_t>(),
                    res["seeds"].get<int64_t>(), res["corpus"].get<std::string>(), res["eval_tokens"].get<int64_t>(),
                    res["moe"]["n_routed"].get<int64_t>(), res["moe"]["top_k"].get<int64_t>(),
                    res["moe"]["n_shared"].get<int64_t>(), res["moe"]["d_expert"].get<int64_t>());
  md += "| model | parameters | active / token | KV bytes / token (f32) | tokens/s | final val loss | test perplexity | "
        "expert load max/mean (end) |\n|---|---|---|---|---|---|---|---|\n";
  const bool spread = res["seeds"].get<int64_t>() > 1;
  for (const auto& r : res["rows"])
    md += fmt::format("| {} | {} | {} | {} | {:.0f} | {:.4f} | {}{} | {} |\n", r["name"].get<std::string>(),
                      r["parameters"].get<int64_t>(), r["active_parameters"].get<int64_t>(),
                      r["kv_bytes_per_token"].get<int64_t>(), r["tokens_per_s"].get<double>(),
                      r["final_val_loss"].get<double>(), fmt_num(r["test_perplexity"]),
                      spread ? " ± " + fmt_num(r["test_perplexity_sd"]) : std::string(),
                      fmt_num(r["final_load_max_over_mean"], "{:.2f}x"));
  md += "\nModels: ";
  std::vector<std::string> whats;
  for (const auto& r : res["rows"]) whats.push_back(fmt::format("`{}`: {}", r["name"].get<std::string>(), r["what"].get<std::string>()));
  md += fmt::format("{}.\n\n", fmt::join(whats, "; "));
  md += "`expert load max/mean`: the routing counts of the training steps in the last tenth of training, per MoE "
        "layer the busiest expert's count over the mean count, averaged over layers and seeds. "
        "`expert_load.svg` draws it over training; `learning_curves.svg` the validation loss. The KV cache holds, "
        "per token and layer, keys and values (MHA: 2 x d_model numbers) or MLA's compressed latent and its RoPE "
        "key (kv_lora_rank + qk_rope_head_dim numbers). Tokens/s is the training throughput on this machine: a "
        "shared machine makes it noisy.\n\n";
  md += "## Published numbers\n\nDeepSeek-V2 (DeepSeek-AI 2024) reports that MLA cuts the KV cache by 93.3% against "
        "its dense 67B predecessor with quality at least as good as MHA, and that auxiliary-loss-free balancing "
        "(DeepSeek-V3) keeps experts balanced without the quality cost of a balance loss. Those are models of "
        "billions of parameters trained on trillions of tokens; here the models are tiny and the budget small, so "
        "compare the direction of each effect, not its size.\n";
  io::write_file_atomic((dir / "results.md").string(), md);

  std::vector<util::PlotSeries> curves, loads;
  for (const auto& r : res["rows"]) {
    util::PlotSeries c{r["name"].get<std::string>(), {}, {}};
    for (const auto& pt : r["val_curve"]) c.x.push_back(pt.at(0).get<double>()), c.y.push_back(pt.at(1).get<double>());
    curves.push_back(std::move(c));
    if (!r["load_curve"].empty()) {
      util::PlotSeries l{r["name"].get<std::string>(), {}, {}};
      for (const auto& pt : r["load_curve"]) l.x.push_back(pt.at(0).get<double>()), l.y.push_back(pt.at(1).get<double>());
      loads.push_back(std::move(l));
    }
  }
  util::PlotOptions pc;
  pc.title = fmt::format("Validation loss during training (mean of {} seed(s))", res["seeds"].get<int64_t>());
  pc.x_label = "step";
  pc.y_label = "validation loss (nats per byte)";
  io::write_file_atomic((dir / "learning_curves.svg").string(), util::svg_line_plot(curves, pc));
  if (!loads.empty()) {
    util::PlotOptions pl;
    pl.title = "Expert load: the busiest routed expert over the mean (1 = balanced)";
    pl.x_label = "step";
    pl.y_label = "max / mean routing count, mean over layers";
    io::write_file_atomic((dir / "expert_load.svg").string(), util::svg_line_plot(loads, pl));
  }
}

std::string command_of(const DeepseekExperimentOptions& o) {
  std::string c = "qiusuo experiment deepseek";
  if (o.quick) c += " --quick";
  if (!o.corpus.empty()) c += " --corpus " + o.corpus;
  if (!o.models.empty()) c += fmt::format(" --models {}", fmt::join(o.models, ","));
  if (o.steps > 0) c += fmt::format(" --steps {}", o.steps);
  if (o.seq > 0) c += fmt::format(" --seq {}", o.seq);
  if (o.seeds > 0) c += fmt::format(" --seeds {}", o.seeds);
  if (o.seed != 0) c += fmt::format(" --seed {}", o.seed);
  return c + " --out " + o.out_dir;
}

}  // namespace

void write_deepseek_report(const std::string& dir) {
  const fs::path file = fs::path(dir) / "results.json";
  nlohmann::json res;
  try {
    res = nlohmann::json::parse(io::read_file_bounded(file.string(), uint64_t(64) << 20, "experiment results"));
    // Every field the page reads, present (the page reads them through const access).
    auto need = [&](const nlohmann::json& j, std::initializer_list<const char*> keys, const std::string& where) {
      for (const char* k : keys)
        if (!j.is_object() || !j.contains(k))
          throw Error(fmt::format("{}: not the results of `qiusuo experiment deepseek`: {} has no \"{}\"", file.string(),
                                  where, k));
    };
    need(res, {"command", "model", "seq", "steps", "batch", "tokens_seen", "seeds", "corpus", "eval_tokens", "moe", "rows"},
         "the document");
    need(res["moe"], {"n_routed", "top_k", "n_shared", "d_expert"}, "\"moe\"");
    if (!res["rows"].is_array() || res["rows"].empty())
      throw Error(fmt::format("{}: not the results of `qiusuo experiment deepseek`: no rows", file.string()));
    for (const auto& r : res["rows"])
      need(r, {"name", "what", "parameters", "active_parameters", "kv_bytes_per_token", "tokens_per_s", "final_val_loss",
               "test_perplexity", "test_perplexity_sd", "final_load_max_over_mean", "val_curve", "load_curve"},
           "a row");
    write_report(res, dir);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: not the results of `qiusuo experiment deepseek`: {}", file.string(), e.what()));
  }
}

std::vector<std::string> deepseek_experiment_models() {
  std::vector<std::string> v;
  for (const Variant& x : kVariants) v.push_back(x.name);
  return v;
}

nlohmann::json run_deepseek_experiment(const DeepseekExperimentOptions& o) {
  QS_CHECK(!o.out_dir.empty(), "experiment deepseek: --out DIR is required");
  const auto started = std::chrono::steady_clock::now();
  const Size s = size_for(o);
  const int64_t seeds = o.seeds > 0 ? o.seeds : (o.quick ? 1 : 2);
  std::vector<std::string> names = o.models;
  if (names.empty()) names = {"dense", "mla-moe", "mla-moe-nobias"};
  for (const auto& n : names) variant(n);  // errors on an unknown name before any work
  const fs::path dir(o.out_dir);
  fs::create_directories(dir);
  text::TextCorpus corpus = open_corpus(o.corpus);
  text::ByteTokenizer tok;
  text::TokenStream test(corpus, text::Split::test, tok);
  const int64_t eval_every = std::max<int64_t>(1, s.steps / 20);

  nn::LMConfig base;
  base.block = "deepseek";
  base.d_model = s.d_model, base.n_layers = s.layers, base.n_heads = s.heads;
  base.pos.kind = nn::PositionEncoding::rope;
  nlohmann::json res = {{"experiment", "deepseek"},
                        {"command", command_of(o)},
                        {"model", fmt::format("{} layers, d_model {}, {} heads", s.layers, s.d_model, s.heads)},
                        {"corpus", o.corpus.empty() ? std::string("the King James Bible") : o.corpus},
                        {"seq", s.seq}, {"steps", s.steps}, {"batch", s.batch},
                        {"tokens_seen", s.steps * s.batch * s.seq}, {"eval_tokens", s.eval_tokens},
                        {"seeds", seeds}, {"eval_every", eval_every}, {"rows", nlohmann::json::array()}};
  double earlier = 0;  // training time of earlier invocations on the runs this one continued
  for (const std::string& name : names) {
    const Variant& v = variant(name);
    nlohmann::json runs = nlohmann::json::array();
    std::vector<double> tps, val_loss, ppl, end_load;
    std::map<int64_t, std::vector<double>> curve, load_curve;  // step -> per seed
    int64_t params = 0, active = 0, kv = 0;
    for (int64_t k = 0; k < seeds; ++k) {
      TrainLmOptions t;
      t.model = base;
      t.model.attention = v.attention, t.model.ffn = v.ffn;
      t.model.moe_bias_update_speed = v.bias_speed, t.model.moe_aux_loss_alpha = v.aux_alpha;
      t.corpus = o.corpus, t.batch = s.batch, t.seq = s.seq, t.steps = s.steps, t.lr = s.lr;
      t.eval_every = eval_every, t.eval_windows = 16, t.seed = o.seed + uint64_t(k), t.threads = o.threads;
      t.quiet = o.quiet;
      // Rerunning the same command continues: finished runs are read back, an interrupted
      // one resumes from its last checkpoint (one every fifth of training).
      t.continue_run = true, t.save_every = std::max<int64_t>(1, s.steps / 5);
      t.out_dir = seeds == 1 ? (dir / name).string() : (dir / fmt::format("{}-seed{}", name, k)).string();
      std::fprintf(stderr, "experiment deepseek: training %s (seed %lld)\n", name.c_str(),
                   static_cast<long long>(t.seed));
      TrainLmResult tr = train_lm(t);
      earlier += tr.total_seconds - tr.seconds;
      LoadedLm trained = load_lm(t.out_dir + "/last.safetensors");
      const EvalLmResult ev = evaluate_lm(*trained.model, test, s.seq, std::max<int64_t>(1, 4096 / s.seq),
                                          s.eval_tokens / s.seq);
      if (res.find("moe") == res.end() && !trained.model->moe_layers().empty()) {
        const nn::MoEConfig& mc = trained.model->moe_layers()[0]->config();
        res["moe"] = {{"n_routed", mc.n_routed}, {"top_k", mc.top_k}, {"n_shared", mc.n_shared}, {"d_expert", mc.d_expert}};
      }
      params = 0;
      for (const Tensor& p : trained.model->parameters()) params += p.numel();
      active = active_parameters(*trained.model);
      kv = trained.model->kv_cache_bytes_per_token();
      tps.push_back(double(s.steps * s.batch * s.seq) / tr.total_seconds), val_loss.push_back(tr.validation.loss), ppl.push_back(ev.perplexity);
      nlohmann::json hist = nlohmann::json::array(), loads = nlohmann::json::array();
      for (const auto& [step, loss] : tr.val_history) hist.push_back({step, loss}), curve[step].push_back(loss);
      // The load of a point is the mean over layers of each layer's max/mean.
      std::vector<double> late;  // the points of the last tenth of training
      for (const ExpertLoadPoint& p : tr.load_history) {
        const double m = mean_of(p.max_over_mean);
        loads.push_back({p.step, p.max_over_mean, p.cv});
        load_curve[p.step].push_back(m);
        if (p.step > s.steps - s.steps / 10) late.push_back(m);
      }
      if (!late.empty()) end_load.push_back(mean_of(late));
      runs.push_back({{"seed", t.seed}, {"tokens_per_s", tps.back()}, {"final_val_loss", tr.validation.loss},
                      {"test_perplexity", ev.perplexity}, {"val_history", hist}, {"load_history", loads},
                      {"expert_load", tr.expert_load}});
    }
    nlohmann::json val_curve = nlohmann::json::array(), lc = nlohmann::json::array();
    for (const auto& [step, x] : curve) val_curve.push_back({step, mean_of(x)});
    for (const auto& [step, x] : load_curve) lc.push_back({step, mean_of(x)});
    res["rows"].push_back({{"name", name}, {"what", v.what}, {"attention", v.attention}, {"ffn", v.ffn},
                           {"parameters", params}, {"active_parameters", active}, {"kv_bytes_per_token", kv},
                           {"tokens_per_s", mean_of(tps)}, {"final_val_loss", mean_of(val_loss)},
                           {"test_perplexity", mean_of(ppl)}, {"test_perplexity_sd", sd_of(ppl)},
                           {"final_load_max_over_mean", end_load.empty() ? nlohmann::json() : finite_or_null(mean_of(end_load))},
                           {"val_curve", val_curve}, {"load_curve", lc}, {"runs", runs}});
  }
  if (res.find("moe") == res.end()) {  // no MoE model run: state the configuration the MoE models would have
    nn::LMConfig c = base;
    c.ffn = "moe", c.max_seq_len = s.seq;
    const nn::MoEConfig mc = nn::TransformerLM(c).moe_layers()[0]->config();
    res["moe"] = {{"n_routed", mc.n_routed}, {"top_k", mc.top_k}, {"n_shared", mc.n_shared}, {"d_expert", mc.d_expert}};
  }
  stamp_run(res, started, earlier);
  io::write_file_atomic((dir / "results.json").string(), res.dump(2) + "\n");
  write_report(res, dir);
  return res;
}

}  // namespace qs::apps
