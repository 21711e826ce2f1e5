// IoU, average precision and mAP for object detection (qiusuo/metrics/detection.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "qiusuo/error.h"
#include "qiusuo/metrics/detection.h"
#include "qiusuo/tensor.h"

using namespace qs;
using namespace qs::metrics;

namespace {

constexpr BoxConvention kPix = BoxConvention::voc_pixels, kCont = BoxConvention::continuous;
constexpr ApMethod kAllMethods[] = {ApMethod::voc11, ApMethod::all_points, ApMethod::coco101};

GroundTruth gt(const std::string& image, Box b, bool difficult = false, int cls = 0) {
  return {image, cls, b, difficult};
}
Detection det(const std::string& image, double score, Box b, int cls = 0) { return {image, cls, score, b}; }

constexpr Box kSquare = {0, 0, 10, 10};

}  // namespace

// [0, 10] x [0, 10] against:
//   itself                        continuous 1;  pixels 1
//   [20, 30]^2 (disjoint)         continuous 0;  pixels 0
//   [5, 15]^2 (partial)           continuous 5*5 / (100 + 100 - 25) = 25/175 = 1/7;
//                                 pixels 6*6 / (11*11 + 11*11 - 36) = 36/206 = 18/103
//   [10, 20] x [0, 10] (touching) continuous 0 (a line has no area);
//                                 pixels column 10 is shared: 1*11 / (121 + 121 - 11) = 11/231 = 1/21
// and in pixels [0, 9] and [10, 19] are adjacent, not overlapping: 0.
TEST(Detection, IouBothConventions) {
  for (BoxConvention c : {kPix, kCont}) {
    EXPECT_DOUBLE_EQ(iou(kSquare, kSquare, c), 1.0);
    EXPECT_EQ(iou(kSquare, {20, 20, 30, 30}, c), 0.0);
  }
  EXPECT_DOUBLE_EQ(iou(kSquare, {5, 5, 15, 15}, kCont), 1.0 / 7);
  EXPECT_DOUBLE_EQ(iou(kSquare, {5, 5, 15, 15}, kPix), 18.0 / 103);
  EXPECT_EQ(iou(kSquare, {10, 0, 20, 10}, kCont), 0.0);
  EXPECT_DOUBLE_EQ(iou(kSquare, {10, 0, 20, 10}, kPix), 1.0 / 21);
  EXPECT_EQ(iou({0, 0, 9, 9}, {10, 0, 19, 9}, kPix), 0.0);
  // Symmetric; a zero-area continuous box against itself has an empty union: 0, not NaN.
  EXPECT_DOUBLE_EQ(iou({5, 5, 15, 15}, kSquare, kPix), 18.0 / 103);
  EXPECT_EQ(iou({3, 3, 3, 3}, {3, 3, 3, 3}, kCont), 0.0);
  EXPECT_EQ(iou({3, 3, 3, 3}, {3, 3, 3, 3}, kPix), 1.0);  // one pixel
}

// 3 ground truths (images a, b, c); 5 detections in score order TP FP TP FP TP, the false
// positives in image "bg" which has no ground truth:
//   precision 1/1, 1/2, 2/3, 2/4, 3/5     recall 1/3, 1/3, 2/3, 2/3, 3/3
//   envelope  1,   2/3, 2/3, 3/5, 3/5
// voc11: t in {0, .1, .2, .3} -> 1 (4 levels); t in {.4, .5, .6} -> max(2/3, 1/2, 3/5) = 2/3
//   (3 levels); t in {.7, .8, .9, 1} -> 3/5 (4 levels): (4 + 2 + 2.4) / 11 = 8.4/11 = 0.76364
// all_points: recall steps 0->1/3 at 1, 1/3->2/3 at 2/3, 2/3->1 at 3/5:
//   1/3 + 2/9 + 1/5 = 34/45 = 0.75556
// coco101: r = 0 .. 0.33 (34 levels) -> 1; 0.34 .. 0.66 (33) -> 2/3; 0.67 .. 1 (34) -> 3/5:
//   (34 + 22 + 20.4) / 101 = 76.4/101 = 0.75644
TEST(Detection, ThreeMethodsDifferOnOneCurve) {
  const std::vector<GroundTruth> g = {gt("a", kSquare), gt("b", kSquare), gt("c", kSquare)};
  const std::vector<Detection> d = {det("bg", 0.8, kSquare), det("a", 0.9, kSquare), det("b", 0.7, kSquare),
                                    det("bg", 0.6, kSquare), det("c", 0.5, kSquare)};
  const double expected[] = {8.4 / 11, 34.0 / 45, 76.4 / 101};
  for (int m = 0; m < 3; ++m) {
    const ClassAp r = average_precision(g, d, 0, 0.5, kAllMethods[m], kPix);
    EXPECT_NEAR(r.ap, expected[m], 1e-12) << "method " << m;
    EXPECT_EQ(r.n_gt, 3);
    EXPECT_EQ(r.n_det, 5);
    const std::vector<double> p = {1, 0.5, 2.0 / 3, 0.5, 0.6}, rec = {1.0 / 3, 1.0 / 3, 2.0 / 3, 2.0 / 3, 1};
    ASSERT_EQ(r.precision.size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_DOUBLE_EQ(r.precision[i], p[i]);
      EXPECT_DOUBLE_EQ(r.recall[i], rec[i]);
    }
  }
}

