// Optimised indexing and joining kernels: whole rows moved with memcpy, rows split
// across OpenMP threads. The embedding backward gives each thread a range of
// vocabulary rows, so sums need no atomics and come out in the reference's order.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/elementwise_fns.h"
#include "tensor/strided.h"

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

// ---- gather / scatter_add: walk the index's elements in row-major order, keeping the
// element offsets of the index and of the other operand(s) up to date by carrying
// coordinates (no divisions per element).
template <int N> struct Walker {
  const Shape& shape;
  std::array<Shape, N> strides;
  Shape coord;
  std::array<int64_t, N> off{};
  Walker(const Shape& s, std::array<Shape, N> st, int64_t start) : shape(s), strides(std::move(st)), coord(s.size(), 0) {
    for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
      coord[size_t(d)] = start % s[size_t(d)];
      start /= s[size_t(d)];
      for (int k = 0; k < N; ++k) off[size_t(k)] += coord[size_t(d)] * strides[size_t(k)][size_t(d)];
    }
  }
  void next() {
    for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
      size_t u = size_t(d);
      for (int k = 0; k < N; ++k) off[size_t(k)] += strides[size_t(k)][u];
      if (++coord[u] < shape[u]) return;
      for (int k = 0; k < N; ++k) off[size_t(k)] -= coord[u] * strides[size_t(k)][u];
      coord[u] = 0;
    }
  }
};

const char* gather_scatter_supports(const ops::OpCall& c) {
  if (!is_f32_or_f64(c.in[0].dtype())) return "dtype is not f32/f64";
  if (c.in[1].numel() == 0) return "empty index";
  return nullptr;
}

// out[i] = x[i with coordinate dim := index[i]]; threads take contiguous ranges of i.
void gather_cpu(ops::OpCall& c) {
  const Tensor &x = c.in[0], &index = c.in[1];
  Tensor& out = c.out[0];
  size_t dim = size_t(c.attrs.i("dim"));
  Shape xs = x.strides();
  int64_t xdim = xs[dim];
  xs[dim] = 0;
  const int64_t* ip = index.data_ptr<int64_t>();
  int64_t n = index.numel();
  visit_float(x.dtype(), "gather", [&]<class T>() {
    const T* xp = x.data_ptr<T>();
    T* op = out.data_ptr<T>();
#pragma omp parallel if (n > 32768)
    {
      int nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
      if (lo < hi) {
        Walker<2> w(index.shape(), {index.strides(), xs}, lo);
        for (int64_t i = lo; i < hi; ++i, w.next()) op[i] = xp[w.off[1] + ip[w.off[0]] * xdim];
      }
    }
  });
}

// A row scatter: the index varies only along dim (index_select's backward, a MoE's
// combine) and covers src and out in every other dim.
bool is_row_scatter(const Tensor& index, const Tensor& src, const Tensor& out, int64_t dim) {
  for (int64_t d = 0; d < index.dim(); ++d) {
    if (d == dim) continue;
    if (index.size(d) != src.size(d) || index.size(d) != out.size(d)) return false;
    if (index.size(d) > 1 && index.stride(d) != 0) return false;
  }
  return index.size(dim) == src.size(dim);
}

// out[o, index[j], :] += src[o, j, :] over [outer, n, inner] blocks, whole rows at a time.
// Threads split the row width, so each output element still sums in index order.
template <class T> void scatter_rows(const Tensor& index, const Tensor& src_in, const Tensor& out, int64_t dim) {
  Tensor src = src_in.contiguous();
  const int64_t S = out.size(dim), n = index.size(dim), is = index.stride(dim);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.size(d);
  for (int64_t d = dim + 1; d < out.dim(); ++d) inner *= out.size(d);
  const int64_t* ip = index.data_ptr<int64_t>();
  const T* sp = src.data_ptr<T>();
  T* op = out.data_ptr<T>();
  const bool par = outer * n * inner * int64_t(sizeof(T)) > kParallelBytes;
  const int64_t chunks = par ? std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), inner / 16)) : 1;
#pragma omp parallel for collapse(2) if (par)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t lo = inner * ch / chunks, hi = inner * (ch + 1) / chunks;
      for (int64_t j = 0; j < n; ++j) {
        T* dst = op + (o * S + ip[j * is]) * inner;
        const T* row = sp + (o * n + j) * inner;
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) dst[i] += row[i];
      }
    }
}

// out = x; then out[i with coordinate dim := index[i]] += src[i], serially (in the
// reference's order, so repeated indices sum identically).
void scatter_add_cpu(ops::OpCall& c) {
  const Tensor &x = c.in[0], &index = c.in[1], &src = c.in[2];
  Tensor& out = c.out[0];
  strided_copy(out, x);
  if (is_row_scatter(index, src, out, c.attrs.i("dim"))) {
    visit_float(x.dtype(), "scatter_add", [&]<class T>() { scatter_rows<T>(index, src, out, c.attrs.i("dim")); });
    return;
  }
  size_t dim = size_t(c.attrs.i("dim"));
  Shape os = out.strides();
  int64_t odim = os[dim];
  os[dim] = 0;
  const int64_t* ip = index.data_ptr<int64_t>();
  visit_float(x.dtype(), "scatter_add", [&]<class T>() {
    const T* sp = src.data_ptr<T>();
    T* op = out.data_ptr<T>();
    Walker<3> w(index.shape(), {index.strides(), src.strides(), os}, 0);
    for (int64_t i = 0; i < index.numel(); ++i, w.next()) op[w.off[2] + ip[w.off[0]] * odim] += sp[w.off[1]];
  });
}

}  // namespace

void register_index_cpu(ops::KernelTable& t) {
  using ops::OpKind;
  ops::add_kernel(t, OpKind::embedding, {"cpu", embedding_supports, embedding_cpu});
  ops::add_kernel(t, OpKind::embedding_dense_backward, {"cpu", embedding_backward_supports, embedding_dense_backward_cpu});
  ops::add_kernel(t, OpKind::index_select, {"cpu", index_select_supports, index_select_cpu});
  ops::add_kernel(t, OpKind::gather, {"cpu", gather_scatter_supports, gather_cpu});
  ops::add_kernel(t, OpKind::scatter_add, {"cpu", gather_scatter_supports, scatter_add_cpu});
  ops::add_kernel(t, OpKind::cat, {"cpu", cat_supports, cat_cpu});
}

}  // namespace qs::kernels
