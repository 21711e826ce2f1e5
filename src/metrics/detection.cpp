// IoU, average precision and mAP for object detection (include/qiusuo/metrics/detection.h).
#include "qiusuo/metrics/detection.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "qiusuo/error.h"
#include "qiusuo/util/svg_plot.h"

namespace qs::metrics {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_box(const Box& b, const char* what, size_t i, const std::string& image) {
  QS_CHECK(std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2),
           "detection metrics: {} {} (image '{}') has a non-finite coordinate in box ({}, {}, {}, {})", what, i,
           image, b.x1, b.y1, b.x2, b.y2);
  QS_CHECK(b.x2 >= b.x1 && b.y2 >= b.y1,
           "detection metrics: {} {} (image '{}') has an inverted box ({}, {}, {}, {}): expected x2 >= x1 and "
           "y2 >= y1; hint: boxes are corners (x1, y1, x2, y2), not (x, y, width, height)",
           what, i, image, b.x1, b.y1, b.x2, b.y2);
}

// n_classes < 0: class ids need only be non-negative.
void check_inputs(const std::vector<GroundTruth>& gts, const std::vector<Detection>& dets, int n_classes) {
  auto check_cls = [&](int c, const char* what, size_t i, const std::string& image) {
    QS_CHECK(c >= 0 && (n_classes < 0 || c < n_classes), "detection metrics: {} {} (image '{}') has class {}, "
             "expected one in [0, {})", what, i, image, c, n_classes < 0 ? std::string("inf") : std::to_string(n_classes));
  };
  for (size_t i = 0; i < gts.size(); ++i) {
    check_cls(gts[i].cls, "ground truth", i, gts[i].image);
    check_box(gts[i].box, "ground truth", i, gts[i].image);
  }
  for (size_t i = 0; i < dets.size(); ++i) {
    check_cls(dets[i].cls, "detection", i, dets[i].image);
    QS_CHECK(std::isfinite(dets[i].score), "detection metrics: detection {} (image '{}') has score {}, expected a "
             "finite number", i, dets[i].image, dets[i].score);
    check_box(dets[i].box, "detection", i, dets[i].image);
  }
}

void check_threshold(double t) {
  QS_CHECK(t >= 0 && t <= 1, "detection metrics: IoU threshold {} is not in [0, 1]", t);
}

// One class: its ground truths, and its detections in score order, each with the IoUs to the
// ground truths of its image (computed once, matched at any threshold).
struct ClassData {
  int n_gt = 0;                 // non-difficult
  std::vector<char> difficult;  // per ground truth of the class
  struct Det {
    std::vector<int> gts;  // indices into difficult, in input order
    std::vector<double> ious;
  };
  std::vector<Det> dets;
};

ClassData prepare(const std::vector<GroundTruth>& gts, const std::vector<Detection>& dets, int cls,
                  BoxConvention conv) {
  ClassData d;
  std::unordered_map<std::string, std::vector<std::pair<int, size_t>>> by_image;  // (index in d, in gts)
  for (size_t i = 0; i < gts.size(); ++i)
    if (gts[i].cls == cls) {
      by_image[gts[i].image].push_back({int(d.difficult.size()), i});
      d.difficult.push_back(gts[i].difficult);
      d.n_gt += !gts[i].difficult;
    }
  std::vector<size_t> order;
  for (size_t i = 0; i < dets.size(); ++i)
    if (dets[i].cls == cls) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return dets[a].score > dets[b].score; });
  for (size_t i : order) {
    ClassData::Det e;
    const auto it = by_image.find(dets[i].image);
    if (it != by_image.end())
      for (const auto& [local, g] : it->second) {
        e.gts.push_back(local);
        e.ious.push_back(iou(dets[i].box, gts[g].box, conv));
      }
    d.dets.push_back(std::move(e));
  }
  return d;
}

enum Outcome : signed char { kIgnored = -1, kFp = 0, kTp = 1 };