// Tied scores keep input order. One ground truth; a TP (image a) and an FP (image bg), both 0.9:
//   [TP, FP]: precision 1, 1/2; recall 1, 1 -> all_points 1*1 = 1
//   [FP, TP]: precision 0, 1/2; recall 0, 1 -> all_points (1 - 0) * 1/2 = 0.5
// A lower score listed first still ranks last: [FP 0.3, TP 0.9] -> 1.
TEST(Detection, TiedScoresKeepInputOrder) {
  const std::vector<GroundTruth> g = {gt("a", kSquare)};
  const Detection tp = det("a", 0.9, kSquare), fp = det("bg", 0.9, kSquare);
  EXPECT_DOUBLE_EQ(average_precision(g, {tp, fp}, 0, 0.5, ApMethod::all_points, kPix).ap, 1.0);
  const ClassAp r = average_precision(g, {fp, tp}, 0, 0.5, ApMethod::all_points, kPix);
  EXPECT_DOUBLE_EQ(r.ap, 0.5);
  EXPECT_EQ(r.precision, (std::vector<double>{0, 0.5}));
  EXPECT_DOUBLE_EQ(average_precision(g, {det("bg", 0.3, kSquare), tp}, 0, 0.5, ApMethod::all_points, kPix).ap, 1.0);
}

// Ground truths in a and b; a found twice (0.9, 0.8), b once (0.7): TP FP TP.
//   precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> all_points 1/2 * 1 + 1/2 * 2/3 = 5/6
// (were the duplicate not counted: 1).
TEST(Detection, DuplicateIsFalsePositive) {
  const std::vector<GroundTruth> g = {gt("a", kSquare), gt("b", kSquare)};
  const std::vector<Detection> d = {det("a", 0.9, kSquare), det("a", 0.8, {0, 0, 10, 9}), det("b", 0.7, kSquare)};
  for (ApMethod m : {ApMethod::all_points, ApMethod::coco101}) {
    const ClassAp r = average_precision(g, d, 0, 0.5, m, kPix);
    EXPECT_NEAR(r.precision[1], 0.5, 1e-15);
    EXPECT_NEAR(r.recall[1], 0.5, 1e-15);
  }
  EXPECT_NEAR(average_precision(g, d, 0, 0.5, ApMethod::all_points, kPix).ap, 5.0 / 6, 1e-12);
}

// Image a: a difficult ground truth found twice (0.95, 0.85): both ignored, neither TP nor FP.
// Image b: a plain one found (0.9): TP. Image c: a difficult one never found: not in recall.
//   curve: the single point precision 1, recall 1/1 -> AP 1 by every method
// (were the ignored ones false positives: precision 0, 1/3 ... -> all_points 1/3).
TEST(Detection, DifficultGroundTruthIsIgnored) {
  const std::vector<GroundTruth> g = {gt("a", kSquare, true), gt("b", kSquare), gt("c", kSquare, true)};
  const std::vector<Detection> d = {det("a", 0.95, kSquare), det("b", 0.9, kSquare), det("a", 0.85, {1, 1, 10, 10})};
  for (ApMethod m : kAllMethods) {
    const ClassAp r = average_precision(g, d, 0, 0.5, m, kPix);
    EXPECT_DOUBLE_EQ(r.ap, 1.0);
    EXPECT_EQ(r.n_gt, 1);
    EXPECT_EQ(r.n_det, 3);
    EXPECT_EQ(r.precision, (std::vector<double>{1.0}));
    EXPECT_EQ(r.recall, (std::vector<double>{1.0}));
  }
  // Only difficult ground truth: AP is undefined.
  EXPECT_TRUE(std::isnan(average_precision({g[0]}, d, 0, 0.5, ApMethod::all_points, kPix).ap));
}

