#include "tensor/strided.h"

#include <cstring>

namespace qs {

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    st[size_t(d)] = s;
    // An empty tensor's strides still multiply its other sizes: [0, 2^40, 2^40] must be an
    // error, not a signed overflow (found by fuzz_idx).
    QS_CHECK(!__builtin_mul_overflow(s, std::max<int64_t>(shape[size_t(d)], 1), &s),
             "shape {} is too large: its strides overflow 64 bits", shape_str(shape));
  }
  return st;
}

Shape infer_size(const Shape& shape, int64_t numel) {
  Shape out(shape);
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      QS_CHECK(infer < 0, "view/reshape: only one dimension can be -1, got {}", shape_str(shape));
      infer = int64_t(i);
    } else {
      QS_CHECK(out[i] >= 0, "view/reshape: invalid size {} in {}", out[i], shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    QS_CHECK(known != 0 && numel % known == 0, "view/reshape: shape {} is invalid for {} elements",
             shape_str(shape), numel);
    out[size_t(infer)] = numel / known;
  }
  QS_CHECK(shape_numel(out) == numel, "view/reshape: shape {} is invalid for input of {} elements",
           shape_str(shape), numel);
  return out;
}

bool compute_view_strides(const Shape& oshape, const Shape& ostride, const Shape& nshape, Shape& nstride) {
  nstride.assign(nshape.size(), 0);
  int64_t numel = shape_numel(oshape);
  if (numel == 0) {
    nstride = contiguous_strides(nshape);
    return true;
  }
  if (oshape.empty()) {
    for (size_t i = 0; i < nshape.size(); ++i) nstride[i] = 1;
    return true;
  }
  // Walk the old dims from the back, grouping dims that are contiguous with each other
  // (PyTorch's computeStride).
  int64_t view_d = int64_t(nshape.size()) - 1;
  int64_t chunk_base_stride = ostride.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = int64_t(oshape.size()) - 1; td >= 0; --td) {
    tensor_numel *= oshape[size_t(td)];
    if (td == 0 || (oshape[size_t(td - 1)] != 1 && ostride[size_t(td - 1)] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || nshape[size_t(view_d)] == 1)) {
        nstride[size_t(view_d)] = view_numel * chunk_base_stride;
        view_numel *= nshape[size_t(view_d)];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (td > 0) {
        chunk_base_stride = ostride[size_t(td - 1)];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

Shape broadcast_strides(const Tensor& t, const Shape& out_shape) {
  Shape st(out_shape.size(), 0);
  size_t lead = out_shape.size() - size_t(t.dim());
  for (size_t i = 0; i < size_t(t.dim()); ++i)
    st[lead + i] = t.shape()[i] == 1 && out_shape[lead + i] != 1 ? 0 : t.strides()[i];
  return st;
}

int64_t wrap_dim(int64_t d, int64_t rank, const char* op) {
  int64_t r = rank == 0 ? 1 : rank;
  if (d < 0) d += r;
  QS_CHECK(d >= 0 && d < r, "{}: dim {} out of range for a tensor of rank {}", op, d, rank);
  return d;
}

namespace {
// Calls f(dst_off, src_off, n, dst_inner_stride, src_inner_stride) for each innermost row.
template <class F>
void for_each_row(const Shape& shape, const Shape& ds, const Shape& ss, F f) {
  int64_t nd = int64_t(shape.size());
  if (nd == 0) {
    f(0, 0, 1, 1, 1);
    return;
  }
  int64_t inner = shape.back();
  int64_t rows = shape_numel(shape) / std::max<int64_t>(inner, 1);
  if (inner == 0) return;
  std::vector<int64_t> idx(size_t(nd), 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t doff = 0, soff = 0;
    for (int64_t d = 0; d < nd - 1; ++d) {
      doff += idx[size_t(d)] * ds[size_t(d)];
      soff += idx[size_t(d)] * ss[size_t(d)];
    }
    f(doff, soff, inner, ds.back(), ss.back());
    for (int64_t d = nd - 2; d >= 0; --d) {
      if (++idx[size_t(d)] < shape[size_t(d)]) break;
      idx[size_t(d)] = 0;
    }
  }
}
}  // namespace

void strided_copy(const Tensor& dst, const Tensor& src) {
  QS_CHECK(dst.shape() == src.shape(), "copy: shape {} vs {}", shape_str(dst.shape()), shape_str(src.shape()));
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    std::memcpy(dst.raw_data(), src.raw_data(), size_t(dst.numel()) * dst.element_size());
    return;
  }
  char* dp = static_cast<char*>(dst.raw_data());
  const char* sp = static_cast<const char*>(src.raw_data());
  DType dt = dst.dtype(), st = src.dtype();
  size_t es = dst.element_size();
  if (dt == DType::f32 && st == DType::f32) {
    for_each_row(dst.shape(), dst.strides(), src.strides(), [&](int64_t d, int64_t s, int64_t n, int64_t di, int64_t si) {
      float* o = reinterpret_cast<float*>(dp) + d;
      const float* x = reinterpret_cast<const float*>(sp) + s;
      for (int64_t i = 0; i < n; ++i) o[i * di] = x[i * si];
    });
    return;
  }
  if (dt == st) {
    for_each_row(dst.shape(), dst.strides(), src.strides(), [&](int64_t d, int64_t s, int64_t n, int64_t di, int64_t si) {
      for (int64_t i = 0; i < n; ++i) std::memcpy(dp + (d + i * di) * int64_t(es), sp + (s + i * si) * int64_t(src.element_size()), es);
    });
    return;
  }
  for_each_row(dst.shape(), dst.strides(), src.strides(), [&](int64_t d, int64_t s, int64_t n, int64_t di, int64_t si) {
    for (int64_t i = 0; i < n; ++i) store_from_double(dp, dt, d + i * di, load_as_double(sp, st, s + i * si));
  });
}

void strided_fill(const Tensor& dst, double v) {
  if (dst.numel() == 0) return;
  char* dp = static_cast<char*>(dst.raw_data());
  DType dt = dst.dtype();
  if (dt == DType::f32 && dst.is_contiguous()) {
    float fv = float(v);
    float* p = reinterpret_cast<float*>(dp);
    for (int64_t i = 0; i < dst.numel(); ++i) p[i] = fv;
    return;
  }
  for_each_row(dst.shape(), dst.strides(), dst.strides(), [&](int64_t d, int64_t, int64_t n, int64_t di, int64_t) {
    for (int64_t i = 0; i < n; ++i) store_from_double(dp, dt, d + i * di, v);
  });
}

}  // namespace qs
