// Optimised sum and mean. The input is seen as [A, R, B] with the reduction over R:
// contiguous inputs whose reduced dims form one block need no copy (B == 1: rows,
// A == 1: columns, else both); anything else is permuted (kept dims first) into a
// contiguous copy, giving rows. Work is split over A, tiles of B and, when that is
// too little to feed the threads, chunks of R whose partial sums are added at the end.
// Sums accumulate in double. amax/amin/logsumexp/max/min/argmax share the layout.
#include <omp.h>

#include <cmath>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/elementwise_fns.h"
#include "kernels/reduce_util.h"

namespace qs::kernels {

namespace {

constexpr int64_t kTileB = 256;        // columns summed together (fits the accumulator)
constexpr int64_t kMinChunkR = 4096;   // smallest slice of R worth a thread of its own
constexpr int64_t kParallelGrain = 32768;
constexpr int64_t kWholeRows = 4096;   // widest rows summed whole per task (32 KiB of doubles)

struct Plan {
  Tensor x;  // contiguous, laid out as [A, R, B]
  int64_t A = 1, R = 1, B = 1;
};

Plan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims) {
  Plan p;
  bool block = !dims.empty() && dims.back() - dims.front() + 1 == int64_t(dims.size());
  if (x.is_contiguous() && (block || dims.empty())) {
    p.x = x;
    for (int64_t d = 0; d < x.dim(); ++d) {
      int64_t s = x.shape()[size_t(d)];
      if (!dims.empty() && d < dims.front()) p.A *= s;
      else if (!dims.empty() && d <= dims.back()) p.R *= s;
      else p.B *= s;
    }
    if (dims.empty()) std::swap(p.A, p.B);  // nothing reduced: every element is its own row
    return p;
  }
  Shape perm;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) perm.push_back(d), p.A *= x.shape()[size_t(d)];
  for (int64_t d : dims) perm.push_back(d), p.R *= x.shape()[size_t(d)];
  p.x = x.permute(perm).contiguous();
  return p;
}

// acc[0 : b1-b0] = sum over r in [r0, r1) of x[r, b0 : b1]  (x: one [R, B] slab)
template <class T> void sum_slab(const T* x, int64_t B, int64_t r0, int64_t r1, int64_t b0, int64_t b1, double* acc) {
  if (B == 1) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t r = r0; r < r1; ++r) s += double(x[r]);
    acc[0] = s;
    return;
  }
  int64_t w = b1 - b0;
  for (int64_t i = 0; i < w; ++i) acc[i] = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const T* row = x + r * B + b0;
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) acc[i] += double(row[i]);
  }
}

template <class T> void sum_cpu_t(ops::OpCall& c, bool mean) {
  auto dims = ops::reduce_dims(c.in[0], c.attrs, mean ? "mean" : "sum");
  Plan p = plan_reduce(c.in[0], dims);
  const T* x = p.x.data_ptr<T>();
  T* out = c.out[0].data_ptr<T>();
  int threads = omp_get_max_threads();
  // Few slabs of columns (a bias gradient: [2048, 1024] summed over rows): whole rows per
  // task and the rows split among the threads instead. A tile of 256 columns walked down
  // the rows touches a new 4 KiB page every row, where the prefetchers stop: Zen 5, 2
  // threads, 0.37-0.68 ms for those 8 MB in the LM's training step.
  const bool whole = p.B > kTileB && p.B <= kWholeRows && p.A * ((p.B + kTileB - 1) / kTileB) < 4 * threads;
  const int64_t tile_b = whole ? p.B : kTileB;
  int64_t tiles = (p.B + tile_b - 1) / tile_b, work = p.A * tiles, total = p.A * p.R * p.B;
  int64_t chunks = 1;
  if (total > kParallelGrain && work < 4 * threads) {
    const int64_t min_rows = whole ? std::max<int64_t>(1, kParallelGrain / p.B) : kMinChunkR;
    chunks = std::clamp<int64_t>(4 * threads / std::max<int64_t>(work, 1), 1, std::max<int64_t>(1, p.R / min_rows));
  }
  int64_t AB = p.A * p.B;
  std::vector<double> part(size_t(AB * chunks));
#pragma omp parallel for if (total > kParallelGrain) schedule(static)
  for (int64_t w = 0; w < work * chunks; ++w) {
    int64_t ch = w / work, a = (w % work) / tiles, b0 = (w % tiles) * tile_b;
    int64_t b1 = std::min(p.B, b0 + tile_b);
    int64_t r0 = p.R * ch / chunks, r1 = p.R * (ch + 1) / chunks;
    sum_slab(x + a * p.R * p.B, p.B, r0, r1, b0, b1, part.data() + ch * AB + a * p.B + b0);
  }
  double scale = mean ? 1.0 / double(p.R) : 1.0;
#pragma omp parallel for if (AB > kParallelGrain)
  for (int64_t j = 0; j < AB; ++j) {
    double s = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) s += part[size_t(ch * AB + j)];
    out[j] = T(s * scale);
  }
}

const char* reduce_supports(const ops::OpCall& c) {
  DType t = c.in[0].dtype();
  if (t != DType::f32 && t != DType::f64) return "only f32/f64";
  return nullptr;
}
void sum_cpu(ops::OpCall& c) { visit_float(c.in[0].dtype(), "sum", [&]<class T>() { sum_cpu_t<T>(c, false); }); }
void mean_cpu(ops::OpCall& c) { visit_float(c.in[0].dtype(), "mean", [&]<class T>() { sum_cpu_t<T>(c, true); }); }

