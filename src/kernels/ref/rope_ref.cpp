// Reference rotary position embedding, rotate-half layout (Su et al. 2021, RoFormer;
// the GPT-NeoX / Llama arrangement). With h = d / 2, for every row [..., t, :] of x:
//   out[..., t, j]     = x[..., t, j] cos[t, j] - x[..., t, j + h] sin[t, j]
//   out[..., t, j + h] = x[..., t, j] sin[t, j] + x[..., t, j + h] cos[t, j]     (0 <= j < h)
#include "kernels/ref/ref_kernels.h"
#include "tensor/strided.h"

namespace qs::kernels {

void rope_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &cos = c.in[1], &sin = c.in[2];
  Tensor& out = c.out[0];
  const int64_t n = x.size(-2), d = x.size(-1), h = d / 2;
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  StridedIndex xi(x.shape(), x.strides());
  auto table = [](const Tensor& t, int64_t row, int64_t col) {
    return load_as_double(t.raw_data(), t.dtype(), row * t.stride(0) + col * t.stride(1));
  };
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % n;
    for (int64_t j = 0; j < h; ++j) {
      double x1 = load_as_double(x.raw_data(), x.dtype(), xi.offset(r * d + j));
      double x2 = load_as_double(x.raw_data(), x.dtype(), xi.offset(r * d + j + h));
      double cs = table(cos, t, j), sn = table(sin, t, j);
      store_from_double(out.raw_data(), out.dtype(), r * d + j, x1 * cs - x2 * sn);
      store_from_double(out.raw_data(), out.dtype(), r * d + j + h, x1 * sn + x2 * cs);
    }
  }
}

}  // namespace qs::kernels
