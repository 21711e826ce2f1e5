// The cnn-against-spatiotemporal experiment (include/qiusuo/defect/experiment.h).
#include "qiusuo/defect/experiment.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "io/atomic_file.h"
#include "qiusuo/apps/experiments.h"
#include "qiusuo/defect/synth.h"
#include "qiusuo/defect/train.h"
#include "qiusuo/error.h"
#include "qiusuo/util/stats.h"
#include "qiusuo/util/svg_plot.h"

namespace qs::defect {

namespace {

using util::mean_of;
using util::sd_of;

constexpr double kHandbookGain = 0.086;  // "+8.6% mAP on NEU-DET", read as 8.6 points of mAP@0.5

}  // namespace

nlohmann::json run_defect_experiment(const DefectExperimentOptions& o) {
  namespace fs = std::filesystem;
  QS_CHECK(!o.out_dir.empty(), "experiment defect: --out is required");
  QS_CHECK(o.seeds >= 1 && o.epochs >= 1, "experiment defect: seeds and epochs must be positive");
  const auto started = std::chrono::steady_clock::now();
  fs::create_directories(o.out_dir);
  int seeds = o.seeds, epochs = o.epochs;
  TrainDefectOptions base;
  base.model = o.model;
  SynthOptions so;
  int train = o.train, val = o.val, test = o.test;
  if (o.quick) {
    train = 6, val = 2, test = 2, so.frames = 6, so.size = 64, so.speed = 6;
    seeds = 1, epochs = 2;
    base.model.width = 8, base.model.channels = 16, base.model.heads = 2, base.batch = 4;
  }
  base.window = std::max(base.window, base.model.frames);
  const double travel = o.travel >= 0 ? o.travel : o.data.empty() ? so.speed : 0.0;
  std::string data = o.data;
  if (data.empty()) {
    data = (fs::path(o.out_dir) / "data").string();
    int split = 0;
    for (auto [name, n] : {std::pair{"train", train}, {"val", val}, {"test", test}}) {
      ++split;
      if (fs::exists(fs::path(data) / name)) continue;
      SynthOptions s = so;
      s.sequences = n;
      s.seed = uint64_t(split);  // as `qiusuo defect synth --seed 0`
      write_synthetic_sequences((fs::path(data) / name).string(), s);
    }
  }
  const auto& classes = neu_det_classes();
  nlohmann::json rows = nlohmann::json::array();
  std::vector<util::BarGroup> map_bars, class_bars(classes.size());
  for (size_t c = 0; c < classes.size(); ++c) class_bars[c].label = classes[c];
  for (const char* model : {"cnn", "spatiotemporal"}) {
    nlohmann::json runs = nlohmann::json::array();
    std::vector<double> map50, coco, fps;
    std::vector<std::vector<double>> per_class(classes.size());
    for (int s = 0; s < seeds; ++s) {
      TrainDefectOptions t = base;
      t.data = data, t.model.model = model, t.epochs = epochs, t.seed = uint64_t(s), t.quiet = o.quiet;
      t.model.travel = std::string(model) == "spatiotemporal" ? travel : 0.0;
      t.out = (fs::path(o.out_dir) / "runs" / fmt::format("{}_seed{}", model, s)).string();
      if (!o.quiet) std::cerr << fmt::format("experiment defect: {} (seed {})\n", model, s);
      const TrainDefectResult r = train_defect(t);
      map50.push_back(r.test.map50), coco.push_back(r.test.coco_map), fps.push_back(r.frames_per_s);
      nlohmann::json ap = nlohmann::json::object();
      for (const auto& c : r.test.per_class) {
        per_class[size_t(c.cls)].push_back(c.ap);
        ap[classes[size_t(c.cls)]] = std::isnan(c.ap) ? nlohmann::json() : nlohmann::json(c.ap);
      }
      runs.push_back({{"seed", s}, {"test_map50", r.test.map50}, {"test_map50_voc07", r.test.map50_voc07},
                      {"test_coco_map", r.test.coco_map}, {"val_map50", r.val.map50}, {"best_epoch", r.best_epoch},
                      {"frames_per_s", r.frames_per_s}, {"test_frames", r.test.frames}, {"test_boxes", r.test.boxes},
                      {"ap50_per_class", ap}, {"run", t.out}});
    }
    nlohmann::json class_mean = nlohmann::json::object();
    for (size_t c = 0; c < classes.size(); ++c) {
      std::vector<double> finite;
      for (double v : per_class[c])
        if (std::isfinite(v)) finite.push_back(v);
      const double m = finite.empty() ? std::nan("") : mean_of(finite);
      class_mean[classes[c]] = std::isnan(m) ? nlohmann::json() : nlohmann::json(m);
      class_bars[c].values.push_back(m);
    }
    rows.push_back({{"model", model}, {"runs", runs}, {"map50_mean", mean_of(map50)}, {"map50_sd", sd_of(map50)},
                    {"coco_map_mean", mean_of(coco)}, {"coco_map_sd", sd_of(coco)}, {"frames_per_s", mean_of(fps)},
                    {"ap50_per_class_mean", class_mean}});
    map_bars.push_back({model, {mean_of(map50), mean_of(coco)}});
  }
  const double delta = rows[1]["map50_mean"].get<double>() - rows[0]["map50_mean"].get<double>();
  const double sd = std::hypot(rows[0]["map50_sd"].get<double>(), rows[1]["map50_sd"].get<double>());
  nlohmann::json result = {{"data", data}, {"seeds", seeds}, {"epochs", epochs}, {"quick", o.quick},
                           {"frames", base.model.frames}, {"window", base.window}, {"travel", travel}, {"rows", rows},
                           {"delta_map50", delta}, {"delta_map50_sd", sd},
                           {"handbook", {{"claim", "+8.6% mAP on NEU-DET for temporal + spatial features against a CNN-only "
                                                   "baseline"}, {"delta_map50", kHandbookGain}}}};
  apps::stamp_run(result, started);
  io::write_file_atomic((fs::path(o.out_dir) / "results.json").string(), result.dump(1) + "\n");

  std::string md = "# Defect detection: a per-frame CNN against a spatiotemporal model\n\n";
  md += fmt::format("`qiusuo experiment defect{}` on synthetic inspection sequences (`{}`: {} / {} / {} sequences "
                    "for training / validation / test, docs/defect.md). ResNet-{} (width {}), a feature pyramid at "
                    "stride 8 and an FCOS-style head; the spatiotemporal model adds a Transformer over the last {} "
                    "frames, earlier frames shifted by {} pixels of travel per frame. {} seed(s) per model, {} epochs, the best validation epoch kept. Both are scored on the "
                    "same test frames (t >= {}). mAP: mean over seeds (sd).\n\n",
                    o.quick ? " --quick" : fmt::format(" --seeds {} --epochs {}", seeds, epochs), data, train, val, test,
                    base.model.depth, base.model.width, base.model.frames, travel, seeds, epochs, base.window - 1);
  md += "| model | test mAP@0.5 (VOC all-point) | COCO mAP@[.5:.95] | training frames/s |\n| --- | --- | --- | --- |\n";
  for (const auto& r : rows)
    md += fmt::format("| {} | {:.3f} ({:.3f}) | {:.3f} ({:.3f}) | {:.1f} |\n", r["model"].get<std::string>(),
                      r["map50_mean"].get<double>(), r["map50_sd"].get<double>(), r["coco_map_mean"].get<double>(),
                      r["coco_map_sd"].get<double>(), r["frames_per_s"].get<double>());
  md += "\nAP@0.5 per class (mean over seeds):\n\n| class | cnn | spatiotemporal |\n| --- | --- | --- |\n";
  for (size_t c = 0; c < classes.size(); ++c) {
    auto cell = [&](size_t row) {
      const auto& v = rows[row]["ap50_per_class_mean"][classes[c]];
      return v.is_null() ? std::string("-") : fmt::format("{:.3f}", v.get<double>());
    };
    md += fmt::format("| {} | {} | {} |\n", classes[c], cell(0), cell(1));
  }
  md += fmt::format("\n**Measured difference (spatiotemporal - cnn): {:+.3f} mAP@0.5** (sd of the difference of means "
                    "about {:.3f}), beside the handbook's +{:.3f} on NEU-DET. ",
                    delta, sd / std::sqrt(double(seeds)), kHandbookGain);
  md += "The handbook's number is on real steel images (NEU-DET has no time axis; how the handbook made sequences of "
        "it is not said); ours is on drawn defects whose contrast the generator makes rise and fall from frame to "
        "frame, so a model that sees earlier frames has something to gain by construction. The two numbers measure "
        "different things and the comparison says only whether the temporal model uses the time axis it is given.\n";
  io::write_file_atomic((fs::path(o.out_dir) / "results.md").string(), md);
  util::PlotOptions po;
  po.title = "Test mAP, mean over seeds";
  po.x_label = "mAP";
  io::write_file_atomic((fs::path(o.out_dir) / "map.svg").string(),
                        util::svg_bar_chart({"mAP@0.5 (VOC)", "COCO mAP@[.5:.95]"}, map_bars, po));
  po.title = "Test AP@0.5 per class, mean over seeds";
  po.x_label = "AP@0.5";
  io::write_file_atomic((fs::path(o.out_dir) / "per_class.svg").string(),
                        util::svg_bar_chart({"cnn", "spatiotemporal"}, class_bars, po));
  return result;
}

}  // namespace qs::defect
