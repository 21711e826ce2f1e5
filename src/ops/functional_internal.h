// Small helpers the autograd engine and backward formulas use.
#pragma once
#include "qiusuo/ops.h"

namespace qs::ops {

using qs::sum_to;
inline Tensor add_raw(const Tensor& a, const Tensor& b) { return qs::add(a, b); }
inline Tensor cast_raw(const Tensor& x, DType t) { return x.to(t); }
inline Tensor copy_raw(const Tensor& x) { return x.clone(); }
// dst += src (same shape, dst contiguous and owned by the caller); not recorded.
void add_inplace_raw(Tensor& dst, const Tensor& src);

}  // namespace qs::ops
