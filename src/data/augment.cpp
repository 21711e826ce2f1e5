#include "qiusuo/data/augment.h"

#include <algorithm>

#include "qiusuo/error.h"

namespace qs::data {

namespace {

template <typename T>
void mirror_rows(T* p, int64_t rows, int64_t w) {
  for (int64_t r = 0; r < rows; ++r) std::reverse(p + r * w, p + (r + 1) * w);
}

}  // namespace

Tensor random_hflip(const Tensor& images, uint64_t seed) {
  QS_CHECK(images.dim() == 4, "random_hflip: images must be [N, C, H, W], got {}-dim", images.dim());
  QS_CHECK(images.dtype() == DType::f32 || images.dtype() == DType::f64,
           "random_hflip: images must be f32 or f64, got {}", dtype_name(images.dtype()));
  Tensor out = images.detach().contiguous().clone();
  const int64_t n = out.size(0), rows = out.size(1) * out.size(2), w = out.size(3);
  Generator g(seed);
  for (int64_t i = 0; i < n; ++i) {
    if (g.next_u64() >> 63) continue;  // the top bit is the coin
    if (out.dtype() == DType::f32)
      mirror_rows(out.data_ptr<float>() + i * rows * w, rows, w);
    else
      mirror_rows(out.data_ptr<double>() + i * rows * w, rows, w);
  }
  return out;
}

}  // namespace qs::data
