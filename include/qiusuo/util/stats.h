// Summaries of repeated measurements (an experiment's seeds): the mean and the sample
// standard deviation.
#pragma once
#include <cmath>
#include <vector>

namespace qs::util {

// 0 for an empty vector.
inline double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

// The sample standard deviation (n - 1); 0 for fewer than two values.
inline double sd_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

}  // namespace qs::util
