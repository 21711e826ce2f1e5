// Byte-matrix transpose for the INT8 convolution's layout changes (NC(spatial) <->
// N(spatial)C): 16x16 blocks through four rounds of SSE2 unpacks, the ragged edges with
// the plain loop. Pure data movement (plus an optional wrap-around add), so it is exact.
#pragma once
#include <emmintrin.h>

#include <cstdint>

namespace qs::kernels {

// y[c * ys + r] = uint8(x[r * xs + c] + add) for r < rows, c < cols (add wraps modulo 256).
inline void transpose_u8(const uint8_t* x, int64_t rows, int64_t cols, int64_t xs, uint8_t* y, int64_t ys,
                         uint8_t add = 0) {
  const __m128i vadd = _mm_set1_epi8(static_cast<char>(add));
  const int64_t rb = rows - rows % 16, cb = cols - cols % 16;
  for (int64_t r0 = 0; r0 < rb; r0 += 16)
    for (int64_t c0 = 0; c0 < cb; c0 += 16) {
      __m128i a[16], b[16];
      for (int i = 0; i < 16; ++i)
        a[i] = _mm_add_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + (r0 + i) * xs + c0)), vadd);
      for (int i = 0; i < 8; ++i) {  // byte pairs: rows 2i, 2i+1 x columns 0-7 / 8-15
        b[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
      }
      for (int j = 0; j < 4; ++j) {  // 4 rows x column quads 0-3, 4-7, 8-11, 12-15
        a[4 * j + 0] = _mm_unpacklo_epi16(b[4 * j + 0], b[4 * j + 2]);
        a[4 * j + 1] = _mm_unpackhi_epi16(b[4 * j + 0], b[4 * j + 2]);
        a[4 * j + 2] = _mm_unpacklo_epi16(b[4 * j + 1], b[4 * j + 3]);
        a[4 * j + 3] = _mm_unpackhi_epi16(b[4 * j + 1], b[4 * j + 3]);
      }
      for (int k = 0; k < 2; ++k)  // 8 rows x column pairs
        for (int q = 0; q < 4; ++q) {
          b[8 * k + 2 * q + 0] = _mm_unpacklo_epi32(a[8 * k + q], a[8 * k + 4 + q]);
          b[8 * k + 2 * q + 1] = _mm_unpackhi_epi32(a[8 * k + q], a[8 * k + 4 + q]);
        }
      for (int m = 0; m < 8; ++m) {  // 16 rows of columns 2m and 2m+1
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + (c0 + 2 * m) * ys + r0), _mm_unpacklo_epi64(b[m], b[8 + m]));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + (c0 + 2 * m + 1) * ys + r0), _mm_unpackhi_epi64(b[m], b[8 + m]));
      }
    }
  for (int64_t r = 0; r < rows; ++r)  // the edges: columns past cb, then rows past rb
    for (int64_t c = r < rb ? cb : 0; c < cols; ++c) y[c * ys + r] = uint8_t(x[r * xs + c] + add);
}

}  // namespace qs::kernels
