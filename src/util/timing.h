// Wall-clock timing of a repeated call: what `qiusuo bench`, the experiments and the
// pruning report measure latency with.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace qs::util {

// Mean seconds per call of fn after `warm` untimed calls.
inline double seconds_per_call(const std::function<void()>& fn, int warm, int iters) {
  for (int i = 0; i < warm; ++i) fn();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

// The median of a non-empty list (the mean of the middle two for an even count).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace qs::util
