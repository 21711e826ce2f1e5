// Object-detection metrics: IoU, per-class average precision and mAP as Pascal VOC and
// COCO compute them (the defect-detection application's metrics).
//
// References: py-faster-rcnn's voc_eval.py (voc_eval and voc_ap, the matching Cartucho/mAP
// also follows) and pycocotools' COCOeval (evaluateImg, accumulate).
//
// Boxes are corners (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1. Errors (qs::Error): a class
// id outside [0, n_classes) (average_precision: negative), a non-finite score or coordinate,
// an inverted box, an IoU threshold outside [0, 1].
#pragma once
#include <string>
#include <vector>

namespace qs::metrics {

struct Box {
  double x1, y1, x2, y2;
};

// How a box's extent is measured.
//   voc_pixels: inclusive pixel indices, as the VOC devkit and voc_eval.py: width x2 - x1 + 1,
//               so [0, 9] is 10 pixels wide and boxes sharing an edge pixel overlap.
//   continuous: coordinates on the real line, as COCO: width x2 - x1, so boxes that only
//               touch have IoU 0.
enum class BoxConvention { voc_pixels, continuous };

// Intersection over union; 0 when the union is empty (two zero-area continuous boxes).
double iou(const Box& a, const Box& b, BoxConvention conv);

struct GroundTruth {
  std::string image;
  int cls;
  Box box;
  bool difficult = false;  // VOC's "difficult" / COCO's "iscrowd": matches to it are ignored
};

struct Detection {
  std::string image;
  int cls;
  double score;  // higher is more confident
  Box box;
};

// How detections are matched and how the precision-recall curve becomes one number.
//   voc11:      VOC2007. Matching as voc_eval.py: a detection goes to the ground truth of its
//               image with the highest IoU (matched or not, difficult or not; the first on
//               ties) and counts when IoU > threshold (strictly). AP = mean over recall
//               levels t = 0, 0.1, ..., 1 of the highest precision at recall >= t (0 if none).
//   all_points: VOC2010+ (voc_ap with use_07_metric=False). Matching as voc11. AP = area under
//               the precision envelope (made non-increasing from the right), summed where
//               recall changes.
//   coco101:    COCO. Matching as pycocotools: a detection goes to the unmatched
//               non-difficult ground truth with the highest IoU >= threshold (the last on ties),
//               else to a difficult one (ignored). AP = mean over r = 0, 0.01, ..., 1 of the
//               envelope precision at the first point with recall >= r (0 past the curve's end).
// Common rules: detections of the class are taken by descending score, tied scores in input
// order (a stable sort; voc_eval.py's np.argsort is not stable, pycocotools' mergesort is).
// A detection matched to a difficult ground truth is neither a true nor a false positive and
// leaves the curve (a difficult box can take any number of them); one matched to a free
// ground truth is a true positive and takes it; any other is a false positive. So a duplicate
// is a false positive; under voc11/all_points even when a second, free ground truth overlaps
// it enough (its best IoU is with the taken one), under coco101 only when none does.
// Recall = true positives / non-difficult ground truths of the class.
// The recall levels are k / 10 and k / 100 exactly (numpy's arange(0, 1.1, 0.1) makes level 3
// 0.30000000000000004, so voc_eval.py misses a recall of exactly 3/10; this does not).
// coco101 simplifies COCOeval: no area ranges, no cap of 100 detections per image (cap them
// before calling), and a difficult box's IoU is the ordinary one (COCO divides a crowd
// region's overlap by the detection's area alone).
enum class ApMethod { voc11, all_points, coco101 };

struct ClassAp {
  int cls = 0;
  double ap = 0;  // NaN when the class has no non-difficult ground truth (AP is undefined)
  int n_gt = 0;   // non-difficult ground truths
  int n_det = 0;  // detections of the class, ignored ones included
  // The curve after each counted detection, in score order (ignored detections left out;
  // empty when n_gt is 0): raw cumulative precision, not the envelope.
  std::vector<double> precision, recall;
};

// The AP of class `cls` at one IoU threshold. A class with ground truth but no detections
// has AP 0; one without non-difficult ground truth has AP NaN.
ClassAp average_precision(const std::vector<GroundTruth>& gts, const std::vector<Detection>& dets, int cls,
                          double iou_threshold, ApMethod method, BoxConvention conv);

struct MapResult {
  double map = 0;                  // mean AP over classes with ground truth; NaN if none has
  std::vector<ClassAp> per_class;  // one per class id 0 .. n_classes - 1, NaN ones included
};

// mAP over classes 0 .. n_classes - 1. Classes without non-difficult ground truth are
// skipped, as the VOC devkit and COCOeval do.
MapResult mean_average_precision(const std::vector<GroundTruth>& gts, const std::vector<Detection>& dets,
                                 int n_classes, double iou_threshold, ApMethod method, BoxConvention conv);

struct CocoMapResult {
  double map = 0;                      // mAP@[.5:.95]: the mean of per_threshold's maps
  double map50 = 0, map75 = 0;         // per_threshold at 0.50 and 0.75
  std::vector<double> thresholds;      // 0.50, 0.55, ..., 0.95, each (50 + 5k) / 100 exactly
  std::vector<MapResult> per_threshold;
};

// COCO's headline metric: coco101 with continuous boxes at IoU >= 0.50, 0.55, ..., 0.95.
CocoMapResult coco_map(const std::vector<GroundTruth>& gts, const std::vector<Detection>& dets, int n_classes);

// An SVG figure (util::svg_line_plot) of the precision-recall curves: one polyline per class,
// labelled "<name> (AP 0.xxx)", or "<name> (no ground truth)" with no curve; a class id
// without a name is shown as "class <id>".
std::string pr_curve_svg(const std::vector<ClassAp>& curves, const std::vector<std::string>& class_names,
                         const std::string& title);

}  // namespace qs::metrics