// Class 0: a ground truth in a, found at 0.9, and a detection at 0.95 in image "empty" (no ground
//   truth at all): FP then TP, precision 0, 1/2, recall 0, 1 -> 0.5 by every method
//   (voc11: max precision at recall >= t is 1/2 for every t; all_points: 1 * 1/2;
//   coco101: every level reaches the envelope's 1/2).
// Class 1: detections but no ground truth -> NaN, skipped.
// Class 2: ground truth but no detections -> 0.
// mAP = (0.5 + 0) / 2 = 0.25.
TEST(Detection, ClassesWithoutGroundTruthOrDetections) {
  const std::vector<GroundTruth> g = {gt("a", kSquare, false, 0), gt("a", kSquare, false, 2)};
  const std::vector<Detection> d = {det("a", 0.9, kSquare, 0), det("empty", 0.95, kSquare, 0),
                                    det("a", 0.8, kSquare, 1)};
  for (ApMethod m : kAllMethods) {
    const MapResult r = mean_average_precision(g, d, 3, 0.5, m, kPix);
    ASSERT_EQ(r.per_class.size(), 3u);
    EXPECT_DOUBLE_EQ(r.per_class[0].ap, 0.5);
    EXPECT_TRUE(std::isnan(r.per_class[1].ap));
    EXPECT_EQ(r.per_class[1].n_det, 1);
    EXPECT_TRUE(r.per_class[1].recall.empty());
    EXPECT_EQ(r.per_class[2].ap, 0.0);
    EXPECT_EQ(r.per_class[2].n_gt, 1);
    EXPECT_DOUBLE_EQ(r.map, 0.25);
  }
  // No class has ground truth: no mAP.
  EXPECT_TRUE(std::isnan(mean_average_precision({}, d, 3, 0.5, ApMethod::all_points, kPix).map));
  EXPECT_TRUE(std::isnan(coco_map({}, d, 3).map));
}

// IoU exactly 0.5: pixels [0, 9]^2 (100 px) against [0, 9] x [0, 4] (50 px) -> 50/100;
// continuous [0, 10]^2 against [0, 10] x [0, 5] -> 50/100. VOC needs IoU > 0.5: FP, AP 0.
// COCO needs IoU >= 0.5: TP, AP 1.
TEST(Detection, IouExactlyAtThreshold) {
  EXPECT_EQ(iou({0, 0, 9, 9}, {0, 0, 9, 4}, kPix), 0.5);
  EXPECT_EQ(iou(kSquare, {0, 0, 10, 5}, kCont), 0.5);
  for (BoxConvention c : {kPix, kCont}) {
    const Box half = c == kPix ? Box{0, 0, 9, 4} : Box{0, 0, 10, 5};
    const std::vector<GroundTruth> g = {gt("a", c == kPix ? Box{0, 0, 9, 9} : kSquare)};
    const std::vector<Detection> d = {det("a", 0.9, half)};
    EXPECT_EQ(average_precision(g, d, 0, 0.5, ApMethod::voc11, c).ap, 0.0);
    EXPECT_EQ(average_precision(g, d, 0, 0.5, ApMethod::all_points, c).ap, 0.0);
    EXPECT_EQ(average_precision(g, d, 0, 0.5, ApMethod::coco101, c).ap, 1.0);
  }
}

