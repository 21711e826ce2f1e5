// qiusuo defect synth --out DIR [...]: synthetic inspection sequences (train/val/test)
// qiusuo defect info PATH: a NEU-DET tree or a folder of sequences, described
// qiusuo train defect --data DIR --out DIR [...] and qiusuo eval defect CKPT --data DIR (docs/defect.md)
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/defect/dataset.h"
#include "qiusuo/defect/synth.h"
#include "qiusuo/defect/train.h"

namespace qs::cli {

namespace {

namespace fs = std::filesystem;

int defect_synth(Args& a) {
  const std::string out = a.required("out");
  defect::SynthOptions o;
  const int train = int(a.integer("train", 48, 1, 100000)), val = int(a.integer("val", 12, 0, 100000)),
            test = int(a.integer("test", 12, 0, 100000));
  o.frames = int(a.integer("frames", o.frames, 1, 1000));
  o.size = int(a.integer("size", o.size, 16, 1024));
  o.speed = a.number("speed", o.speed);
  o.max_defects = int(a.integer("max-defects", o.max_defects, 1, 32));
  o.format = a.str("format", o.format);
  o.seed = uint64_t(a.integer("seed", 0, 0, int64_t(1) << 40));
  a.finish();
  nlohmann::json j{{"out", out}};
  std::vector<int> total(defect::neu_det_classes().size(), 0);
  int split_index = 0;
  for (auto [name, n] : {std::pair{"train", train}, {"val", val}, {"test", test}}) {
    ++split_index;
    if (n == 0) continue;
    defect::SynthOptions so = o;
    so.sequences = n;
    so.seed = o.seed * 3 + uint64_t(split_index);  // disjoint strips per split
    const defect::SynthSummary s = defect::write_synthetic_sequences(out + "/" + name, so);
    for (size_t c = 0; c < total.size(); ++c) total[c] += s.per_class[c];
    j[name] = {{"sequences", s.sequences}, {"frames", s.frames}, {"boxes", s.boxes}};
    std::cout << fmt::format("{}: {} sequences of {} frames ({} x {}), {} boxes\n", name, s.sequences, o.frames, o.size,
                             o.size, s.boxes);
  }
  nlohmann::json per_class;
  for (size_t c = 0; c < total.size(); ++c) per_class[defect::neu_det_classes()[c]] = total[c];
  j["boxes_per_class"] = per_class;
  std::cout << j.dump() << std::endl;
  return kExitOk;
}

void describe(const std::vector<defect::DefectImage>& images, const std::string& what) {
  std::vector<int> per_class(defect::neu_det_classes().size(), 0);
  int boxes = 0, clipped = 0, difficult = 0;
  for (const defect::DefectImage& d : images) {
    clipped += d.voc.clipped;
    for (const defect::VocObject& o : d.voc.objects) {
      ++per_class[size_t(defect::class_index(o.name))];
      ++boxes;
      difficult += o.difficult;
    }
  }
  std::cout << fmt::format("{}: {} images, {} boxes ({} difficult, {} clipped to their image)\n", what, images.size(),
                           boxes, difficult, clipped);
  for (size_t c = 0; c < per_class.size(); ++c)
    std::cout << fmt::format("  {:<16} {}\n", defect::neu_det_classes()[c], per_class[c]);
}

int defect_info(Args& a) {
  if (a.positionals().size() != 2) throw UsageError("qiusuo defect info PATH (a NEU-DET tree or a folder of sequences)");
  const std::string path = a.positionals()[1];
  a.finish();
  // NEU-DET's layouts first, then sequences (each split of a synth tree, or one folder of them).
  if (fs::is_directory(fs::path(path) / "ANNOTATIONS") || fs::is_directory(fs::path(path) / "train" / "annotations")) {
    describe(defect::scan_neu_det(path), path + " (NEU-DET layout)");
    return kExitOk;
  }
  std::vector<std::string> roots;
  for (const char* split : {"train", "val", "test"})
    if (fs::is_directory(fs::path(path) / split)) roots.push_back((fs::path(path) / split).string());
  if (roots.empty()) roots.push_back(path);
  for (const std::string& r : roots) {
    const std::vector<defect::DefectSequence> seqs = defect::scan_sequences(r);
    std::vector<defect::DefectImage> frames;
    for (const auto& s : seqs) frames.insert(frames.end(), s.frames.begin(), s.frames.end());
    describe(frames, fmt::format("{} ({} sequences, {} x {} frames)", r, seqs.size(), seqs[0].frames[0].voc.width,
                                 seqs[0].frames[0].voc.height));
  }
  return kExitOk;
}

std::string eval_line(const defect::DefectEval& e) {
  std::string per;
  for (const auto& c : e.per_class)
    per += fmt::format("{}{} {}", per.empty() ? "" : ", ", defect::neu_det_classes()[size_t(c.cls)],
                       std::isnan(c.ap) ? std::string("-") : fmt::format("{:.3f}", c.ap));
  return fmt::format("{} frames, {} boxes: mAP@0.5 {:.3f} (VOC all-point; 11-point {:.3f}), COCO mAP@[.5:.95] {:.3f} "
                     "(@.5 {:.3f}, @.75 {:.3f}); AP@0.5 per class: {}",
                     e.frames, e.boxes, e.map50, e.map50_voc07, e.coco_map, e.coco_map50, e.coco_map75, per);
}

}  // namespace

int cmd_train_defect(Args& a) {
  defect::TrainDefectOptions o;
  o.data = a.required("data");
  o.out = a.required("out");
  o.model.model = a.str("model", o.model.model);
  o.model.depth = int(a.integer("depth", o.model.depth, 18, 50));
  o.model.width = a.integer("width", o.model.width, 1, 1024);
  o.model.channels = a.integer("channels", o.model.channels, 1, 4096);
  o.model.frames = int(a.integer("frames", o.model.frames, 1, 64));
  o.model.temporal_layers = int(a.integer("temporal-layers", o.model.temporal_layers, 0, 16));
  o.model.heads = a.integer("heads", o.model.heads, 1, 64);
  o.model.travel = a.number("travel", o.model.travel);
  o.window = int(a.integer("window", std::max(o.window, o.model.frames), 1, 64));
  o.epochs = int(a.integer("epochs", o.epochs, 1, 100000));
  o.batch = a.integer("batch", o.batch, 2, 4096);
  o.lr = a.number("lr", o.lr);
  o.weight_decay = a.number("weight-decay", o.weight_decay);
  o.hflip = !a.flag("no-hflip");
  o.sync_bn = a.flag("sync-bn");
  o.seed = uint64_t(a.integer("seed", 0, 0, int64_t(1) << 40));
  o.quiet = a.flag("quiet");
  if (const int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  const defect::TrainDefectResult r = defect::train_defect(o);
  std::cout << fmt::format("{}: best epoch {} of {} (validation mAP@0.5 {:.3f}); {:.1f} frames/s\n", o.model.model,
                           r.best_epoch, o.epochs, r.val_map50[size_t(r.best_epoch - 1)], r.frames_per_s);
  std::cout << "test: " << eval_line(r.test) << "\n";
  std::cout << nlohmann::json{{"checkpoint", r.checkpoint}, {"model", o.model.model}, {"test_map50", r.test.map50},
                              {"test_coco_map", r.test.coco_map}, {"val_map50", r.val.map50},
                              {"best_epoch", r.best_epoch}, {"frames_per_s", r.frames_per_s}, {"seconds", r.seconds}}
                   .dump()
            << std::endl;
  return kExitOk;
}

int cmd_eval_defect(Args& a) {
  if (a.positionals().size() != 2) throw UsageError("qiusuo eval defect CKPT --data DIR (a folder of sequences)");
  const std::string ckpt = a.positionals()[1], data = a.required("data");
  const int window = int(a.integer("window", 4, 1, 64));
  if (const int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  const defect::DefectEval e = defect::eval_defect(ckpt, data, window);
  std::cout << eval_line(e) << "\n";
  std::cout << nlohmann::json{{"checkpoint", ckpt}, {"data", data}, {"map50", e.map50}, {"map50_voc07", e.map50_voc07},
                              {"coco_map", e.coco_map}, {"frames", e.frames}, {"boxes", e.boxes}}
                   .dump()
            << std::endl;
  return kExitOk;
}

int cmd_detect(Args a) {
  if (a.positionals().size() < 2) throw UsageError("qiusuo detect CKPT IMAGE... --out DIR [--threshold 0.3]");
  const std::string ckpt = a.positionals()[0];
  const std::vector<std::string> images(a.positionals().begin() + 1, a.positionals().end());
  const std::string out = a.required("out");
  const double threshold = a.number("threshold", 0.3);
  if (const int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  for (const auto& [image, found] : defect::detect_images(ckpt, images, out, threshold)) {
    nlohmann::json boxes = nlohmann::json::array();
    for (const apps::FoundBox& f : found)
      boxes.push_back({{"class", defect::neu_det_classes()[size_t(f.cls)]}, {"score", f.score}, {"box", f.box}});
    std::cout << nlohmann::json{{"image", image}, {"boxes", boxes}}.dump() << std::endl;
  }
  std::cerr << "drawn into " << out << "\n";
  return kExitOk;
}

int cmd_defect(Args a) {
  const std::string what = a.positionals().empty() ? "" : a.positionals()[0];
  if (what == "synth") return defect_synth(a);
  if (what == "info") return defect_info(a);
  throw UsageError("qiusuo defect: synth or info");
}

}  // namespace qs::cli