// voc_eval.py: the best IoU over all the image's ground truths (the first on ties), > t.
std::vector<Outcome> match_voc(const ClassData& d, double t) {
  std::vector<char> taken(d.difficult.size(), 0);
  std::vector<Outcome> out;
  for (const ClassData::Det& e : d.dets) {
    int best = -1;
    for (size_t j = 0; j < e.gts.size(); ++j)
      if (best < 0 || e.ious[j] > e.ious[size_t(best)]) best = int(j);
    if (best < 0 || !(e.ious[size_t(best)] > t)) {
      out.push_back(kFp);
      continue;
    }
    const int g = e.gts[size_t(best)];
    if (d.difficult[size_t(g)]) out.push_back(kIgnored);
    else if (taken[size_t(g)]) out.push_back(kFp);
    else out.push_back(kTp), taken[size_t(g)] = 1;
  }
  return out;
}

// pycocotools' evaluateImg: the free non-difficult ground truth with the best IoU >= t (the last
// on ties), else the difficult one with the best IoU >= t.
std::vector<Outcome> match_coco(const ClassData& d, double t) {
  std::vector<char> taken(d.difficult.size(), 0);
  std::vector<Outcome> out;
  for (const ClassData::Det& e : d.dets) {
    int m = -1;
    for (int pass = 0; pass < 2 && m < 0; ++pass) {
      double best = t;
      for (size_t j = 0; j < e.gts.size(); ++j) {
        const size_t g = size_t(e.gts[j]);
        if (d.difficult[g] != pass || taken[g] || e.ious[j] < best) continue;
        best = e.ious[j], m = int(g);
      }
    }
    if (m < 0) out.push_back(kFp);
    else if (d.difficult[size_t(m)]) out.push_back(kIgnored);
    else out.push_back(kTp), taken[size_t(m)] = 1;
  }
  return out;
}

// voc_ap(use_07_metric=True), with levels k / 10.
double ap_voc11(const std::vector<double>& prec, const std::vector<double>& rec) {
  double sum = 0;
  for (int k = 0; k <= 10; ++k) {
    const double t = k / 10.0;
    double p = 0;
    for (size_t i = 0; i < rec.size(); ++i)
      if (rec[i] >= t) p = std::max(p, prec[i]);
    sum += p;
  }
  return sum / 11;
}

// voc_ap(use_07_metric=False): sentinels (0, 0) and (1, 0), the envelope from the right, and
// the rectangles where recall changes.
double ap_all_points(const std::vector<double>& prec, const std::vector<double>& rec) {
  std::vector<double> mrec = {0.0}, mpre = {0.0};
  mrec.insert(mrec.end(), rec.begin(), rec.end()), mrec.push_back(1.0);
  mpre.insert(mpre.end(), prec.begin(), prec.end()), mpre.push_back(0.0);
  for (size_t i = mpre.size() - 1; i > 0; --i) mpre[i - 1] = std::max(mpre[i - 1], mpre[i]);
  double ap = 0;
  for (size_t i = 0; i + 1 < mrec.size(); ++i)
    if (mrec[i + 1] != mrec[i]) ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
  return ap;
}

// COCOeval.accumulate: the envelope, then np.searchsorted(rec, r, side='left') per level k / 100.
double ap_coco101(std::vector<double> prec, const std::vector<double>& rec) {
  for (size_t i = prec.size(); i > 1; --i) prec[i - 2] = std::max(prec[i - 2], prec[i - 1]);
  double sum = 0;
  for (int k = 0; k <= 100; ++k) {
    const size_t i = size_t(std::lower_bound(rec.begin(), rec.end(), k / 100.0) - rec.begin());
    if (i < prec.size()) sum += prec[i];
  }
  return sum / 101;
}

ClassAp score_class(const ClassData& d, int cls, double t, ApMethod method) {
  const std::vector<Outcome> outcomes = method == ApMethod::coco101 ? match_coco(d, t) : match_voc(d, t);
  ClassAp r;
  r.cls = cls, r.n_gt = d.n_gt, r.n_det = int(d.dets.size());
  if (d.n_gt == 0) {
    r.ap = kNaN;
    return r;
  }
  int64_t tp = 0, fp = 0;
  for (Outcome o : outcomes) {
    if (o == kIgnored) continue;
    (o == kTp ? tp : fp) += 1;
    r.precision.push_back(double(tp) / double(tp + fp));
    r.recall.push_back(double(tp) / double(d.n_gt));
  }
  switch (method) {
    case ApMethod::voc11: r.ap = ap_voc11(r.precision, r.recall); break;
    case ApMethod::all_points: r.ap = ap_all_points(r.precision, r.recall); break;
    case ApMethod::coco101: r.ap = ap_coco101(r.precision, r.recall); break;
  }
  return r;
}