// Ground truths A = [0, 10]^2 and B = [2, 12] x [0, 10] in one image. Detection 1 (0.9) is A:
// IoU 1 with A. Detection 2 (0.8) is [0.5, 10.5] x [0, 10]: IoU 95/105 = 0.905 with A (taken),
// 85/115 = 0.739 with B.
//   voc_eval.py: detection 2's best is A, already matched -> FP: precision 1, 1/2; recall 1/2, 1/2
//     all_points 1/2 * 1 = 0.5; voc11 t = 0 .. 0.5 -> 1 (6 levels), the rest 0 -> 6/11
//   pycocotools: A is taken, so detection 2 takes B -> TP: precision 1, 1; recall 1/2, 1 -> 1
TEST(Detection, VocAndCocoMatchingDifferOnASecondOverlap) {
  const std::vector<GroundTruth> g = {gt("a", kSquare), gt("a", {2, 0, 12, 10})};
  const std::vector<Detection> d = {det("a", 0.9, kSquare), det("a", 0.8, {0.5, 0, 10.5, 10})};
  EXPECT_DOUBLE_EQ(average_precision(g, d, 0, 0.5, ApMethod::all_points, kCont).ap, 0.5);
  EXPECT_NEAR(average_precision(g, d, 0, 0.5, ApMethod::voc11, kCont).ap, 6.0 / 11, 1e-12);
  EXPECT_DOUBLE_EQ(average_precision(g, d, 0, 0.5, ApMethod::coco101, kCont).ap, 1.0);
}

namespace {

// A second, deliberately plain implementation: O(n^2) matching written from voc_eval.py and
// COCOeval.evaluateImg, and the envelope as a max over the tail instead of a backward sweep.
struct Reference {
  std::vector<double> precision, recall;
  int ignored = 0, tp = 0, fp = 0;
};

double iou_ref(const Box& a, const Box& b, bool pixels) {
  const double e = pixels ? 1 : 0;
  const double iw = std::max(std::min(a.x2, b.x2) - std::max(a.x1, b.x1) + e, 0.0);
  const double ih = std::max(std::min(a.y2, b.y2) - std::max(a.y1, b.y1) + e, 0.0);
  const double inter = iw * ih;
  return inter / ((a.x2 - a.x1 + e) * (a.y2 - a.y1 + e) + (b.x2 - b.x1 + e) * (b.y2 - b.y1 + e) - inter);
}

Reference reference_curve(const std::vector<GroundTruth>& g, const std::vector<Detection>& d, int cls, double t,
                          bool coco) {
  std::vector<std::pair<double, size_t>> order;  // (-score, index): ties by input order
  for (size_t i = 0; i < d.size(); ++i)
    if (d[i].cls == cls) order.push_back({-d[i].score, i});
  std::sort(order.begin(), order.end());
  int npos = 0;
  for (const GroundTruth& x : g) npos += x.cls == cls && !x.difficult;
  std::vector<bool> used(g.size(), false);
  Reference r;
  for (const auto& [neg_score, i] : order) {
    long m = -1;
    if (!coco) {
      double ovmax = -1;
      for (size_t j = 0; j < g.size(); ++j)
        if (g[j].cls == cls && g[j].image == d[i].image && iou_ref(d[i].box, g[j].box, true) > ovmax)
          ovmax = iou_ref(d[i].box, g[j].box, true), m = long(j);
      if (m >= 0 && !(ovmax > t)) m = -1;
      if (m >= 0 && !g[size_t(m)].difficult && used[size_t(m)]) m = -1;  // duplicate
    } else {
      for (bool want_difficult : {false, true}) {
        double best = t;
        for (size_t j = 0; j < g.size(); ++j) {
          if (g[j].cls != cls || g[j].image != d[i].image || g[j].difficult != want_difficult) continue;
          if (!g[j].difficult && used[j]) continue;
          const double o = iou_ref(d[i].box, g[j].box, false);
          if (o >= best) best = o, m = long(j);
        }
        if (m >= 0) break;
      }
    }
    if (m >= 0 && g[size_t(m)].difficult) {
      ++r.ignored;
      continue;
    }
    if (m >= 0) used[size_t(m)] = true, ++r.tp;
    else ++r.fp;
    r.precision.push_back(double(r.tp) / (r.tp + r.fp));
    r.recall.push_back(double(r.tp) / npos);
  }
  return r;
}

double tail_max(const std::vector<double>& v, size_t from) {
  double m = 0;
  for (size_t j = from; j < v.size(); ++j) m = std::max(m, v[j]);
  return m;
}

double reference_all_points(const Reference& r) {  // sum of recall steps times the envelope
  double ap = 0;
  for (size_t i = 0; i < r.recall.size(); ++i) ap += (r.recall[i] - (i ? r.recall[i - 1] : 0)) * tail_max(r.precision, i);
  return ap;
}

double reference_coco101(const Reference& r) {
  double sum = 0;
  for (int k = 0; k <= 100; ++k)
    for (size_t i = 0; i < r.recall.size(); ++i)
      if (r.recall[i] >= k / 100.0) {
        sum += tail_max(r.precision, i);
        break;
      }
  return sum / 101;
}

}  // namespace

