// ROC curve, AUC, bootstrap interval and operating points (include/qiusuo/metrics/roc.h).
#include "qiusuo/metrics/roc.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "qiusuo/error.h"
#include "qiusuo/tensor.h"

namespace qs::metrics {

namespace {

void check(const std::vector<double>& s, const std::vector<int>& y) {
  QS_CHECK(s.size() == y.size(), "roc: {} scores and {} labels", s.size(), y.size());
  int64_t pos = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    QS_CHECK(y[i] == 0 || y[i] == 1, "roc: label {} of case {} is not 0 or 1", y[i], i);
    QS_CHECK(std::isfinite(s[i]), "roc: score {} of case {} is not finite", s[i], i);
    pos += y[i];
  }
  QS_CHECK(pos > 0 && pos < int64_t(y.size()), "roc: needs positives and negatives, got {} of {} positive", pos,
           y.size());
}

// Mann-Whitney with midranks for ties; no checks.
double auc_unchecked(const std::vector<double>& s, const std::vector<int>& y) {
  std::vector<size_t> order(s.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] < s[b]; });
  double rank_sum = 0;
  int64_t pos = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && s[order[j]] == s[order[i]]) ++j;
    const double midrank = 0.5 * double(i + 1 + j);  // ranks i+1 .. j
    for (size_t t = i; t < j; ++t)
      if (y[order[t]] == 1) rank_sum += midrank, ++pos;
    i = j;
  }
  const double neg = double(s.size()) - double(pos);
  return (rank_sum - double(pos) * double(pos + 1) / 2) / (double(pos) * neg);
}

}  // namespace

std::vector<RocPoint> roc_curve(const std::vector<double>& s, const std::vector<int>& y) {
  check(s, y);
  std::vector<size_t> order(s.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  double P = 0;
  for (int v : y) P += v;
  const double N = double(y.size()) - P;
  std::vector<RocPoint> out = {{std::numeric_limits<double>::infinity(), 0, 0}};
  double tp = 0, fp = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && s[order[j]] == s[order[i]]) {
      (y[order[j]] ? tp : fp) += 1;
      ++j;
    }
    out.push_back({s[order[i]], fp / N, tp / P});
    i = j;
  }
  return out;
}

double roc_auc(const std::vector<double>& s, const std::vector<int>& y) {
  check(s, y);
  return auc_unchecked(s, y);
}

AucInterval bootstrap_auc(const std::vector<double>& s, const std::vector<int>& y, int resamples, double level,
                          uint64_t seed) {
  check(s, y);
  QS_CHECK(level > 0 && level < 1, "bootstrap_auc: level {} is not in (0, 1)", level);
  QS_CHECK(resamples >= 10, "bootstrap_auc: at least 10 resamples, got {}", resamples);
  AucInterval r;
  r.auc = auc_unchecked(s, y);
  Generator g(seed);
  const size_t n = s.size();
  std::vector<double> aucs, bs(n);
  std::vector<int> by(n);
  while (int(aucs.size()) < resamples) {
    int pos = 0;
    for (size_t i = 0; i < n; ++i) {
      const size_t k = size_t(g.next_u64() % n);
      bs[i] = s[k], by[i] = y[k], pos += y[k];
    }
    if (pos == 0 || pos == int(n)) continue;  // one class only: no AUC; redrawn
    aucs.push_back(auc_unchecked(bs, by));
  }
  std::sort(aucs.begin(), aucs.end());
  auto quantile = [&](double q) {  // linear interpolation between order statistics (numpy's default)
    const double at = q * double(aucs.size() - 1);
    const size_t a = size_t(std::floor(at)), b = std::min(a + 1, aucs.size() - 1);
    return aucs[a] + (aucs[b] - aucs[a]) * (at - double(a));
  };
  r.lo = quantile((1 - level) / 2), r.hi = quantile((1 + level) / 2), r.resamples = int(aucs.size());
  return r;
}

OperatingPoint at_sensitivity(const std::vector<RocPoint>& c, double s) {
  OperatingPoint best{c.back().threshold, c.back().tpr, 1 - c.back().fpr};
  for (const RocPoint& p : c)
    if (p.tpr >= s && 1 - p.fpr > best.specificity) best = {p.threshold, p.tpr, 1 - p.fpr};
  return best;
}

OperatingPoint at_specificity(const std::vector<RocPoint>& c, double s) {
  OperatingPoint best{c.front().threshold, c.front().tpr, 1 - c.front().fpr};
  for (const RocPoint& p : c)
    if (1 - p.fpr >= s && p.tpr > best.sensitivity) best = {p.threshold, p.tpr, 1 - p.fpr};
  return best;
}

OperatingPoint youden(const std::vector<RocPoint>& c) {
  OperatingPoint best{c.front().threshold, c.front().tpr, 1 - c.front().fpr};
  for (const RocPoint& p : c)
    if (p.tpr - p.fpr > best.sensitivity + best.specificity - 1) best = {p.threshold, p.tpr, 1 - p.fpr};
  return best;
}

}  // namespace qs::metrics
