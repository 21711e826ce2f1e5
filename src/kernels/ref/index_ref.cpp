// Reference indexing and joining kernels: for every element, its coordinates in
// row-major order, the index read where the formula says, values moved in double.
// Index ranges were validated by the op's meta.
#include "kernels/ref/ref_kernels.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {

// Coordinates of row-major linear index i in `shape`.
void unravel(int64_t i, const Shape& shape, Shape& coord) {
  coord.resize(shape.size());
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    int64_t n = shape[size_t(d)];
    coord[size_t(d)] = n ? i % n : 0;
    i = n ? i / n : 0;
  }
}
int64_t offset_of(const Shape& coord, const Shape& strides) {
  int64_t off = 0;
  for (size_t d = 0; d < coord.size(); ++d) off += coord[d] * strides[d];
  return off;
}
double load(const Tensor& t, const Shape& coord) { return load_as_double(t.raw_data(), t.dtype(), offset_of(coord, t.strides())); }
int64_t load_index(const Tensor& t, const Shape& coord) { return int64_t(load(t, coord)); }

}  // namespace

// out[n..., d] = weight[indices[n...], d]          (torch.nn.functional.embedding)
void embedding_ref(ops::OpCall& c) {
  const Tensor &w = c.in[0], &idx = c.in[1];
  Tensor& out = c.out[0];
  int64_t D = w.size(1);
  Shape coord;
  for (int64_t n = 0; n < idx.numel(); ++n) {
    unravel(n, idx.shape(), coord);
    int64_t row = load_index(idx, coord);
    for (int64_t d = 0; d < D; ++d)
      store_from_double(out.raw_data(), out.dtype(), n * D + d, load(w, {row, d}));
  }
}

// grad_weight[v, d] = sum over n with indices[n] == v (v != padding_idx) of grad[n, d]
void embedding_dense_backward_ref(ops::OpCall& c) {
  const Tensor &g = c.in[0], &idx = c.in[1];
  Tensor& out = c.out[0];
  int64_t V = out.size(0), D = out.size(1), pad = c.attrs.i("padding_idx", -1);
  std::vector<double> acc(size_t(V * D), 0.0);
  Shape coord, gcoord;
  for (int64_t n = 0; n < idx.numel(); ++n) {
    unravel(n, idx.shape(), coord);
    int64_t row = load_index(idx, coord);
    if (row == pad) continue;
    gcoord = coord;
    gcoord.push_back(0);
    for (int64_t d = 0; d < D; ++d) {
      gcoord.back() = d;
      acc[size_t(row * D + d)] += load(g, gcoord);
    }
  }
  for (size_t i = 0; i < acc.size(); ++i) store_from_double(out.raw_data(), out.dtype(), int64_t(i), acc[i]);
}

// out[..., i, ...] = x[..., index[i], ...]   (i at position dim)
void index_select_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &index = c.in[1];
  Tensor& out = c.out[0];
  size_t dim = size_t(c.attrs.i("dim"));
  Shape coord;
  for (int64_t i = 0; i < out.numel(); ++i) {
    unravel(i, out.shape(), coord);
    coord[dim] = load_index(index, {coord[dim]});
    store_from_double(out.raw_data(), out.dtype(), i, load(x, coord));
  }
}

// out[i...] = x[i...] with coordinate dim replaced by index[i...]   (torch.gather)
void gather_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &index = c.in[1];
  Tensor& out = c.out[0];
  size_t dim = size_t(c.attrs.i("dim"));
  Shape coord;
  for (int64_t i = 0; i < out.numel(); ++i) {
    unravel(i, out.shape(), coord);
    int64_t j = load_index(index, coord);
    coord[dim] = j;
    store_from_double(out.raw_data(), out.dtype(), i, load(x, coord));
  }
}

// out = x; out[i... with coordinate dim replaced by index[i...]] += src[i...]
// for every i in index's shape   (torch.Tensor.scatter_add, out of place)
void scatter_add_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &index = c.in[1], &src = c.in[2];
  Tensor& out = c.out[0];
  size_t dim = size_t(c.attrs.i("dim"));
  std::vector<double> acc(size_t(out.numel()));
  Shape coord;
  for (int64_t i = 0; i < out.numel(); ++i) {
    unravel(i, out.shape(), coord);
    acc[size_t(i)] = load(x, coord);
  }
  Shape ostrides = contiguous_strides(out.shape());
  for (int64_t i = 0; i < index.numel(); ++i) {
    unravel(i, index.shape(), coord);
    double v = load(src, coord);
    coord[dim] = load_index(index, coord);
    acc[size_t(offset_of(coord, ostrides))] += v;
  }
  for (size_t i = 0; i < acc.size(); ++i) store_from_double(out.raw_data(), out.dtype(), int64_t(i), acc[i]);
}

// out = the inputs laid end to end along dim   (torch.cat)
void cat_ref(ops::OpCall& c) {
  Tensor& out = c.out[0];
  size_t dim = size_t(c.attrs.i("dim"));
  Shape ostrides = contiguous_strides(out.shape());
  Shape coord;
  int64_t start = 0;
  for (const Tensor& x : c.in) {
    for (int64_t i = 0; i < x.numel(); ++i) {
      unravel(i, x.shape(), coord);
      double v = load(x, coord);
      coord[dim] += start;
      store_from_double(out.raw_data(), out.dtype(), offset_of(coord, ostrides), v);
    }
    start += x.size(int64_t(dim));
  }
}

}  // namespace qs::kernels
