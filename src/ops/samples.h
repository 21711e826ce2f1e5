// Building blocks for the op table's sample inputs (generic tests and gradcheck).
#pragma once
#include "ops/op.h"

namespace qs::ops {

// The odd sizes every elementwise op is tried on.
inline const std::vector<int64_t>& odd_sizes() {
  static const std::vector<int64_t> s = {1, 3, 7, 17, 33, 127};
  return s;
}

// Uniform values in [lo, hi) (moved away from kinks by the caller's choice of range).
inline Tensor sample_uniform(const Shape& shape, DType dt, Generator& g, double lo = -2.0, double hi = 2.0) {
  return uniform(shape, lo, hi, dt, &g);
}
// A non-contiguous view with the given logical shape: made as the transpose of a
// contiguous [shape[1], shape[0], ...] tensor.
inline Tensor sample_transposed(const Shape& shape, DType dt, Generator& g, double lo = -2.0, double hi = 2.0) {
  Shape s(shape);
  std::swap(s[0], s[1]);
  return uniform(s, lo, hi, dt, &g).transpose(0, 1);
}

}  // namespace qs::ops
