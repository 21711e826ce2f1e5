// Fused softmax / log_softmax rows, shared by the optimised forward kernel and the
// backward (which runs in every build). The tensor is seen as [O, N, I] with the
// softmax over N: I == 1 is contiguous rows, I > 1 is handled a tile of columns at a
// time so that no transpose is needed. Rows are split across OpenMP threads.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/fast_math.h"

namespace qs::kernels {

struct SoftmaxBlock {
  int64_t outer, n, inner;  // [O, N, I], softmax over N
};
inline SoftmaxBlock softmax_block(const std::vector<int64_t>& shape, int64_t dim) {
  SoftmaxBlock b{1, 1, 1};
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    int64_t s = shape[size_t(d)];
    if (d < dim) b.outer *= s;
    else if (d == dim) b.n = s;
    else b.inner *= s;
  }
  return b;
}

constexpr int64_t kSoftmaxTile = 64;  // columns per tile when I > 1

// Runs fn(o, i0, i1) over every [o, :, i0:i1] slab (i1 - i0 == 1 for rows), threaded.
template <class Fn> void for_each_slab(const SoftmaxBlock& b, Fn fn) {
  int64_t tiles = b.inner == 1 ? 1 : (b.inner + kSoftmaxTile - 1) / kSoftmaxTile;
  int64_t total = b.outer * tiles;
  bool par = b.outer * b.n * b.inner > 8192 && total > 1;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t t = 0; t < total; ++t) {
    int64_t o = t / tiles, i0 = (t % tiles) * kSoftmaxTile;
    fn(o, i0, b.inner == 1 ? 1 : std::min(b.inner, i0 + kSoftmaxTile));
  }
}

// One contiguous row of n: vector reductions along it.
template <class T, bool Log> void softmax_row(const T* x, T* y, int64_t n) {
  T mx = -std::numeric_limits<T>::infinity(), sm = 0;
#pragma omp simd reduction(max : mx)
  for (int64_t k = 0; k < n; ++k) mx = std::max(mx, x[k]);
#pragma omp simd reduction(+ : sm)
  for (int64_t k = 0; k < n; ++k) {
    T e = fast_exp(x[k] - mx);
    if constexpr (!Log) y[k] = e;
    sm += e;
  }
  // log_softmax as (x - m) - log s: subtracting m + log s at once loses the digits of
  // log s when |m| is large.
  T f = Log ? std::log(sm) : T(1) / sm;
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    if constexpr (Log) y[k] = (x[k] - mx) - f;
    else y[k] *= f;
  }
}

// y = softmax(x) (or log_softmax) over N; x, y contiguous [O, N, I].
template <class T, bool Log> void softmax_forward(const T* x, T* y, const SoftmaxBlock& b) {
  for_each_slab(b, [&](int64_t o, int64_t i0, int64_t i1) {
    int64_t w = i1 - i0, I = b.inner;
    const T* xs = x + o * b.n * I + i0;
    T* ys = y + o * b.n * I + i0;
    if (I == 1) return softmax_row<T, Log>(xs, ys, b.n);
    T m[kSoftmaxTile], s[kSoftmaxTile];
    for (int64_t i = 0; i < w; ++i) m[i] = -std::numeric_limits<T>::infinity(), s[i] = 0;
    for (int64_t k = 0; k < b.n; ++k)
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) m[i] = std::max(m[i], xs[k * I + i]);
    for (int64_t k = 0; k < b.n; ++k)
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) {
        T e = fast_exp(xs[k * I + i] - m[i]);
        if constexpr (!Log) ys[k * I + i] = e;
        s[i] += e;
      }
    for (int64_t i = 0; i < w; ++i) s[i] = Log ? std::log(s[i]) : T(1) / s[i];
    for (int64_t k = 0; k < b.n; ++k)
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) {
        if constexpr (Log) ys[k * I + i] = (xs[k * I + i] - m[i]) - s[i];
        else ys[k * I + i] *= s[i];
      }
  });
}

// The backward of one contiguous row (see softmax_backward).
template <class T, bool Log> void softmax_backward_row(const T* g, const T* y, T* gx, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < n; ++k) s += Log ? g[k] : g[k] * y[k];
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    if constexpr (Log) gx[k] = g[k] - fast_exp(y[k]) * s;
    else gx[k] = y[k] * (g[k] - s);
  }
}

// Gradient over N, given the output y and its gradient g (contiguous [O, N, I]):
//   softmax:     gx = y (g - sum_N g y)
//   log_softmax: gx = g - exp(y) sum_N g
template <class T, bool Log> void softmax_backward(const T* g, const T* y, T* gx, const SoftmaxBlock& b) {
  for_each_slab(b, [&](int64_t o, int64_t i0, int64_t i1) {
    int64_t w = i1 - i0, I = b.inner, base = o * b.n * I + i0;
    if (I == 1) return softmax_backward_row<T, Log>(g + base, y + base, gx + base, b.n);
    T s[kSoftmaxTile] = {};
    for (int64_t k = 0; k < b.n; ++k)
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) {
        int64_t j = base + k * I + i;
        s[i] += Log ? g[j] : g[j] * y[j];
      }
    for (int64_t k = 0; k < b.n; ++k)
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) {
        int64_t j = base + k * I + i;
        if constexpr (Log) gx[j] = g[j] - fast_exp(y[j]) * s[i];
        else gx[j] = y[j] * (g[j] - s[i]);
      }
  });
}

}  // namespace qs::kernels