// 200 random detections over 25 images and 3 classes, scores on a 0.05 grid (so many ties),
// 10% difficult ground truths; every class's curve and AP against the plain implementation
// above, at three thresholds.
TEST(Detection, AgreesWithAPlainReimplementation) {
  Generator rng(7);
  auto uniform_int = [&](int n) { return int(rng.next_u64() % uint64_t(n)); };
  auto random_box = [&] {
    const double x = uniform_int(80), y = uniform_int(80);
    return Box{x, y, x + 8 + uniform_int(30), y + 8 + uniform_int(30)};
  };
  std::vector<GroundTruth> g;
  for (int i = 0; i < 90; ++i)
    g.push_back({"img" + std::to_string(uniform_int(25)), uniform_int(3), random_box(), uniform_int(10) == 0});
  std::vector<Detection> d;
  for (int i = 0; i < 200; ++i) {
    const double score = uniform_int(20) * 0.05;
    if (uniform_int(10) < 6) {  // a jittered ground truth, sometimes of the wrong class
      const GroundTruth& s = g[size_t(uniform_int(int(g.size())))];
      const Box b = {s.box.x1 + uniform_int(9) - 4, s.box.y1 + uniform_int(9) - 4, s.box.x2 + uniform_int(9) - 4,
                     s.box.y2 + uniform_int(9) - 4};
      d.push_back({s.image, uniform_int(8) == 0 ? uniform_int(3) : s.cls, score, b});
    } else {
      d.push_back({"img" + std::to_string(uniform_int(25)), uniform_int(3), score, random_box()});
    }
  }
  Reference seen;  // what the data exercised, summed over classes and thresholds
  for (double t : {0.3, 0.5, 0.7})
    for (int cls = 0; cls < 3; ++cls) {
      const Reference voc = reference_curve(g, d, cls, t, false), coco = reference_curve(g, d, cls, t, true);
      const ClassAp a = average_precision(g, d, cls, t, ApMethod::all_points, kPix);
      const ClassAp c = average_precision(g, d, cls, t, ApMethod::coco101, kCont);
      ASSERT_EQ(a.precision, voc.precision) << "class " << cls << " threshold " << t;
      ASSERT_EQ(a.recall, voc.recall);
      ASSERT_EQ(c.precision, coco.precision) << "class " << cls << " threshold " << t;
      ASSERT_EQ(c.recall, coco.recall);
      EXPECT_NEAR(a.ap, reference_all_points(voc), 1e-12) << "class " << cls << " threshold " << t;
      EXPECT_NEAR(c.ap, reference_coco101(coco), 1e-12) << "class " << cls << " threshold " << t;
      seen.tp += voc.tp + coco.tp, seen.fp += voc.fp + coco.fp, seen.ignored += voc.ignored + coco.ignored;
    }
  EXPECT_GT(seen.tp, 100);
  EXPECT_GT(seen.fp, 100);
  EXPECT_GT(seen.ignored, 3);
}

