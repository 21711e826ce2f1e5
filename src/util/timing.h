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

// Seconds per call of fn, timed over enough calls to last about min_seconds (at least
// min_iters), after one untimed call: short calls are not timed one clock tick at a time.
inline double seconds_per_call_for(const std::function<void()>& fn, double min_seconds, int min_iters = 3) {
  const double once = seconds_per_call(fn, 1, 1);
  const int iters = std::max(min_iters, int(std::min(1e6, min_seconds / std::max(once, 1e-9))));
  return seconds_per_call(fn, 0, iters);
}

// The median of a non-empty list (the mean of the middle two for an even count).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// a against b: `rounds` rounds, each timing a then b over about min_seconds apiece. The
// machine's speed drifts over seconds (a shared VM's quiet and busy states), so each round
// compares like with like; the medians of a's and b's times and of the per-round ratios
// a / b (> 1: b is faster). rounds >= 1.
struct AlternatingTimes {
  double a = 0, b = 0, ratio = 0;
};
inline AlternatingTimes alternating(const std::function<void()>& a, const std::function<void()>& b, int rounds,
                                    double min_seconds) {
  std::vector<double> ta, tb, r;
  for (int k = 0; k < rounds; ++k) {
    ta.push_back(seconds_per_call_for(a, min_seconds));
    tb.push_back(seconds_per_call_for(b, min_seconds));
    r.push_back(ta.back() / tb.back());
  }
  return {median(ta), median(tb), median(r)};
}

}  // namespace qs::util
