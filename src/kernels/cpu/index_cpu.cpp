// Optimised indexing and joining kernels: whole rows moved with memcpy, rows split
// across OpenMP threads. The embedding backward gives each thread a range of
// vocabulary rows, so sums need no atomics and come out in the reference's order.
#include <omp.h>

#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/elementwise_fns.h"

namespace qs::kernels {

namespace {

constexpr int64_t kParallelBytes = 1 << 16;  // below this, threads cost more than they save

bool is_f32_or_f64(DType t) { return t == DType::f32 || t == DType::f64; }

// ---- embedding: out[n, :] = weight[idx[n], :]
const char* embedding_supports(const ops::OpCall& c) {
  if (!is_f32_or_f64(c.in[0].dtype())) return "dtype is not f32/f64";
  if (c.in[0].stride(1) != 1) return "weight rows are not contiguous";
  return nullptr;
}
void embedding_cpu(ops::OpCall& c) {
  const Tensor& w = c.in[0];
  Tensor idx = c.in[1].contiguous();
  const int64_t* ip = idx.data_ptr<int64_t>();
  int64_t N = idx.numel(), D = w.size(1), ws = w.stride(0);
  size_t row_bytes = size_t(D) * w.element_size();
  const char* wp = static_cast<const char*>(w.raw_data());
  char* op = static_cast<char*>(c.out[0].raw_data());
  size_t elem = w.element_size();
#pragma omp parallel for if (N * int64_t(row_bytes) > kParallelBytes)
  for (int64_t n = 0; n < N; ++n) std::memcpy(op + size_t(n) * row_bytes, wp + size_t(ip[n] * ws) * elem, row_bytes);
}

// ---- embedding_dense_backward: gw[v, :] = sum of g[n, :] over n with idx[n] == v
const char* embedding_backward_supports(const ops::OpCall& c) {
  return is_f32_or_f64(c.in[0].dtype()) ? nullptr : "dtype is not f32/f64";
}
void embedding_dense_backward_cpu(ops::OpCall& c) {
  Tensor g = c.in[0].contiguous();
  Tensor idx = c.in[1].contiguous();
  Tensor& out = c.out[0];
  int64_t V = out.size(0), D = out.size(1), N = idx.numel(), pad = c.attrs.i("padding_idx", -1);
  const int64_t* ip = idx.data_ptr<int64_t>();
  visit_float(out.dtype(), "embedding_dense_backward", [&]<class T>() {
    const T* gp = g.data_ptr<T>();
    T* op = out.data_ptr<T>();
    std::memset(op, 0, size_t(V * D) * sizeof(T));
    bool par = N * D * int64_t(sizeof(T)) > kParallelBytes;
#pragma omp parallel if (par)
    {
      int nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t lo = V * t / nt, hi = V * (t + 1) / nt;  // this thread's vocabulary rows
      for (int64_t n = 0; n < N; ++n) {
        int64_t v = ip[n];
        if (v < lo || v >= hi || v == pad) continue;
        T* dst = op + v * D;
        const T* src = gp + n * D;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
      }
    }
  });
}

// ---- index_select on a contiguous x: [outer, size(dim), inner] -> [outer, n, inner]
const char* index_select_supports(const ops::OpCall& c) {
  if (!is_f32_or_f64(c.in[0].dtype())) return "dtype is not f32/f64";
  if (!c.in[0].is_contiguous()) return "x is not contiguous";
  return nullptr;
}
void index_select_cpu(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  Tensor idx = c.in[1].contiguous();
  const int64_t* ip = idx.data_ptr<int64_t>();
  int64_t dim = c.attrs.i("dim"), n = idx.numel(), S = x.size(dim), outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  size_t elem = x.element_size(), row_bytes = size_t(inner) * elem;
  const char* xp = static_cast<const char*>(x.raw_data());
  char* op = static_cast<char*>(c.out[0].raw_data());
#pragma omp parallel for collapse(2) if (outer * n * int64_t(row_bytes) > kParallelBytes)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < n; ++j)
      std::memcpy(op + size_t(o * n + j) * row_bytes, xp + size_t(o * S + ip[j]) * row_bytes, row_bytes);
}

// ---- cat: each (contiguous) input is [outer, size_k * inner], copied into its column
// band of the [outer, total * inner] output. Strided inputs are made contiguous first,
// which still beats an element-by-element copy. Any dtype: only bytes move.
const char* cat_supports(const ops::OpCall& c) { return nullptr; }
void cat_cpu(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  int64_t dim = c.attrs.i("dim"), outer = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.size(d);
  size_t elem = out.element_size();
  size_t out_row = outer ? size_t(out.numel() / outer) * elem : 0;
  char* op = static_cast<char*>(out.raw_data());
  size_t col = 0;
  for (const Tensor& input : c.in) {
    if (input.numel() == 0) continue;
    Tensor x = input.contiguous();
    size_t row = size_t(x.numel() / outer) * elem;
    const char* xp = static_cast<const char*>(x.raw_data());
#pragma omp parallel for if (outer * int64_t(row) > kParallelBytes)
    for (int64_t o = 0; o < outer; ++o) std::memcpy(op + size_t(o) * out_row + col, xp + size_t(o) * row, row);
    col += row;
  }
}

}  // namespace

void register_index_cpu(std::vector<ops::OpDef>& t) {
  using ops::OpKind;
  ops::add_kernel(t, OpKind::embedding, {"cpu", embedding_supports, embedding_cpu});
  ops::add_kernel(t, OpKind::embedding_dense_backward, {"cpu", embedding_backward_supports, embedding_dense_backward_cpu});
  ops::add_kernel(t, OpKind::index_select, {"cpu", index_select_supports, index_select_cpu});
  ops::add_kernel(t, OpKind::cat, {"cpu", cat_supports, cat_cpu});
}

}  // namespace qs::kernels