// ---- extremum reductions (amax, amin, logsumexp; max/min/argmax with indices). Work is
// split over A and tiles of B only (R is scanned in order, so the first extremum wins).

// Runs slab(a, b0, b1) over every [a, :, b0:b1] of the plan, threaded when large.
template <class Fn> void for_each_slab(const Plan& p, Fn slab) {
  int64_t tiles = (p.B + kTileB - 1) / kTileB, work = p.A * tiles;
#pragma omp parallel for if (p.A * p.R * p.B > kParallelGrain && work > 1) schedule(static)
  for (int64_t w = 0; w < work; ++w) {
    int64_t a = w / tiles, b0 = (w % tiles) * kTileB;
    slab(a, b0, std::min(p.B, b0 + kTileB));
  }
}

// v beats the current best (NaN beats everything and is never beaten, as in torch).
template <bool Max, class T> inline bool beats(T v, T best) {
  return Max ? (v > best || (v != v && best == best)) : (v < best || (v != v && best == best));
}

// out[a, b] = max (min) over r of x[a, r, b]; idx (may be null) = the first r reaching it.
template <class T, bool Max> void extreme_t(const Plan& p, T* out, int64_t* idx) {
  const T* x = p.x.data_ptr<T>();
  for_each_slab(p, [&](int64_t a, int64_t b0, int64_t b1) {
    const T* base = x + a * p.R * p.B;
    T best[kTileB];
    int64_t at[kTileB] = {};
    for (int64_t b = b0; b < b1; ++b) best[b - b0] = base[b];
    for (int64_t r = 1; r < p.R; ++r)
      for (int64_t b = b0; b < b1; ++b) {
        T v = base[r * p.B + b];
        if (beats<Max>(v, best[b - b0])) best[b - b0] = v, at[b - b0] = r;
      }
    for (int64_t b = b0; b < b1; ++b) {
      out[a * p.B + b] = best[b - b0];
      if (idx) idx[a * p.B + b] = at[b - b0];
    }
  });
}

// logsumexp = m + log sum exp(x - m), m the max (0 when infinite), as the reference.
template <class T> void logsumexp_t(const Plan& p, T* out) {
  const T* x = p.x.data_ptr<T>();
  std::vector<T> m(size_t(p.A * p.B));
  extreme_t<T, true>(p, m.data(), nullptr);
  for_each_slab(p, [&](int64_t a, int64_t b0, int64_t b1) {
    const T* base = x + a * p.R * p.B;
    double s[kTileB] = {};
    T* mm = m.data() + a * p.B;
    for (int64_t b = b0; b < b1; ++b) mm[b] = std::isinf(mm[b]) ? T(0) : mm[b];
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t b = b0; b < b1; ++b) s[b - b0] += std::exp(double(base[r * p.B + b] - mm[b]));
    for (int64_t b = b0; b < b1; ++b) out[a * p.B + b] = T(double(mm[b]) + std::log(s[b - b0]));
  });
}

// The dims attribute of the row: "dims" (amax, amin, logsumexp) or "dim" (max, min, argmax;
// absent = all).
std::vector<int64_t> dims_of(const ops::OpCall& c) {
  const Tensor& x = c.in[0];
  if (c.op == ops::OpKind::amax || c.op == ops::OpKind::amin || c.op == ops::OpKind::logsumexp)
    return ops::reduce_dims(x, c.attrs, ops::op_name(c.op));
  if (x.dim() == 0) return {};
  if (!c.attrs.has("dim")) return ops::reduce_dims(x, Attrs(), "argmax");
  return {wrap_dim(c.attrs.i("dim"), x.dim(), ops::op_name(c.op))};
}

void extreme_cpu(ops::OpCall& c) {
  Plan p = plan_reduce(c.in[0], dims_of(c));
  visit_float(c.in[0].dtype(), ops::op_name(c.op), [&]<class T>() {
    T* out = c.op == ops::OpKind::argmax ? nullptr : c.out[0].data_ptr<T>();
    switch (c.op) {
      case ops::OpKind::amax: extreme_t<T, true>(p, out, nullptr); break;
      case ops::OpKind::amin: extreme_t<T, false>(p, out, nullptr); break;
      case ops::OpKind::max_dim: extreme_t<T, true>(p, out, c.out[1].data_ptr<int64_t>()); break;
      case ops::OpKind::min_dim: extreme_t<T, false>(p, out, c.out[1].data_ptr<int64_t>()); break;
      case ops::OpKind::logsumexp: logsumexp_t<T>(p, out); break;
      default: {  // argmax: the values are scratch
        std::vector<T> v(size_t(p.A * p.B));
        extreme_t<T, true>(p, v.data(), c.out[0].data_ptr<int64_t>());
      }
    }
  });
}

}  // namespace

void register_reduce_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::sum, {"cpu", reduce_supports, sum_cpu});
  ops::add_kernel(t, ops::OpKind::mean, {"cpu", reduce_supports, mean_cpu});
  for (auto k : {ops::OpKind::amax, ops::OpKind::amin, ops::OpKind::logsumexp, ops::OpKind::max_dim,
                 ops::OpKind::min_dim, ops::OpKind::argmax})
    ops::add_kernel(t, k, {"cpu", reduce_supports, extreme_cpu});
}

}  // namespace qs::kernels
