// qiusuo experiment <name>: the curriculum's measured experiments.
#include <iostream>

#include "cli/cli.h"
#include "qiusuo/apps/experiments.h"
#include "qiusuo/defect/experiment.h"
#include "qiusuo/medical/ct_experiment.h"
#include "qiusuo/error.h"
#include "qiusuo/tensor.h"

namespace qs::cli {

int cmd_experiment(Args a) {
  if (a.positionals().size() != 1) throw UsageError("qiusuo experiment: which one? (available: pe, quant, prune, ct, defect, deepseek)");
  const std::string what = a.positionals()[0];
  if (what == "ct") {
    medical::CtExperimentOptions c;
    c.quick = a.flag("quick");
    c.out_dir = a.required("out");
    c.data = a.str("data", "");
    c.eval_data = a.str("eval-data", "");
    c.cases = int(a.integer("cases", c.cases, 10, 100000));
    c.seeds = int(a.integer("seeds", c.seeds, 1, 100));
    c.epochs = int(a.integer("epochs", c.epochs, 1, 10000));
    if (const int t = a.threads(0); t > 0) set_num_threads(t);
    c.quiet = a.flag("quiet");
    a.finish();
    nlohmann::json r = medical::run_ct_experiment(c);
    std::cout << "wrote " << c.out_dir << "/results.json, results.md, roc.svg\n";
    for (const auto& row : r["rows"])
      std::cout << fmt::format("{}: test AUC {:.3f}, independent AUC {:.3f}\n", row["config"].get<std::string>(),
                               row["test_auc_mean"].get<double>(), row["eval_auc_mean"].get<double>());
    return kExitOk;
  }
  if (what == "defect") {
    defect::DefectExperimentOptions c;
    c.quick = a.flag("quick");
    c.out_dir = a.required("out");
    c.data = a.str("data", "");
    c.seeds = int(a.integer("seeds", c.seeds, 1, 100));
    c.epochs = int(a.integer("epochs", c.epochs, 1, 10000));
    c.model.frames = int(a.integer("frames", c.model.frames, 2, 64));
    c.model.depth = int(a.integer("depth", c.model.depth, 18, 50));
    c.model.width = a.integer("width", c.model.width, 1, 1024);
    c.travel = a.number("travel", -1);
    if (const int t = a.threads(0); t > 0) set_num_threads(t);
    c.quiet = a.flag("quiet");
    a.finish();
    nlohmann::json r = defect::run_defect_experiment(c);
    std::cout << "wrote " << c.out_dir << "/results.json, results.md, map.svg, per_class.svg\n";
    for (const auto& row : r["rows"])
      std::cout << fmt::format("{}: test mAP@0.5 {:.3f} (sd {:.3f}), COCO mAP {:.3f}\n", row["model"].get<std::string>(),
                               row["map50_mean"].get<double>(), row["map50_sd"].get<double>(),
                               row["coco_map_mean"].get<double>());
    std::cout << fmt::format("spatiotemporal - cnn: {:+.3f} mAP@0.5 (the handbook: +0.086 on NEU-DET)\n",
                             r["delta_map50"].get<double>());
    return kExitOk;
  }
  if (what == "deepseek" && a.has("replot")) {
    const std::string dir = a.str("replot", "");
    a.finish();
    apps::write_deepseek_report(dir);
    std::cout << "wrote " << dir << "/results.md, learning_curves.svg, expert_load.svg\n";
    return kExitOk;
  }
  if (what == "deepseek") {
    apps::DeepseekExperimentOptions d;
    d.quick = a.flag("quick");
    d.out_dir = a.required("out");
    d.corpus = a.str("corpus", "");
    d.models = a.list("models");
    d.steps = a.integer("steps", 0, 0, int64_t(1) << 40);
    d.seq = a.integer("seq", 0, 0, int64_t(1) << 20);
    d.seeds = int(a.integer("seeds", 0, 0, 100));
    d.seed = uint64_t(a.integer("seed", 0));
    d.threads = a.threads(0);
    d.quiet = a.flag("quiet");
    a.finish();
    nlohmann::json r = apps::run_deepseek_experiment(d);
    std::cout << "wrote " << d.out_dir << "/results.json, results.md, learning_curves.svg, expert_load.svg\n";
    for (const auto& row : r["rows"])
      std::cout << fmt::format("{}: test perplexity {:.3f}, KV cache {} bytes/token, {} of {} parameters active\n",
                               row["name"].get<std::string>(), row["test_perplexity"].get<double>(),
                               row["kv_bytes_per_token"].get<int64_t>(), row["active_parameters"].get<int64_t>(),
                               row["parameters"].get<int64_t>());
    return kExitOk;
  }
  if (what == "quant" && a.has("replot")) {
    const std::string dir = a.str("replot", "");
    a.finish();
    apps::write_quant_plots(dir);
    std::cout << "wrote " << dir << "/retained.svg, speedup.svg\n";
    return kExitOk;
  }
  if (what == "quant") {
    apps::QuantExperimentOptions q;
    q.quick = a.flag("quick");
    q.out_dir = a.required("out");
    q.cnn = a.str("cnn", "");
    q.lm = a.str("lm", "");
    q.threads = a.threads(0);
    a.finish();
    nlohmann::json r = apps::run_quant_experiment(q);
    std::cout << "wrote " << q.out_dir << "/results.json, results.md\n" << r["claims"].dump() << std::endl;
    return kExitOk;
  }
  if (what == "prune" && a.has("replot")) {
    const std::string dir = a.str("replot", "");
    a.finish();
    apps::write_prune_plots(dir);
    std::cout << "wrote " << dir << "/accuracy_vs_flops.svg, speedup.svg, sensitivity.svg, lm_perplexity.svg\n";
    return kExitOk;
  }
  if (what == "prune") {
    apps::PruneExperimentOptions p;
    p.quick = a.flag("quick");
    p.out_dir = a.required("out");
    p.cnn = a.str("cnn", "");
    p.lm = a.str("lm", "");
    p.lm_finetune_steps = a.integer("lm-finetune-steps", p.lm_finetune_steps, 0, int64_t(1) << 30);
    p.finetune_epochs = int(a.integer("finetune-epochs", p.finetune_epochs, 0, 1000));
    p.finetune_lr = a.number("finetune-lr", p.finetune_lr);
    p.ratios = a.numbers("ratios");
    p.methods = a.list("methods");
    p.threads = a.threads(0);
    a.finish();
    nlohmann::json r = apps::run_prune_experiment(p);
    std::cout << "wrote " << p.out_dir << "/results.json, results.md, accuracy_vs_flops.svg, speedup.svg, "
              << "sensitivity.svg, lm_perplexity.svg\n";
    return kExitOk;
  }
  if (what != "pe") throw UsageError("qiusuo experiment: unknown experiment '" + what + "' (available: pe, quant, prune, ct, defect, deepseek)");
  apps::PeExperimentOptions o;
  o.quick = a.flag("quick");
  o.out_dir = a.required("out");
  o.corpus = a.str("corpus", "");
  o.encodings = a.list("encodings");
  o.train_len = a.integer("train-len", 0);
  o.steps = a.integer("steps", 0);
  o.eval_tokens = a.integer("eval-tokens", 0);
  o.threads = a.threads(0);
  o.seed = uint64_t(a.integer("seed", 0));
  o.seeds = int(a.integer("seeds", 0, 0, 100));
  a.finish();
  nlohmann::json r = apps::run_pe_experiment(o);
  std::cout << "wrote " << o.out_dir << "/results.json, results.md, perplexity.svg\n" << r["claim"].dump() << std::endl;
  return kExitOk;
}

}  // namespace qs::cli
