// The machine's memory bandwidth, so that memory-bound workloads (LM decoding at batch 1:
// every weight read once per token) can be reported as a fraction of what it can move.
//   mem_read_bw   STREAM-style read: a 512 MiB buffer (far beyond any cache here) summed with
//                 AVX2 loads into 8 accumulators, at 1 thread and at the bench's threads;
//                 GB/s of the best of 7 passes each, as STREAM reports (GB = 1e9 bytes): the
//                 ceiling a memory-bound kernel can approach on this machine now
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "bench/bench.h"
#include "qiusuo/tensor.h"

namespace qs::bench {

namespace {

float read_all(const float* p, int64_t n, int threads) {
  float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t per = (n / 64 + nt - 1) / nt * 64, lo = std::min(n, per * t), hi = std::min(n, lo + per);
    __m256 a[8];
    for (auto& v : a) v = _mm256_setzero_ps();
    for (int64_t i = lo; i + 64 <= hi; i += 64)
      for (int j = 0; j < 8; ++j) a[j] = _mm256_add_ps(a[j], _mm256_loadu_ps(p + i + 8 * j));
    for (int j = 1; j < 8; ++j) a[0] = _mm256_add_ps(a[0], a[j]);
    alignas(32) float s[8];
    _mm256_store_ps(s, a[0]);
    for (float x : s) total += x;
  }
  return total;
}

std::vector<nlohmann::json> mem_read_bw(const Options& o) {
  const int64_t n = int64_t(512) << 18;  // 2^27 floats = 512 MiB
  Tensor buf = full({n}, 1.0);           // written once: every page is resident
  const float* p = buf.data_ptr<float>();
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  auto gbps = [&](int t) {
    std::vector<double> s;
    volatile float sink = 0;
    for (int rep = 0; rep < 8; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      sink = sink + read_all(p, n, t);
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (rep > 0) s.push_back(double(n) * 4.0 / dt / 1e9);  // the first pass warms up
    }
    return *std::max_element(s.begin(), s.end());
  };
  nlohmann::json r = {{"workload", "mem_read_bw"}, {"buffer_mib", 512}, {"gb_per_s_1_thread", gbps(1)}};
  r["gb_per_s"] = gbps(threads);
  r["bw_threads"] = threads;
  return {r};
}

}  // namespace

std::vector<Workload> memory_workloads() {
  return {{"mem_read_bw", "memory read bandwidth, 512 MiB buffer, 1 thread and --threads (GB/s)", mem_read_bw}};
}

}  // namespace qs::bench
