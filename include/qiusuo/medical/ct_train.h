// The CT nodule classification job (docs/ct.md): a data set of nodule patches read from a
// LIDC-IDRI style tree (real or synthetic), CtNet trained on a patient-level split, and the
// test ROC AUC with its bootstrap interval.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "qiusuo/apps/ct_model.h"
#include "qiusuo/medical/lidc.h"
#include "qiusuo/metrics/roc.h"

namespace qs::medical {

struct CtDataOptions {
  double patch_mm = 32;                     // the cube around each nodule centre
  int64_t patch = 32;                       // on patch^3 voxels (1 mm each by default)
  double window_lo = -1000, window_hi = 400;  // HU window mapped to [0, 1] (lung window)
  LabelRule rule;                           // mean malignancy > 3: 1, < 3: 0, else excluded
  double group_tolerance_mm = 10;
};

struct CtSample {
  std::string patient, series_dir;
  int label = 0;
  double mean_malignancy = 0, diameter_mm = 0;
  std::array<double, 3> centre{};  // voxel (i, j, k) of its series
};

struct CtDataset {
  Tensor patches;  // f32 [N, 1, S, S, S], windowed to [0, 1]
  std::vector<CtSample> samples;
  int excluded = 0;  // nodules the label rule left out
};

// Every series with its XML under `root` (find_lidc_cases), each nodule group with a label.
// Errors: no case under root, no labelled nodule, the readers' errors.
CtDataset build_ct_dataset(const std::string& root, const CtDataOptions& opt = {});

struct TrainCtOptions {
  std::string data;  // a LIDC-IDRI style tree (`qiusuo ct synth` writes one)
  std::string out;   // folder for last.safetensors and report.json
  apps::CtNetConfig model;
  std::string loss = "focal";  // "focal" | "ce"
  double gamma = 2.0;
  double alpha = -1;  // focal: the weight of the positive class; < 0: none
  int epochs = 20;
  int64_t batch = 16;
  double lr = 1e-3, weight_decay = 1e-4;
  bool augment = true;
  bool sync_bn = false;     // under mpirun: batch statistics over every rank's samples
  bool bf16 = false;
  std::vector<double> split = {0.6, 0.2, 0.2};  // train / validation / test, by patient
  uint64_t seed = 0;        // initialisation, shuffling and augmentation
  uint64_t split_seed = 0;  // the patient split
  int bootstrap = 1000;
  CtDataOptions data_options;
  bool quiet = false;
};

struct TrainCtResult {
  int train = 0, val = 0, test = 0;  // nodules per split
  int best_epoch = 0;                // by validation AUC (its weights are kept)
  std::vector<double> train_loss, val_auc;  // per epoch
  metrics::AucInterval test_auc;
  // Youden's threshold on the validation set, applied to the test set.
  metrics::OperatingPoint test_at_val_threshold;
  std::vector<metrics::RocPoint> test_curve;
  double volumes_per_s = 0;  // training throughput
  double seconds = 0;
  std::string checkpoint;
  std::vector<std::string> figures;  // out/roc.svg and the nodule figures
};

// Errors: bad options, the data set's errors, a split leaving a set without both classes.
TrainCtResult train_ct(const TrainCtOptions& opt);

// An SVG of ROC curves (label, curve), with the chance diagonal.
std::string roc_svg(const std::vector<std::pair<std::string, std::vector<metrics::RocPoint>>>& curves,
                    const std::string& title);

// One PNG per nodule (the first `max` of `idx`): the patch's middle axial slice, the same
// with the finer attention gate's map over it (fusion+gates only), and with the Grad-CAM map
// of the malignant class over it; named nodule_<n>_<label>.png. Returns the files written.
std::vector<std::string> write_ct_figures(apps::CtNet& model, const CtDataset& ds, const std::vector<int64_t>& idx,
                                          const std::string& dir, int max = 4);

struct EvalCtResult {
  int nodules = 0;
  metrics::AucInterval auc;
  std::vector<metrics::RocPoint> curve;
  std::vector<double> scores;
  std::vector<int> labels;
};
// A trained checkpoint on every labelled nodule under `data` (another data set than the
// training one, e.g. `ct synth --seed 1`).
EvalCtResult eval_ct(const std::string& checkpoint, const std::string& data, int bootstrap = 1000, uint64_t seed = 0);

}  // namespace qs::medical
