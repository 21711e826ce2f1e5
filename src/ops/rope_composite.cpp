// qs::rope written with ordinary ops (narrow, mul, cat).
#include "qiusuo/error.h"
#include "qiusuo/ops.h"

namespace qs {

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  QS_CHECK(x.dim() >= 2 && x.size(-1) % 2 == 0, "rope: x must be [..., n, d] with d even, got {}", shape_str(x.shape()));
  const int64_t n = x.size(-2), half = x.size(-1) / 2;
  QS_CHECK((cos.shape() == Shape{n, half} && sin.shape() == Shape{n, half}), "rope: cos and sin must be [{}, {}], got {} and {}",
           n, half, shape_str(cos.shape()), shape_str(sin.shape()));
  Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1);
}

}  // namespace qs
