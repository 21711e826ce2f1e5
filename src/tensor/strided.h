// Helpers for strided layouts: contiguous strides, view stride computation, logical
// index -> element offset, strided copy/fill. Private to src/.
#pragma once
#include <vector>

#include "qiusuo/tensor.h"

namespace qs {

Shape contiguous_strides(const Shape& shape);
// Resolves one -1 in `shape` so that it has `numel` elements; errors otherwise.
Shape infer_size(const Shape& shape, int64_t numel);
// Strides for viewing (old_shape, old_strides) as new_shape without copying; false if
// impossible (PyTorch's computeStride).
bool compute_view_strides(const Shape& old_shape, const Shape& old_strides, const Shape& new_shape,
                          Shape& new_strides);

// Maps a logical row-major index to an element offset (relative to the tensor's offset).
class StridedIndex {
 public:
  StridedIndex(const Shape& shape, const Shape& strides) : shape_(shape), strides_(strides) {}
  int64_t offset(int64_t linear) const {
    int64_t off = 0;
    for (int64_t d = int64_t(shape_.size()) - 1; d >= 0; --d) {
      int64_t n = shape_[size_t(d)];
      off += (linear % n) * strides_[size_t(d)];
      linear /= n;
    }
    return off;
  }

 private:
  const Shape& shape_;
  const Shape& strides_;
};

// Strides of `t` as seen from a broadcast `out_shape` (0 for broadcast dims).
Shape broadcast_strides(const Tensor& t, const Shape& out_shape);

// dst[...] = src[...] elementwise with dtype conversion; shapes must match.
void strided_copy(const Tensor& dst, const Tensor& src);
void strided_fill(const Tensor& dst, double v);

// Normalises a possibly negative dim; errors name the op.
int64_t wrap_dim(int64_t d, int64_t rank, const char* op);

}  // namespace qs
