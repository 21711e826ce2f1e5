// Fused layer_norm / rms_norm rows over contiguous [M, N] data (N = the normalised
// size), shared by the optimised forward kernels and the backward (every build).
// Statistics are accumulated in double; rows are split across OpenMP threads. The
// weight/bias gradients are summed per thread, then the threads' sums in thread order.
#pragma once
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace qs::kernels {

struct RowStats {
  double mean, rstd;
};
// layer_norm: mean and 1/sqrt(biased var + eps). rms_norm: mean 0 and 1/sqrt(mean x^2 + eps).
template <class T> RowStats row_stats(const T* x, int64_t n, double eps, bool rms) {
  double mu = 0, ss = 0;
  if (!rms) {
#pragma omp simd reduction(+ : mu)
    for (int64_t j = 0; j < n; ++j) mu += double(x[j]);
    mu /= double(n);
  }
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < n; ++j) ss += (double(x[j]) - mu) * (double(x[j]) - mu);
  return {mu, 1.0 / std::sqrt(ss / double(n) + eps)};
}

inline bool norm_parallel(int64_t m, int64_t n) { return m > 1 && m * n > 16384; }

// y = (x - mean) rstd w + b  (w, b may be null)
template <class T>
void norm_forward(const T* x, const T* w, const T* b, T* y, int64_t m, int64_t n, double eps, bool rms) {
#pragma omp parallel for if (norm_parallel(m, n))
  for (int64_t r = 0; r < m; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    RowStats s = row_stats(xr, n, eps, rms);
    T mu = T(s.mean), rstd = T(s.rstd);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      T v = (xr[j] - mu) * rstd;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
  }
}

// With xhat = (x - mean) rstd and gy = g w:
//   dx = rstd (gy - mean(gy) - xhat mean(gy xhat))     (layer_norm)
//   dx = rstd (gy - xhat mean(gy xhat))                (rms_norm: mean is 0)
//   dw = sum over rows of g xhat,  db = sum over rows of g
// dx, dw, db may each be null (not needed).
template <class T>
void norm_backward(const T* g, const T* x, const T* w, T* dx, T* dw, T* db, int64_t m, int64_t n, double eps, bool rms) {
  int threads = norm_parallel(m, n) ? omp_get_max_threads() : 1;
  bool need_wb = dw || db;
  std::vector<double> part(need_wb ? size_t(threads) * size_t(2 * n) : 0, 0.0);
#pragma omp parallel num_threads(threads)
  {
    double* pw = need_wb ? part.data() + size_t(omp_get_thread_num()) * size_t(2 * n) : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < m; ++r) {
      const T *xr = x + r * n, *gr = g + r * n;
      RowStats s = row_stats(xr, n, eps, rms);
      double sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t j = 0; j < n; ++j) {
        double gy = double(gr[j]) * (w ? double(w[j]) : 1.0);
        sg += gy;
        sgx += gy * (double(xr[j]) - s.mean) * s.rstd;
      }
      T a = rms ? T(0) : T(sg / double(n)), c = T(sgx / double(n)), mu = T(s.mean), rstd = T(s.rstd);
      if (dx) {
        T* dr = dx + r * n;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          T gy = gr[j] * (w ? w[j] : T(1));
          dr[j] = rstd * (gy - a - (xr[j] - mu) * rstd * c);
        }
      }
      if (need_wb)
        for (int64_t j = 0; j < n; ++j) {
          pw[j] += double(gr[j]) * (double(xr[j]) - s.mean) * s.rstd;
          pw[n + j] += double(gr[j]);
        }
    }
  }
  for (int64_t j = 0; j < n && need_wb; ++j) {
    double sw = 0, sb = 0;
    for (int t = 0; t < threads; ++t) sw += part[size_t(t) * size_t(2 * n) + size_t(j)], sb += part[size_t(t) * size_t(2 * n) + size_t(n + j)];
    if (dw) dw[j] = T(sw);
    if (db) db[j] = T(sb);
  }
}

}  // namespace qs::kernels
