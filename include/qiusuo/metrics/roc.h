// ROC analysis for binary classifiers: the curve, its area, a bootstrap interval, and
// operating points (the CT application's metrics; docs/ct.md).
//
// scores: higher means more likely positive; labels: 1 positive, 0 negative.
#pragma once
#include <cstdint>
#include <vector>

namespace qs::metrics {

struct RocPoint {
  double threshold;  // predict positive when score >= threshold (the first point's is +inf)
  double fpr, tpr;
};

// The curve at every distinct score, thresholds descending from +inf (0, 0) to the lowest
// score (1, 1); tied scores form one step, as scikit-learn's roc_curve(drop_intermediate=False).
// Errors: sizes differ, labels other than 0/1, no positive or no negative.
std::vector<RocPoint> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);

// The area under the curve: the probability that a random positive scores above a random
// negative, ties counting one half (Mann-Whitney U / (P N); equal to the trapezoidal area
// under roc_curve and to scikit-learn's roc_auc_score). Errors as roc_curve.
double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels);

struct AucInterval {
  double auc = 0, lo = 0, hi = 0;  // the AUC and the percentile interval
  int resamples = 0;               // bootstrap samples used (those with both classes)
};
// Percentile bootstrap (Efron): `resamples` samples of the cases drawn with replacement,
// the AUC of each, and the (1 - level)/2 and (1 + level)/2 quantiles. Samples holding one
// class only are redrawn. The same seed, the same interval. Errors as roc_curve, level
// outside (0, 1), resamples < 10.
AucInterval bootstrap_auc(const std::vector<double>& scores, const std::vector<int>& labels, int resamples = 1000,
                          double level = 0.95, uint64_t seed = 0);

struct OperatingPoint {
  double threshold = 0, sensitivity = 0, specificity = 0;
};
// The point of the curve with the highest specificity among those with sensitivity >= s.
OperatingPoint at_sensitivity(const std::vector<RocPoint>& curve, double s);
// The point with the highest sensitivity among those with specificity >= s.
OperatingPoint at_specificity(const std::vector<RocPoint>& curve, double s);
// The point maximising Youden's J = sensitivity + specificity - 1.
OperatingPoint youden(const std::vector<RocPoint>& curve);

}  // namespace qs::metrics
