// A 256-entry byte table applied to a byte array (y[i] = lut[x[i]]), in AVX2: qconv's
// chained-input requantisation (quant_dnnl.cpp). The table is 16 sub-tables of 16 entries,
// one per high nibble h, each looked up with vpshufb. For sub-table h the index is
// adds_u8(x - 16 h, 0x70): where x's high nibble is h, x - 16 h is x's low nibble and the
// index is 0x70 + that (bit 7 clear, low nibble kept); everywhere else x - 16 h is at least
// 16 or wrapped below 0, the index is at least 0x80 and vpshufb gives 0. OR-ing the 16
// results picks each byte's entry. Codes below 128 (7-bit activations, the no-VNNI
// default) need only the first 8 sub-tables: the other 8 are skipped when no byte of a
// 32-byte block has bit 7 set. Pure data movement, so it is exact.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace qs::kernels {

// y[i] = lut[x[i]] for i < n (x and y may be the same array). The target attribute lets
// tests, which are built without -march, call it.
__attribute__((target("avx2"))) inline void lut_u8(const uint8_t* x, int64_t n, const uint8_t* lut, uint8_t* y) {
  __m256i sub[16];
  for (int h = 0; h < 16; ++h)
    sub[h] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + 16 * h)));
  const __m256i bias = _mm256_set1_epi8(0x70), step = _mm256_set1_epi8(16);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    __m256i r = _mm256_setzero_si256(), d = v;
    for (int h = 0; h < 8; ++h, d = _mm256_sub_epi8(d, step))
      r = _mm256_or_si256(r, _mm256_shuffle_epi8(sub[h], _mm256_adds_epu8(d, bias)));
    if (_mm256_movemask_epi8(v) != 0)
      for (int h = 8; h < 16; ++h, d = _mm256_sub_epi8(d, step))
        r = _mm256_or_si256(r, _mm256_shuffle_epi8(sub[h], _mm256_adds_epu8(d, bias)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), r);
  }
  for (; i < n; ++i) y[i] = lut[x[i]];
}

}  // namespace qs::kernels
