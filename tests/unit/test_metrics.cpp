// ROC curve, AUC, bootstrap interval and operating points (qiusuo/metrics/roc.h).
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/error.h"
#include "qiusuo/metrics/roc.h"
#include "qiusuo/tensor.h"

using namespace qs;
using namespace qs::metrics;

// sklearn.metrics.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], drop_intermediate=False)
// -> fpr [0, 0, 0.5, 0.5, 1], tpr [0, 0.5, 0.5, 1, 1], thresholds [inf, 0.8, 0.4, 0.35, 0.1];
// roc_auc_score -> 0.75.
TEST(Roc, CurveAndAreaAsScikitLearn) {
  const std::vector<double> s = {0.1, 0.4, 0.35, 0.8};
  const std::vector<int> y = {0, 0, 1, 1};
  const std::vector<RocPoint> c = roc_curve(s, y);
  ASSERT_EQ(c.size(), 5u);
  const double fpr[] = {0, 0, 0.5, 0.5, 1}, tpr[] = {0, 0.5, 0.5, 1, 1}, th[] = {INFINITY, 0.8, 0.4, 0.35, 0.1};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(c[i].fpr, fpr[i]);
    EXPECT_EQ(c[i].tpr, tpr[i]);
    EXPECT_EQ(c[i].threshold, th[i]);
  }
  EXPECT_DOUBLE_EQ(roc_auc(s, y), 0.75);
  // Ties count one half: positives {0.5, 0.9} against negatives {0.5, 0.2} -> 3.5 / 4; the
  // same as the trapezoids under the curve.
  const std::vector<double> t = {0.5, 0.5, 0.2, 0.9};
  const std::vector<int> ty = {1, 0, 0, 1};
  EXPECT_DOUBLE_EQ(roc_auc(t, ty), 0.875);
  const std::vector<RocPoint> tc = roc_curve(t, ty);
  double area = 0;
  for (size_t i = 1; i < tc.size(); ++i) area += (tc[i].fpr - tc[i - 1].fpr) * (tc[i].tpr + tc[i - 1].tpr) / 2;
  EXPECT_DOUBLE_EQ(area, 0.875);
  EXPECT_THROW(roc_auc({0.1, 0.2}, {1, 1}), Error);
  EXPECT_THROW(roc_auc({0.1, 0.2}, {1, 2}), Error);
  EXPECT_THROW(roc_auc({0.1}, {1, 0}), Error);
}

TEST(Roc, BootstrapIntervalAndOperatingPoints) {
  Generator g(1);
  std::vector<double> s;
  std::vector<int> y;
  for (int i = 0; i < 200; ++i) {
    y.push_back(i % 3 == 0);
    s.push_back(g.next_normal() + (y.back() ? 1.0 : 0.0));
  }
  const AucInterval a = bootstrap_auc(s, y, 500, 0.95, 3), b = bootstrap_auc(s, y, 500, 0.95, 3);
  EXPECT_EQ(a.lo, b.lo);
  EXPECT_EQ(a.hi, b.hi);
  EXPECT_EQ(a.resamples, 500);
  EXPECT_DOUBLE_EQ(a.auc, roc_auc(s, y));
  EXPECT_LT(a.lo, a.auc);
  EXPECT_GT(a.hi, a.auc);
  EXPECT_GT(a.auc, 0.65);  // a one-sd shift: about 0.76 in expectation
  const AucInterval narrow = bootstrap_auc(s, y, 500, 0.5, 3);
  EXPECT_GT(narrow.lo, a.lo);
  EXPECT_LT(narrow.hi, a.hi);
  // A perfect classifier: every resample has AUC 1.
  const AucInterval p = bootstrap_auc({0.1, 0.2, 0.8, 0.9}, {0, 0, 1, 1}, 50);
  EXPECT_EQ(p.lo, 1.0);
  EXPECT_EQ(p.hi, 1.0);

  const std::vector<RocPoint> c = roc_curve(s, y);
  const OperatingPoint s90 = at_sensitivity(c, 0.9), sp90 = at_specificity(c, 0.9), j = youden(c);
  EXPECT_GE(s90.sensitivity, 0.9);
  EXPECT_GE(sp90.specificity, 0.9);
  EXPECT_GE(j.sensitivity + j.specificity, s90.sensitivity + s90.specificity);
  EXPECT_GE(j.sensitivity + j.specificity, sp90.sensitivity + sp90.specificity);
}
