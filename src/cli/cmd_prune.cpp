// qiusuo prune CKPT --method l1-channel|l2-channel|bn-scale --ratio R [--per-layer FILE]
//              [--finetune-epochs N] [--finetune-lr X] --out CKPT_P   (FashionCNN)
// qiusuo prune LM_CKPT --method ffn|heads --ratio R [--criterion l1-channel|l2-channel]
//              [--finetune-steps N] --out CKPT_P                      (language models; apps/prune.h)
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "io/read_file.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/apps/prune.h"
#include "util/json_bounded.h"

namespace qs::cli {

namespace {

// {"c1": 0.25, "c3": 0.5}: a ratio per layer.
std::map<std::string, double> read_per_layer(const std::string& path) {
  const std::string text = io::read_file_bounded(path, 1 << 20, "prune --per-layer");
  nlohmann::json j;
  try {
    j = util::parse_json_bounded(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw UsageError(fmt::format("--per-layer {}: not JSON: {}", path, e.what()));
  }
  if (!j.is_object())
    throw UsageError(fmt::format("--per-layer {}: expected a JSON object of layer: ratio, e.g. {{\"c1\": 0.25}}", path));
  std::map<std::string, double> m;
  for (auto& [k, v] : j.items()) {
    if (!v.is_number())
      throw UsageError(fmt::format("--per-layer {}: the ratio of layer {} is {}, not a number", path, k, v.dump()));
    m[k] = v.get<double>();
  }
  return m;
}

// A language model's feed-forward neurons (--method ffn) or attention heads (--method heads).
int prune_lm(Args& a, const std::string& ckpt) {
  apps::PruneLmOptions o;
  o.checkpoint = ckpt;
  o.method = a.str("method", o.method);
  o.importance_batches = a.integer("importance-batches", o.importance_batches, 1, 1 << 20);
  o.criterion = a.str("criterion", o.criterion);
  o.ratio = a.number("ratio", o.ratio);
  o.finetune_steps = a.integer("finetune-steps", o.finetune_steps, 0, int64_t(1) << 30);
  o.finetune_lr = a.number("finetune-lr", o.finetune_lr);
  o.batch = a.integer("batch", o.batch, 1, 1 << 16);
  o.eval_windows = a.integer("eval-windows", o.eval_windows, 0, int64_t(1) << 30);
  o.seed = uint64_t(a.integer("seed", int64_t(o.seed)));
  o.latency_rounds = int(a.integer("latency-rounds", o.latency_rounds, 0, 1000));
  o.out = a.required("out");
  if (int threads = a.threads(0); threads > 0) set_num_threads(threads);
  o.quiet = a.flag("quiet");
  a.finish();
  const apps::PruneLmResult r = apps::prune_lm(o);
  std::cout << r.groups;
  auto row = [](const char* name, const apps::PruneLmStats& s) {
    return fmt::format("{:<8} ffn_hidden {:>5}  heads {:>3} (kv {:>3})  params {:>9}  GFLOPs/window {:6.3f}  file {:>9} B  "
                       "perplexity {:8.4f}  forward {:7.2f} ms\n",
                       name, s.ffn_hidden, s.n_heads, s.n_kv_heads, s.params, double(s.flops) / 1e9, s.file_bytes,
                       s.perplexity, s.fwd_ms);
  };
  std::cout << row("before", r.before) << row("after", r.after);
  for (const auto& [layer, imp] : r.importance) {
    std::string v;
    for (double x : imp) v += fmt::format(" {:+.4f}", x);
    std::cout << fmt::format("importance {}:{}\n", layer, v);
  }
  std::cout << fmt::format("pruned {} {}; perplexity right after pruning {:.4f}{}; forward speed-up "
                           "{:.2f}x (median of {} alternating rounds)\n",
                           r.channels_removed, o.method == "heads" ? "attention heads" : "feed-forward neurons",
                           r.pruned_perplexity,
                           r.finetune_steps ? fmt::format(", after {} fine-tuning steps {:.4f}", r.finetune_steps,
                                                          r.after.perplexity)
                                            : "",
                           r.speedup, o.latency_rounds);
  std::cout << nlohmann::json{{"checkpoint", o.out},          {"method", o.method},
                              {"criterion", o.criterion},     {"ratio", o.ratio},
                              {"channels_removed", r.channels_removed}, {"before", apps::to_json(r.before)},
                              {"after", apps::to_json(r.after)},      {"pruned_perplexity", r.pruned_perplexity},
                              {"finetune_steps", r.finetune_steps}, {"speedup", r.speedup},
                              {"removed", r.removed},         {"importance", r.importance},
                              {"seconds", r.seconds}}
                   .dump()
            << std::endl;
  return kExitOk;
}

}  // namespace

int cmd_prune(Args a) {
  if (a.positionals().size() != 1) throw UsageError("qiusuo prune: expected one checkpoint; see 'qiusuo prune --help'");
  const std::string ckpt = a.positionals()[0];
  const std::string method = a.str("method", "l1-channel");
  const io::Checkpoint ck = io::load_checkpoint(ckpt);
  const bool is_cnn = ck.config.is_object() && ck.config.value("model", nlohmann::json()) == "FashionCNN";
  if (!is_cnn) {
    if (method != "ffn" && method != "heads")
      throw UsageError(fmt::format("qiusuo prune: {} is not a FashionCNN checkpoint; language models take --method "
                                   "ffn or heads (l1-channel, l2-channel and bn-scale prune the CNN's channels)",
                                   ckpt));
    return prune_lm(a, ckpt);
  }
  if (method == "ffn" || method == "heads")
    throw UsageError(fmt::format("qiusuo prune: --method {} is for language models; {} is a FashionCNN (use "
                                 "l1-channel, l2-channel or bn-scale)",
                                 method, ckpt));
  apps::PruneCnnOptions o;
  o.checkpoint = ckpt;
  o.method = method;
  o.ratio = a.number("ratio", o.ratio);
  if (a.has("per-layer")) o.per_layer = read_per_layer(a.str("per-layer", ""));
  o.global = a.flag("global");
  o.round_to = a.integer("round-to", o.round_to, 1, 4096);
  o.finetune_epochs = int(a.integer("finetune-epochs", o.finetune_epochs, 0, 1000));
  o.iterations = int(a.integer("iterations", o.iterations, 1, 100));
  o.finetune_lr = a.number("finetune-lr", o.finetune_lr);
  o.batch = a.integer("batch", o.batch, 1, 1 << 16);
  o.seed = uint64_t(a.integer("seed", int64_t(o.seed)));
  o.limit_train = a.integer("limit-train", o.limit_train);
  o.limit_test = a.integer("limit-test", o.limit_test);
  o.latency_rounds = int(a.integer("latency-rounds", o.latency_rounds, 0, 1000));
  o.data_root = a.str("data", o.data_root);
  o.out = a.required("out");
  if (int threads = a.threads(0); threads > 0) set_num_threads(threads);
  o.quiet = a.flag("quiet");
  a.finish();
  const apps::PruneCnnResult r = apps::prune_cnn(o);
  std::cout << r.groups;
  auto row = [](const char* name, const apps::PruneCnnStats& s) {
    return fmt::format("{:<8} widths {:>3}/{:>3}/{:>3}  params {:>7}  MFLOPs/image {:6.2f}  file {:>7} B  accuracy "
                       "{:6.2f}%  infer b64 {:6.2f} ms  train b128 {:6.2f} ms\n",
                       name, s.widths.c1, s.widths.c2, s.widths.c3, s.params, double(s.flops) / 1e6, s.file_bytes,
                       100 * s.accuracy, s.infer_b64_ms, s.train_b128_ms);
  };
  if (r.steps.size() > 1)
    for (size_t k = 0; k < r.steps.size(); ++k) {
      const apps::PruneCnnStep& st = r.steps[k];
      std::cout << fmt::format("step {:>2}  widths {:>3}/{:>3}/{:>3}  params {:>7}  MFLOPs/image {:6.2f}  accuracy cut "
                               "{:6.2f}%  fine-tuned {:6.2f}%\n",
                               k + 1, st.widths.c1, st.widths.c2, st.widths.c3, st.params, double(st.flops) / 1e6,
                               100 * st.pruned_accuracy, 100 * st.accuracy);
    }
  std::cout << row("before", r.before) << row("after", r.after);
  std::cout << fmt::format("pruned {} channels; accuracy right after the first cut {:.2f}%{}; speed-up inference {:.2f}x, "
                           "training step {:.2f}x (medians of {} alternating rounds)\n",
                           r.channels_removed, 100 * r.pruned_accuracy,
                           o.finetune_epochs ? fmt::format(", after {} fine-tuning steps {:.2f}%", r.finetune_steps,
                                                           100 * r.after.accuracy)
                                             : "",
                           r.infer_speedup, r.train_speedup, o.latency_rounds);
  nlohmann::json steps = nlohmann::json::array();
  for (const apps::PruneCnnStep& st : r.steps)
    steps.push_back({{"widths", st.widths.to_json()}, {"params", st.params}, {"flops", st.flops},
                     {"pruned_accuracy", st.pruned_accuracy}, {"accuracy", st.accuracy},
                     {"finetune_steps", st.finetune_steps}});
  nlohmann::json summary = {{"checkpoint", o.out},          {"method", o.method},
                            {"ratio", o.ratio},             {"channels_removed", r.channels_removed},
                            {"before", apps::to_json(r.before)},    {"after", apps::to_json(r.after)},
                            {"pruned_accuracy", r.pruned_accuracy}, {"finetune_steps", r.finetune_steps},
                            {"infer_speedup", r.infer_speedup}, {"train_speedup", r.train_speedup},
                            {"steps", steps},
                            {"seconds", r.seconds}};
  std::cout << summary.dump() << std::endl;
  return kExitOk;
}

}  // namespace qs::cli
