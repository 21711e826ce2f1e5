// `qiusuo experiment defect`: the handbook's industrial claim put to a test (docs/defect.md):
// the per-frame CNN detector against the spatiotemporal one (the same backbone and head,
// plus a Transformer over the last T frames), each trained with several seeds on the same
// synthetic inspection sequences and scored on the same test frames: mAP@0.5 (VOC
// all-point) and COCO mAP@[.5:.95] with their spread over seeds, AP per class, the
// measured difference beside the handbook's +8.6% mAP on NEU-DET; results.json,
// results.md, map.svg, per_class.svg, and each run's report, PR curves and drawn frames.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "qiusuo/apps/detector.h"

namespace qs::defect {

struct DefectExperimentOptions {
  std::string out_dir;
  std::string data;  // "" : synthesised into out_dir/data
  int train = 48, val = 12, test = 12;  // sequences of the synthesised set
  int seeds = 3;
  int epochs = 12;
  apps::DetectorConfig model;  // the spatiotemporal model's T is model.frames; the cnn's is 1
  // The spatiotemporal model's frame alignment (DetectorConfig::travel); < 0: the synthetic
  // strip's speed when the experiment writes the data, else 0.
  double travel = -1;
  bool quick = false;  // CI: 6 / 2 / 2 sequences of 6 frames at 64 px, width 8, 2 epochs, 1 seed
  bool quiet = false;
};

// Errors: train_defect's and the readers'.
nlohmann::json run_defect_experiment(const DefectExperimentOptions& o);

}  // namespace qs::defect