// Every detection exact: AP 1 at every threshold. Detections cropped to [0, 10] x [0, 7] inside
// [0, 10]^2: IoU 70/100 = 0.7, a TP at thresholds 0.50 .. 0.70 (5 of 10, COCO's >=) and an FP at
// 0.75 .. 0.95: mAP@[.5:.95] = 5/10 = 0.5, mAP50 = 1, mAP75 = 0.
TEST(Detection, CocoMapPerfectAndAtIou07) {
  std::vector<GroundTruth> g;
  std::vector<Detection> exact, cropped;
  for (int i = 0; i < 4; ++i) {
    const std::string im = "img" + std::to_string(i);
    g.push_back(gt(im, kSquare, false, i % 2));
    exact.push_back(det(im, 0.5 + 0.1 * i, kSquare, i % 2));
    cropped.push_back(det(im, 0.5 + 0.1 * i, {0, 0, 10, 7}, i % 2));
  }
  const CocoMapResult p = coco_map(g, exact, 2);
  EXPECT_EQ(p.map, 1.0);
  EXPECT_EQ(p.map50, 1.0);
  EXPECT_EQ(p.map75, 1.0);
  ASSERT_EQ(p.thresholds.size(), 10u);
  EXPECT_EQ(p.thresholds[4], 0.7);
  const CocoMapResult c = coco_map(g, cropped, 2);
  EXPECT_DOUBLE_EQ(c.map, 0.5);
  EXPECT_EQ(c.map50, 1.0);
  EXPECT_EQ(c.map75, 0.0);
  EXPECT_EQ(c.per_threshold[4].map, 1.0);  // 0.70: IoU 0.7 >= 0.7
  EXPECT_EQ(c.per_threshold[5].map, 0.0);  // 0.75
  EXPECT_EQ(c.per_threshold[4].per_class.size(), 2u);
}

TEST(Detection, BadInputThrows) {
  const std::vector<GroundTruth> g = {gt("a", kSquare)};
  const std::vector<Detection> d = {det("a", 0.9, kSquare)};
  EXPECT_THROW(mean_average_precision(g, {det("a", 0.9, kSquare, 2)}, 2, 0.5, ApMethod::all_points, kPix), Error);
  EXPECT_THROW(coco_map({gt("a", kSquare, false, 5)}, d, 2), Error);
  EXPECT_THROW(average_precision({gt("a", kSquare, false, -1)}, d, 0, 0.5, ApMethod::voc11, kPix), Error);
  EXPECT_THROW(average_precision(g, d, -1, 0.5, ApMethod::voc11, kPix), Error);
  EXPECT_THROW(average_precision(g, {det("a", NAN, kSquare)}, 0, 0.5, ApMethod::voc11, kPix), Error);
  EXPECT_THROW(average_precision(g, {det("a", INFINITY, kSquare)}, 0, 0.5, ApMethod::voc11, kPix), Error);
  EXPECT_THROW(average_precision(g, {det("a", 0.9, {0, 0, NAN, 10})}, 0, 0.5, ApMethod::voc11, kPix), Error);
  EXPECT_THROW(average_precision({gt("a", {0, 10, 10, 0})}, d, 0, 0.5, ApMethod::voc11, kPix), Error);
  EXPECT_THROW(average_precision(g, d, 0, 1.5, ApMethod::voc11, kPix), Error);
  EXPECT_THROW(mean_average_precision(g, d, 0, 0.5, ApMethod::voc11, kPix), Error);
  try {
    coco_map(g, {det("a", 0.9, kSquare), det("b", 0.8, {20, 0, 10, 5})}, 1);
    FAIL() << "an inverted box was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("detection 1 (image 'b')"), std::string::npos) << m;
    EXPECT_NE(m.find("x2 >= x1"), std::string::npos) << m;
    EXPECT_NE(m.find("hint:"), std::string::npos) << m;
  }
}

TEST(Detection, PrCurveSvg) {
  const std::vector<GroundTruth> g = {gt("a", kSquare), gt("b", kSquare)};
  const std::vector<Detection> d = {det("a", 0.9, kSquare), det("a", 0.8, kSquare), det("b", 0.7, kSquare),
                                    det("a", 0.6, kSquare, 1)};
  const MapResult r = mean_average_precision(g, d, 2, 0.5, ApMethod::all_points, kPix);
  std::vector<ClassAp> curves = r.per_class;
  curves.push_back(r.per_class[0]);
  curves.back().cls = 7;
  const std::string svg = pr_curve_svg(curves, {"crack", "scratch & dent"}, "PR <test>");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("crack (AP 0.833)"), std::string::npos);  // 5/6 as DuplicateIsFalsePositive
  EXPECT_NE(svg.find("scratch &amp; dent (no ground truth)"), std::string::npos);
  EXPECT_NE(svg.find("class 7 (AP 0.833)"), std::string::npos);
  EXPECT_NE(svg.find("PR &lt;test&gt;"), std::string::npos);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find(">recall<"), std::string::npos);
}
