// Shared shape logic of reductions over a set of dims.
#pragma once
#include <algorithm>

#include "kernels/kernel.h"
#include "tensor/strided.h"

namespace qs::ops {

// Normalised, sorted, unique dims ("dims" attr; empty = all).
inline std::vector<int64_t> reduce_dims(const Tensor& x, const Attrs& a, const char* op) {
  std::vector<int64_t> dims = a.has("dims") ? a.ints("dims") : std::vector<int64_t>{};
  if (dims.empty())
    for (int64_t d = 0; d < x.dim(); ++d) dims.push_back(d);
  for (auto& d : dims) d = wrap_dim(d, x.dim(), op);
  std::sort(dims.begin(), dims.end());
  QS_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(), "{}: a dim is repeated in {}", op,
           shape_str(a.ints("dims")));
  if (x.dim() == 0) dims.clear();
  return dims;
}
// Shape with reduced dims set to 1.
inline Shape keepdim_shape(const Shape& in, const std::vector<int64_t>& dims) {
  Shape s(in);
  for (int64_t d : dims) s[size_t(d)] = 1;
  return s;
}
inline Shape reduced_shape(const Shape& in, const std::vector<int64_t>& dims, bool keepdim) {
  if (keepdim) return keepdim_shape(in, dims);
  Shape s;
  for (size_t d = 0; d < in.size(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), int64_t(d))) s.push_back(in[d]);
  return s;
}
inline int64_t reduced_count(const Shape& in, const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= in[size_t(d)];
  return n;
}

}  // namespace qs::ops
