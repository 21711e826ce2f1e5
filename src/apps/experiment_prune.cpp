// `qiusuo experiment prune`: structured pruning of the Fashion-MNIST CNN by each criterion
// at several ratios (fine-tuned), against the unpruned model fine-tuned as long; per-layer
// sensitivity (Li et al. 2017's figure 2: accuracy against the share of one layer's
// filters removed, no fine-tuning); a table, three plots and Li et al.'s reported numbers
// beside ours (include/qiusuo/apps/experiments.h).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "backend/dnnl_util.h"
#include "io/atomic_file.h"
#include "qiusuo/apps/experiments.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/apps/prune.h"
#include "qiusuo/data/idx.h"
#include "qiusuo/prune/prune.h"
#include "qiusuo/util/svg_plot.h"
#include "util/json_bounded.h"

namespace qs::apps {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string train_default(const PruneExperimentOptions& o) {
  TrainCnnOptions t;
  t.epochs = o.quick ? 1 : 3;
  t.limit_train = o.quick ? 2048 : 0;
  t.limit_test = o.quick ? 1000 : 0;
  t.quiet = true;
  t.out_dir = (fs::path(o.out_dir) / "cnn_fp32").string();
  return train_fashion_cnn(t).checkpoint;
}

std::string train_default_lm(const PruneExperimentOptions& o) {
  TrainLmOptions t;
  t.model.d_model = o.quick ? 32 : 128, t.model.n_layers = o.quick ? 2 : 4, t.model.n_heads = 4;
  t.seq = 128, t.batch = 8, t.steps = o.quick ? 20 : 600, t.eval_every = 0, t.eval_windows = 4, t.quiet = true;
  t.out_dir = (fs::path(o.out_dir) / "lm_fp32").string();
  return train_lm(t).checkpoint;
}

json lm_row(const PruneExperimentOptions& o, const std::string& ckpt, double ratio) {
  PruneLmOptions p;
  p.checkpoint = ckpt, p.ratio = ratio, p.quiet = true;
  p.finetune_steps = o.quick ? 5 : o.lm_finetune_steps;
  p.eval_windows = o.quick ? 4 : 50;
  p.latency_rounds = o.quick ? 1 : 5;
  p.out = (fs::path(o.out_dir) / fmt::format("lm_ffn_{:.0f}.safetensors", 100 * ratio)).string();
  PruneLmResult r = prune_lm(p);
  return {{"method", ratio == 0 ? "none" : "ffn"},
          {"ratio", ratio},
          {"before", to_json(r.before)},
          {"after", to_json(r.after)},
          {"pruned_perplexity", r.pruned_perplexity},
          {"finetune_steps", r.finetune_steps},
          {"flops_kept", double(r.after.flops) / double(r.before.flops)},
          {"params_kept", double(r.after.params) / double(r.before.params)},
          {"speedup", r.speedup}};
}

json prune_row(const PruneExperimentOptions& o, const std::string& ckpt, const std::string& method, double ratio) {
  PruneCnnOptions p;
  p.checkpoint = ckpt, p.method = method, p.ratio = ratio, p.quiet = true;
  p.finetune_epochs = o.finetune_epochs, p.finetune_lr = o.finetune_lr;
  p.limit_train = o.quick ? 2048 : 0, p.limit_test = o.quick ? 1000 : 0;
  p.latency_rounds = o.quick ? 1 : 5;
  p.out = (fs::path(o.out_dir) / fmt::format("cnn_{}_{:.0f}.safetensors", method, 100 * ratio)).string();
  PruneCnnResult r = prune_cnn(p);
  return {{"method", ratio == 0 ? "none" : method},
          {"ratio", ratio},
          {"before", to_json(r.before)},
          {"after", to_json(r.after)},
          {"pruned_accuracy", r.pruned_accuracy},
          {"channels_removed", r.channels_removed},
          {"finetune_steps", r.finetune_steps},
          {"flops_kept", double(r.after.flops) / double(r.before.flops)},
          {"params_kept", double(r.after.params) / double(r.before.params)},
          {"file_kept", double(r.after.file_bytes) / double(r.before.file_bytes)},
          {"infer_speedup", r.infer_speedup},
          {"train_speedup", r.train_speedup}};
}

// Accuracy with one layer pruned by L1 at each ratio, no fine-tuning.
json sensitivity(const PruneExperimentOptions& o, const std::string& ckpt) {
  auto model = load_fashion_cnn(ckpt);
  data::FashionMNIST test(false, data::FashionMNIST::kDefaultRoot, true);
  const Tensor x = first_rows(test.images, o.quick ? 1000 : 0), y = first_rows(test.labels, o.quick ? 1000 : 0);
  const prune::Dependencies dep = prune::analyse(*model, zeros({2, 1, 28, 28}));
  json rows = json::array();
  for (const char* layer : {"c1", "c2", "c3"}) {
    for (double ratio : o.quick ? std::vector<double>{0.25, 0.5, 0.75}
                                : std::vector<double>{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}) {
      prune::PruneOptions po{prune::Criterion::l1, 0, {{layer, ratio}}};
      const prune::Plan plan = prune::plan_channels(dep, *model, po);
      const nn::StateDict small = prune::shrink(dep, plan, model->state_dict());
      Generator g(0);
      FashionCNN m(FashionCNN::widths_of(small), g);
      m.load_state_dict(small);
      rows.push_back({{"layer", layer}, {"ratio", ratio}, {"accuracy", evaluate_classifier(m, x, y).first}});
    }
  }
  return rows;
}

std::string pct(double v) { return fmt::format("{:.2f}%", 100 * v); }

std::string markdown(const json& doc) {
  std::string md = "# Structured pruning of the Fashion-MNIST CNN\n\nCommand: `" + doc["command"].get<std::string>() +
                   "` on " + doc["cpu"].get<std::string>() + fmt::format(", {} threads.\n\n", doc["threads"].get<int>());
  const json& base = doc["rows"][0]["before"];
  md += fmt::format(
      "Unpruned: widths {}, {} parameters, {:.2f} MFLOPs per image, test accuracy {}. Every row prunes each "
      "convolution's lowest-scoring channels by `ratio` (the channel groups come from the traced forward: a "
      "convolution's filters, its batch norm and the next layer's input channels go together), writes a smaller "
      "dense FashionCNN, and fine-tunes it for {} epoch(s) (SGD, Nesterov momentum 0.9, cosine from lr {}). The "
      "`none` row fine-tunes the unpruned model as long: the baseline the pruned rows compete with. Latency: "
      "the median over alternating rounds of the mean per call, unpruned and pruned measured in the same round "
      "(inference on 64 images; one SGD step on 128). *Retained*: fine-tuned accuracy over the unpruned model's; "
      "*of `none`*: over the `none` row's.\n\n",
      base["widths"].dump(), base["params"].get<int64_t>(), base["flops"].get<double>() / 1e6, pct(base["accuracy"]),
      doc["finetune_epochs"].get<int>(), doc["finetune_lr"].get<double>());
  // "retained": of the unpruned model's accuracy; "of none": of the unpruned model fine-tuned as long.
  const double none = doc["rows"][0]["after"]["accuracy"].get<double>();
  md += "| method | ratio | widths | params kept | FLOPs kept | file kept | accuracy pruned | fine-tuned | retained "
        "| of `none` | inference | training step |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |\n";
  for (const json& r : doc["rows"])
    md += fmt::format("| {} | {:.2f} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2f}x | {:.2f}x |\n",
                      r["method"].get<std::string>(), r["ratio"].get<double>(), r["after"]["widths"].dump(),
                      pct(r["params_kept"]), pct(r["flops_kept"]), pct(r["file_kept"]), pct(r["pruned_accuracy"]),
                      pct(r["after"]["accuracy"]),
                      pct(r["after"]["accuracy"].get<double>() / r["before"]["accuracy"].get<double>()),
                      pct(r["after"]["accuracy"].get<double>() / none), r["infer_speedup"].get<double>(),
                      r["train_speedup"].get<double>());
  md += "\n![accuracy against FLOPs](accuracy_vs_flops.svg)\n![speed-up against ratio](speedup.svg)\n"
        "![sensitivity of each layer](sensitivity.svg)\n";
  md += "\n## Sensitivity (L1, one layer at a time, no fine-tuning)\n\n| layer |";
  std::vector<double> ratios;
  for (const json& s : doc["sensitivity"])
    if (s["layer"] == "c1") ratios.push_back(s["ratio"].get<double>());
  for (double r : ratios) md += fmt::format(" {:.0f}% |", 100 * r);
  md += "\n| --- |";
  for (size_t i = 0; i < ratios.size(); ++i) md += " --- |";
  for (const char* layer : {"c1", "c2", "c3"}) {
    md += fmt::format("\n| {} |", layer);
    for (const json& s : doc["sensitivity"])
      if (s["layer"] == layer) md += fmt::format(" {} |", pct(s["accuracy"]));
  }
  const json& lm0 = doc["lm_rows"][0]["before"];
  md += fmt::format(
      "\n\n## A KJV language model's feed-forward neurons\n\nUnpruned: feed-forward width {}, {} parameters, "
      "{:.3f} GFLOPs per window of the trained length, test perplexity {:.4f}. Each row removes `ratio` of every "
      "block's feed-forward neurons by L1 (GPT's `c_fc` rows with their `c_proj` columns), then fine-tunes with "
      "AdamW for {} steps; `none` fine-tunes the unpruned model as long. Forward latency: batch 1, one window, "
      "alternating rounds.\n\n| method | ratio | ffn width | params kept | FLOPs kept | perplexity pruned | "
      "fine-tuned | `none` | forward |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
      lm0["ffn_hidden"].get<int64_t>(), lm0["params"].get<int64_t>(), lm0["flops"].get<double>() / 1e9,
      lm0["perplexity"].get<double>(), doc["lm_rows"][0]["finetune_steps"].get<int64_t>());
  const double lm_none = doc["lm_rows"][0]["after"]["perplexity"].get<double>();
  for (const json& r : doc["lm_rows"])
    md += fmt::format("| {} | {:.2f} | {} | {} | {} | {:.4f} | {:.4f} | {:.4f} | {:.2f}x |\n",
                      r["method"].get<std::string>(), r["ratio"].get<double>(), r["after"]["ffn_hidden"].get<int64_t>(),
                      pct(r["params_kept"]), pct(r["flops_kept"]), r["pruned_perplexity"].get<double>(),
                      r["after"]["perplexity"].get<double>(), lm_none, r["speedup"].get<double>());
  md += "\n![perplexity against FLOPs](lm_perplexity.svg)";
  md += "\n\n## Beside Li et al. 2017 (reported, not re-run here)\n\n" + doc["reference"]["text"].get<std::string>() +
        "\n";
  return md;
}

void write_plots(const json& doc, const fs::path& dir) {
  std::map<std::string, util::PlotSeries> acc, speed;
  util::PlotSeries infer{"inference, b64", {}, {}}, train{"training step, b128", {}, {}};
  for (const json& r : doc["rows"]) {
    const std::string m = r["method"];
    if (m == "none") continue;
    auto& s = acc[m];
    s.label = m;
    s.x.push_back(std::round(100 * r["flops_kept"].get<double>()));
    s.y.push_back(100 * r["after"]["accuracy"].get<double>());
    if (m == "l1-channel") {
      infer.x.push_back(r["ratio"].get<double>()), infer.y.push_back(r["infer_speedup"].get<double>());
      train.x.push_back(r["ratio"].get<double>()), train.y.push_back(r["train_speedup"].get<double>());
    }
  }
  std::vector<util::PlotSeries> a;
  for (auto& [k, s] : acc) a.push_back(s);
  const double base = 100 * doc["rows"][0]["after"]["accuracy"].get<double>();
  a.push_back({"unpruned, fine-tuned", {0, 100}, {base, base}});
  util::PlotOptions po;
  po.title = "Fashion-MNIST CNN: test accuracy after pruning and fine-tuning";
  po.x_label = "FLOPs kept (% of unpruned)", po.y_label = "test accuracy (%)";
  io::write_file_atomic((dir / "accuracy_vs_flops.svg").string(), util::svg_line_plot(a, po));
  po.title = "Measured speed-up of the pruned CNN (l1-channel)", po.x_label = "ratio of channels removed per layer";
  po.y_label = "unpruned time / pruned time";
  io::write_file_atomic((dir / "speedup.svg").string(), util::svg_line_plot({infer, train}, po));
  std::map<std::string, util::PlotSeries> sens;
  for (const json& s : doc["sensitivity"]) {
    auto& ser = sens[s["layer"]];
    ser.label = s["layer"];
    ser.x.push_back(100 * s["ratio"].get<double>());
    ser.y.push_back(100 * s["accuracy"].get<double>());
  }
  std::vector<util::PlotSeries> sv;
  for (auto& [k, s] : sens) sv.push_back(s);
  util::PlotSeries lm{"pruned, fine-tuned", {}, {}}, lm_raw{"pruned", {}, {}};
  for (const json& r : doc["lm_rows"]) {
    const double x = std::round(100 * r["flops_kept"].get<double>());
    lm.x.push_back(x), lm.y.push_back(r["after"]["perplexity"].get<double>());
    lm_raw.x.push_back(x), lm_raw.y.push_back(r["pruned_perplexity"].get<double>());
  }
  const double lm_base = doc["lm_rows"][0]["after"]["perplexity"].get<double>();
  po.title = "KJV language model: feed-forward neurons pruned (L1)";
  po.x_label = "FLOPs kept (% of unpruned)", po.y_label = "test perplexity (log scale)";
  po.log_y = true;
  io::write_file_atomic((dir / "lm_perplexity.svg").string(),
                        util::svg_line_plot({lm, lm_raw, {"unpruned, fine-tuned", {0, 100}, {lm_base, lm_base}}}, po));
  po.log_y = false;
  po.title = "Sensitivity: one layer pruned (L1), no fine-tuning";
  po.x_label = "filters removed from the layer (%)", po.y_label = "test accuracy (%)";
  io::write_file_atomic((dir / "sensitivity.svg").string(), util::svg_line_plot(sv, po));
}

json reference() {
  return {{"paper", "Hao Li, Asim Kadav, Igor Durdanovic, Hanan Samet, Hans Peter Graf: Pruning Filters for Efficient "
                    "ConvNets, ICLR 2017 (arXiv:1608.08710)"},
          {"text",
           "Li et al. prune the filters with the smallest L1 norms (the `l1-channel` criterion here) and retrain. "
           "Their abstract: inference cost reduced by up to 34% for VGG-16 and up to 38% for ResNet-110 on CIFAR-10 "
           "\"while regaining close to the original accuracy\"; their Table 1 gives VGG-16 at 34.2% fewer FLOPs with "
           "6.60% test error against 6.75% unpruned. What differs here: the data set (Fashion-MNIST, 28x28 grey, 10 "
           "classes, not CIFAR-10), the model (a 3-convolution CNN of 94k parameters, not a 15M-parameter VGG-16 or "
           "a ResNet), a uniform ratio over all layers instead of their per-layer choice guided by sensitivity, and "
           "a short fine-tuning (epochs above) instead of their 40 epochs of retraining. A small CNN has less "
           "redundancy than VGG-16, so compare the shape of the curves, not the numbers."}};
}

}  // namespace

