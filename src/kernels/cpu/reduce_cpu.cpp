// Optimised sum and mean. The input is seen as [A, R, B] with the reduction over R:
// contiguous inputs whose reduced dims form one block need no copy (B == 1: rows,
// A == 1: columns, else both); anything else is permuted (kept dims first) into a
// contiguous copy, giving rows. Work is split over A, tiles of B and, when that is
// too little to feed the threads, chunks of R whose partial sums are added at the end.
// Accumulation is in double.
#include <omp.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/elementwise_fns.h"
#include "ops/reduce_util.h"

namespace qs::kernels {

namespace {

constexpr int64_t kTileB = 256;        // columns summed together (fits the accumulator)
constexpr int64_t kMinChunkR = 4096;   // smallest slice of R worth a thread of its own
constexpr int64_t kParallelGrain = 32768;

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
  int64_t tiles = (p.B + kTileB - 1) / kTileB, work = p.A * tiles, total = p.A * p.R * p.B;
  int threads = omp_get_max_threads();
  int64_t chunks = 1;
  if (total > kParallelGrain && work < 4 * threads)
    chunks = std::clamp<int64_t>(4 * threads / std::max<int64_t>(work, 1), 1, std::max<int64_t>(1, p.R / kMinChunkR));
  int64_t AB = p.A * p.B;
  std::vector<double> part(size_t(AB * chunks));
#pragma omp parallel for if (total > kParallelGrain) schedule(static)
  for (int64_t w = 0; w < work * chunks; ++w) {
    int64_t ch = w / work, a = (w % work) / tiles, b0 = (w % tiles) * kTileB;
    int64_t b1 = std::min(p.B, b0 + kTileB);
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

}  // namespace

void register_reduce_cpu(std::vector<ops::OpDef>& t) {
  ops::add_kernel(t, ops::OpKind::sum, {"cpu", reduce_supports, sum_cpu});
  ops::add_kernel(t, ops::OpKind::mean, {"cpu", reduce_supports, mean_cpu});
}

}  // namespace qs::kernels
