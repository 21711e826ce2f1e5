// Small helpers the autograd engine and backward formulas use.
#pragma once
#include "qiusuo/ops.h"

namespace qs::ops {

using qs::sum_to;
// dst += src (same shape, dst contiguous and owned by the caller); not recorded.
void add_inplace_raw(Tensor& dst, const Tensor& src);

}  // namespace qs::ops
