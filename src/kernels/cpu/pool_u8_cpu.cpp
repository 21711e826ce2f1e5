// max_pool on u8 codes in channels-last layout (the quantised CNN's chained activations,
// include/qiusuo/quant/modules.h): every output position takes the byte-wise max
// (vpmaxub) of its window's channel vectors, 32 channels per AVX2 register, 16 with SSE,
// the rest one by one. Windows as the reference's (src/kernels/ref/pool_ref.cpp), clipped
// to the input; 0 is the identity of an unsigned max and every window has a valid tap
// (padding is at most half the kernel), so the result is exact. No indices (inference only).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/spatial.h"

namespace qs::kernels {

namespace {

using ops::Spatial;

const char* max_pool_u8_supports(const ops::OpCall& c) {
  if (c.in[0].dtype() != DType::u8) return "u8 only (f32 runs on the 'cpu' kernel)";
  if (!ops::is_channels_last(c.in[0]) || !ops::is_channels_last(c.out[0])) return "channels-last u8 only";
  if (c.out[0].numel() == 0) return "empty output";
  return nullptr;
}

// y[0, C) = max over the `n` channel vectors at x + off[i].
inline void max_channels(const uint8_t* x, const int64_t* off, int n, int64_t C, uint8_t* y) {
  int64_t c = 0;
  for (; c + 32 <= C; c += 32) {
    __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + off[0] + c));
    for (int i = 1; i < n; ++i)
      m = _mm256_max_epu8(m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + off[i] + c)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + c), m);
  }
  for (; c + 16 <= C; c += 16) {
    __m128i m = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + off[0] + c));
    for (int i = 1; i < n; ++i) m = _mm_max_epu8(m, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + off[i] + c)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + c), m);
  }
  for (; c < C; ++c) {
    uint8_t m = x[off[0] + c];
    for (int i = 1; i < n; ++i) m = std::max(m, x[off[i] + c]);
    y[c] = m;
  }
}

// The 2x2 stride-2 unpadded window (the CNNs' pools) with its four loads written out.
inline void max_2x2(const uint8_t* x, int64_t row, int64_t C, uint8_t* y) {
  int64_t c = 0;
  auto ld = [&](int64_t o) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + o + c)); };
  for (; c + 32 <= C; c += 32) {
    __m256i m = _mm256_max_epu8(_mm256_max_epu8(ld(0), ld(C)), _mm256_max_epu8(ld(row), ld(row + C)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + c), m);
  }
  for (; c < C; ++c) y[c] = std::max(std::max(x[c], x[C + c]), std::max(x[row + c], x[row + C + c]));
}

void max_pool_u8_cpu(ops::OpCall& c) {
  Spatial g = ops::pool_spatial(c.in[0].shape(), c.attrs, "max_pool", 2, 3);
  const uint8_t* x = c.in[0].data_ptr<uint8_t>();
  uint8_t* y = c.out[0].data_ptr<uint8_t>();
  const int64_t C = g.C, D = g.in[0], H = g.in[1], W = g.in[2];
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2], rows = g.N * oD * oH;
  const bool two = g.k[0] == 1 && g.k[1] == 2 && g.k[2] == 2 && g.stride[1] == 2 && g.stride[2] == 2 &&
                   g.pad[1] == 0 && g.pad[2] == 0 && g.pad[0] == 0;
#pragma omp parallel if (rows * oW * C > 65536)
  {
    std::vector<int64_t> off(size_t(g.k[0] * g.k[1] * g.k[2]));  // one window's tap offsets, per thread
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = r / (oD * oH), od = (r / oH) % oD, oh = r % oH;
      const uint8_t* xn = x + n * D * H * W * C;
      uint8_t* yr = y + r * oW * C;
      const int64_t d0 = std::max<int64_t>(od * g.stride[0] - g.pad[0], 0),
                    d1 = std::min(od * g.stride[0] - g.pad[0] + g.k[0], D);
      const int64_t h0 = std::max<int64_t>(oh * g.stride[1] - g.pad[1], 0),
                    h1 = std::min(oh * g.stride[1] - g.pad[1] + g.k[1], H);
      if (two) {
        const uint8_t* xr = xn + ((od * g.stride[0]) * H + oh * 2) * W * C;
        for (int64_t ow = 0; ow < oW; ++ow) max_2x2(xr + ow * 2 * C, W * C, C, yr + ow * C);
        continue;
      }
      for (int64_t ow = 0; ow < oW; ++ow) {
        const int64_t w0 = std::max<int64_t>(ow * g.stride[2] - g.pad[2], 0),
                      w1 = std::min(ow * g.stride[2] - g.pad[2] + g.k[2], W);
        int n_off = 0;
        for (int64_t d = d0; d < d1; ++d)
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) off[size_t(n_off++)] = ((d * H + h) * W + w) * C;
        max_channels(xn, off.data(), n_off, C, yr + ow * C);
      }
    }
  }
}

}  // namespace

void register_pool_u8_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::max_pool, {"avx2-u8-channels-last", max_pool_u8_supports, max_pool_u8_cpu});
}

}  // namespace qs::kernels