double mean_over_defined(const std::vector<double>& v) {
  double sum = 0;
  int n = 0;
  for (double x : v)
    if (!std::isnan(x)) sum += x, ++n;
  return n ? sum / n : kNaN;
}

double mean_ap(const std::vector<ClassAp>& per_class) {
  std::vector<double> aps;
  for (const ClassAp& c : per_class) aps.push_back(c.ap);
  return mean_over_defined(aps);
}

}  // namespace

double iou(const Box& a, const Box& b, BoxConvention conv) {
  const double one = conv == BoxConvention::voc_pixels ? 1.0 : 0.0;  // the +1 of inclusive pixels
  const double iw = std::max(0.0, std::min(a.x2, b.x2) - std::max(a.x1, b.x1) + one);
  const double ih = std::max(0.0, std::min(a.y2, b.y2) - std::max(a.y1, b.y1) + one);
  const double inter = iw * ih;
  const double uni = (a.x2 - a.x1 + one) * (a.y2 - a.y1 + one) + (b.x2 - b.x1 + one) * (b.y2 - b.y1 + one) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

ClassAp average_precision(const std::vector<GroundTruth>& gts, const std::vector<Detection>& dets, int cls,
                          double iou_threshold, ApMethod method, BoxConvention conv) {
  QS_CHECK(cls >= 0, "average_precision: class {} is negative", cls);
  check_inputs(gts, dets, -1);
  check_threshold(iou_threshold);
  return score_class(prepare(gts, dets, cls, conv), cls, iou_threshold, method);
}

MapResult mean_average_precision(const std::vector<GroundTruth>& gts, const std::vector<Detection>& dets,
                                 int n_classes, double iou_threshold, ApMethod method, BoxConvention conv) {
  QS_CHECK(n_classes >= 1, "mean_average_precision: n_classes is {}, expected at least 1", n_classes);
  check_inputs(gts, dets, n_classes);
  check_threshold(iou_threshold);
  MapResult r;
  for (int c = 0; c < n_classes; ++c)
    r.per_class.push_back(score_class(prepare(gts, dets, c, conv), c, iou_threshold, method));
  r.map = mean_ap(r.per_class);
  return r;
}

CocoMapResult coco_map(const std::vector<GroundTruth>& gts, const std::vector<Detection>& dets, int n_classes) {
  QS_CHECK(n_classes >= 1, "coco_map: n_classes is {}, expected at least 1", n_classes);
  check_inputs(gts, dets, n_classes);
  CocoMapResult r;
  for (int k = 0; k < 10; ++k) r.thresholds.push_back((50 + 5 * k) / 100.0);
  r.per_threshold.resize(r.thresholds.size());
  for (int c = 0; c < n_classes; ++c) {
    const ClassData d = prepare(gts, dets, c, BoxConvention::continuous);
    for (size_t k = 0; k < r.thresholds.size(); ++k)
      r.per_threshold[k].per_class.push_back(score_class(d, c, r.thresholds[k], ApMethod::coco101));
  }
  std::vector<double> maps;
  for (MapResult& m : r.per_threshold) maps.push_back(m.map = mean_ap(m.per_class));
  r.map = mean_over_defined(maps);  // every threshold has the same classes with ground truth
  r.map50 = maps[0], r.map75 = maps[5];
  return r;
}

std::string pr_curve_svg(const std::vector<ClassAp>& curves, const std::vector<std::string>& class_names,
                         const std::string& title) {
  std::vector<util::PlotSeries> series;
  for (const ClassAp& c : curves) {
    const std::string name = c.cls >= 0 && size_t(c.cls) < class_names.size() ? class_names[size_t(c.cls)]
                                                                               : fmt::format("class {}", c.cls);
    series.push_back({std::isnan(c.ap) ? name + " (no ground truth)" : fmt::format("{} (AP {:.3f})", name, c.ap),
                      c.recall, c.precision});
  }
  util::PlotOptions po;
  po.title = title, po.x_label = "recall", po.y_label = "precision";
  return util::svg_line_plot(series, po);
}

}  // namespace qs::metrics
