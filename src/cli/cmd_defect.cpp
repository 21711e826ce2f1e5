// qiusuo defect synth --out DIR [...]: synthetic inspection sequences (train/val/test)
// qiusuo defect info PATH: a NEU-DET tree or a folder of sequences, described (docs/defect.md)
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/defect/dataset.h"
#include "qiusuo/defect/synth.h"

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

}  // namespace

int cmd_defect(Args a) {
  const std::string what = a.positionals().empty() ? "" : a.positionals()[0];
  if (what == "synth") return defect_synth(a);
  if (what == "info") return defect_info(a);
  throw UsageError("qiusuo defect: synth or info");
}

}  // namespace qs::cli