void write_prune_plots(const std::string& dir) {
  const fs::path file = fs::path(dir) / "results.json";
  std::ifstream in(file);
  QS_CHECK(in.good(), "experiment prune --replot: cannot read {}", file.string());
  try {
    std::stringstream text;
    text << in.rdbuf();
    write_plots(util::parse_json_bounded(text.str()), dir);
  } catch (const json::exception& e) {
    QS_FAIL("experiment prune --replot: {} is not a results file of this experiment: {}", file.string(), e.what());
  }
}

json run_prune_experiment(const PruneExperimentOptions& o) {
  QS_CHECK(!o.out_dir.empty(), "experiment prune: --out is required");
  const auto started = std::chrono::steady_clock::now();
  if (o.threads > 0) set_num_threads(o.threads);
  fs::create_directories(o.out_dir);
  const std::string ckpt = o.cnn.empty() ? train_default(o) : o.cnn;
  std::vector<double> ratios = o.ratios;
  if (ratios.empty()) ratios = o.quick ? std::vector<double>{0.5} : std::vector<double>{0.1, 0.3, 0.5, 0.7};
  std::vector<std::string> methods = o.methods;
  if (methods.empty()) methods = {"l1-channel", "l2-channel", "bn-scale"};
  json doc;
  doc["command"] = fmt::format("qiusuo experiment prune{} --out {}{}{}", o.quick ? " --quick" : "", o.out_dir,
                               o.cnn.empty() ? "" : " --cnn " + o.cnn, o.lm.empty() ? "" : " --lm " + o.lm);
  doc["cpu"] = std::string("oneDNN ISA ") + backend::cpu_isa_name();
  doc["threads"] = get_num_threads();
  doc["finetune_epochs"] = o.finetune_epochs;
  doc["finetune_lr"] = o.finetune_lr;
  doc["rows"] = json::array({prune_row(o, ckpt, "l1-channel", 0.0)});
  for (const std::string& m : methods)
    for (double r : ratios) doc["rows"].push_back(prune_row(o, ckpt, m, r));
  doc["sensitivity"] = sensitivity(o, ckpt);
  const std::string lm = o.lm.empty() ? train_default_lm(o) : o.lm;
  doc["lm_rows"] = json::array({lm_row(o, lm, 0.0)});
  for (double r : ratios) doc["lm_rows"].push_back(lm_row(o, lm, r));
  doc["reference"] = reference();
  stamp_run(doc, started);
  io::write_file_atomic((fs::path(o.out_dir) / "results.json").string(), doc.dump(2) + "\n");
  io::write_file_atomic((fs::path(o.out_dir) / "results.md").string(), markdown(doc));
  write_plots(doc, o.out_dir);
  return doc;
}

}  // namespace qs::apps
