// Training and evaluating the defect detectors on inspection sequences (docs/defect.md):
// `qiusuo train defect`, `qiusuo eval defect`.
//
// A sample is a window of T frames of one sequence ending at frame t, the boxes of frame t
// its targets (T = 1 for the cnn). Both models are evaluated on the same frames: those
// with t >= window - 1 (`window` = 4 by default, the spatiotemporal model's T), each with
// the frames before it when the model takes them.
#pragma once
#include <string>
#include <vector>

#include "qiusuo/apps/detector.h"
#include "qiusuo/defect/dataset.h"
#include "qiusuo/metrics/detection.h"

namespace qs::defect {

// One split (a folder of sequences) in memory: grey frames normalised to (x - 0.5) / 0.25,
// [1, H, W] each, with their targets. Errors: scan_sequences's, frames of different sizes.
struct SequenceSet {
  std::vector<DefectSequence> sequences;
  std::vector<std::vector<Tensor>> frames;    // [sequence][t]
  std::vector<std::vector<Targets>> targets;  // [sequence][t]
  int64_t height = 0, width = 0;
};
SequenceSet load_sequence_set(const std::string& dir);

struct DefectEval {
  int frames = 0, boxes = 0;                   // evaluated frames and their ground-truth boxes
  double map50 = 0;                            // VOC all-point mAP at IoU 0.5
  double map50_voc07 = 0;                      // VOC2007 11-point
  double coco_map = 0, coco_map50 = 0, coco_map75 = 0;  // COCO 101-point, IoU .50:.95 / .50 / .75
  std::vector<metrics::ClassAp> per_class;     // all-point at 0.5 (NaN: no ground truth)
};
// The detector on every window of `set` ending at t >= window - 1.
DefectEval evaluate_detector(apps::Detector& model, const SequenceSet& set, int window, int64_t batch = 8);

struct TrainDefectOptions {
  std::string data;  // DIR/train, DIR/val, DIR/test (`qiusuo defect synth` writes them)
  std::string out;   // last.safetensors, report.json, pr.svg, figures/
  apps::DetectorConfig model;
  int epochs = 12;
  int64_t batch = 8;
  double lr = 1e-3, weight_decay = 1e-4;
  int window = 4;
  bool hflip = true;  // mirror a window left-right with probability 1/2
  bool sync_bn = false;  // under mpirun: batch statistics over every rank's samples
  uint64_t seed = 0;
  bool quiet = false;
};

struct TrainDefectResult {
  std::vector<double> train_loss, val_map50;  // per epoch
  int best_epoch = 0;                          // by validation mAP@0.5 (its weights are kept)
  DefectEval val, test;
  double frames_per_s = 0;  // training throughput (target frames)
  double seconds = 0;
  std::string checkpoint;
  std::vector<std::string> figures;  // pr.svg, figures/*.png
};
// Errors: bad options, the data's errors, a split without sequences.
TrainDefectResult train_defect(const TrainDefectOptions& o);

// A checkpoint of train_defect on a split folder.
DefectEval eval_defect(const std::string& checkpoint, const std::string& split_dir, int window = 4);

// Frames with their boxes drawn: ground truth in green, detections in the class's colour
// with class and score; written as PNG into `dir`, one per (sequence, frame) given.
std::vector<std::string> draw_detections(apps::Detector& model, const SequenceSet& set,
                                         const std::vector<std::pair<int, int>>& frames, const std::string& dir);

// `qiusuo detect`: a checkpoint of train_defect on image files (any size, all the same for
// the spatiotemporal model, which reads them as one sequence in the order given: each
// image is detected with the T - 1 before it, the first T - 1 are context only). Writes
// each detected image with its boxes drawn into `out_dir` (PNG, same stem) and returns the
// boxes per detected image, paired with its path.
std::vector<std::pair<std::string, std::vector<apps::FoundBox>>> detect_images(const std::string& checkpoint,
                                                                               const std::vector<std::string>& images,
                                                                               const std::string& out_dir,
                                                                               double threshold = 0.3);

}  // namespace qs::defect
