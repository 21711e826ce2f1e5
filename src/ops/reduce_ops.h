// What the reduction rows share beyond the kernels' shape rules (kernels/reduce_util.h):
// their generic-test samples and the broadcast of a gradient back over reduced dims.
#pragma once
#include "kernels/reduce_util.h"
#include "ops/op.h"

namespace qs::ops {

// The shared samples of reductions over "dims" (reduce_ops.cpp).
std::vector<Sample> reduce_samples(DType dt, Generator& g);

// The gradient of a reduction broadcast back over the reduced dims of `in_shape`
// (g has the reduced shape, with or without keepdim). Returns an expanded view.
inline Tensor unreduce(const Tensor& g, const Shape& in_shape, const std::vector<int64_t>& dims) {
  return g.reshape(keepdim_shape(in_shape, dims)).expand(in_shape);
}
// The same for a reduction described by the "dims" attribute (empty = all).
inline Tensor unreduce(const Tensor& g, const Shape& in_shape, const Attrs& a) {
  std::vector<int64_t> dims = a.has("dims") ? a.ints("dims") : std::vector<int64_t>{};
  if (dims.empty())
    for (int64_t d = 0; d < int64_t(in_shape.size()); ++d) dims.push_back(d);
  for (auto& d : dims) d = wrap_dim(d, int64_t(in_shape.size()), "reduce");
  return unreduce(g, in_shape, dims);
}

}  // namespace qs::ops
