// Small helpers the autograd engine and backward formulas use.
#pragma once
#include "qiusuo/ops.h"

namespace qs::ops {

using qs::sum_to;
// dst += src (same shape, dst contiguous and owned by the caller); not recorded.
void add_inplace_raw(Tensor& dst, const Tensor& src);
// g * gelu'(x) for the exact (erf) GELU, one fused pass; not recorded.
Tensor gelu_grad(const Tensor& g, const Tensor& x);

}  // namespace qs::ops
