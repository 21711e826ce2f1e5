// The requantisation epilogue over a run of consecutive output channels, in AVX2, with
// exactly quant_math.h's f32 operations (include only from quant*.cpp files, which are
// compiled without FMA contraction):
//   real = float(acc - zp * sums[c]) * scale[c];  real = real + bias[c];  relu: max(real, 0)
//   f32 out: real;  u8/s8 out: clamp(round_half_even(real * inv_out) + out_zp, qmin, qmax), NaN -> zp
// max(real, 0) is _mm256_max_ps(0, real): (0 > real) ? 0 : real, std::max(real, 0.0f)'s
// choice for -0 and NaN as well. Rounding: _mm256_cvtps_epi32 under the default MXCSR.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/quant_epilogue.h"

namespace qs::kernels {

inline void quant_epilogue_run(const quant::QEpilogue& e, const int32_t* acc, int32_t zp, const int32_t* sums,
                               const float* scale, const float* bias, int64_t n, void* out, DType dt) {
  const __m256i vzp = _mm256_set1_epi32(zp);
  const __m256 zero = _mm256_setzero_ps(), inv = _mm256_set1_ps(e.inv_out_scale);
  // Rounded values beyond these bounds saturate alike, so clamping first changes nothing.
  const __m256 lo = _mm256_set1_ps(float(e.out_qmin - e.out_zp - 1)), hi = _mm256_set1_ps(float(e.out_qmax - e.out_zp + 1));
  const __m256i qzp = _mm256_set1_epi32(e.out_zp), qlo = _mm256_set1_epi32(e.out_qmin), qhi = _mm256_set1_epi32(e.out_qmax);
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + c));
    if (sums) a = _mm256_sub_epi32(a, _mm256_mullo_epi32(vzp, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums + c))));
    __m256 real = _mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_loadu_ps(scale + c));
    real = _mm256_add_ps(real, _mm256_loadu_ps(bias + c));
    if (e.relu) real = _mm256_max_ps(zero, real);
    if (e.real_out) {
      _mm256_storeu_ps(static_cast<float*>(out) + c, real);
      continue;
    }
    __m256 y = _mm256_mul_ps(real, inv);
    y = _mm256_and_ps(y, _mm256_cmp_ps(y, y, _CMP_ORD_Q));  // NaN -> 0 -> zp
    y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
    __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(y), qzp);
    q = _mm256_min_epi32(_mm256_max_epi32(q, qlo), qhi);
    // 8 x s32 in range -> 8 bytes
    __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    __m128i q8 = dt == DType::u8 ? _mm_packus_epi16(q16, q16) : _mm_packs_epi16(q16, q16);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(out) + c), q8);
  }
  for (; c < n; ++c) e.store(acc[c] - (sums ? zp * sums[c] : 0), scale[c], bias[c], out, dt, c);
}

// Smallest and largest of x[0, n), NaNs skipped (std::min(lo, x)'s choice: _mm256_min_ps
// returns its second operand when either is NaN); lo and hi come in as the start values.
inline void min_max_avx2(const float* x, int64_t n, float& lo, float& hi) {
  __m256 vl = _mm256_set1_ps(lo), vh = _mm256_set1_ps(hi);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    vl = _mm256_min_ps(v, vl);
    vh = _mm256_max_ps(v, vh);
  }
  alignas(32) float l8[8], h8[8];
  _mm256_store_ps(l8, vl);
  _mm256_store_ps(h8, vh);
  for (int i = 0; i < 8; ++i) lo = std::min(lo, l8[i]), hi = std::max(hi, h8[i]);
  for (; k < n; ++k) lo = std::min(lo, x[k]), hi = std::max(hi, x[k]);
}

// q[k] = quantize_value(x[k], inv, zp, qmin, qmax) (quant_math.h) as u8 or i8 (`dt`), 8 at a
// time, the same way as the epilogue above: NaN -> 0 -> zp, clamped before rounding where
// it saturates alike.
inline void quantize_avx2(const float* x, int64_t n, float inv, int32_t zp, int32_t qmin, int32_t qmax, void* out,
                          DType dt) {
  const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(float(qmin - zp - 1)),
               hi = _mm256_set1_ps(float(qmax - zp + 1));
  const __m256i vzp = _mm256_set1_epi32(zp), qlo = _mm256_set1_epi32(qmin), qhi = _mm256_set1_epi32(qmax);
  auto* o = static_cast<uint8_t*>(out);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + k), vinv);
    y = _mm256_and_ps(y, _mm256_cmp_ps(y, y, _CMP_ORD_Q));
    y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
    __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(y), vzp);
    q = _mm256_min_epi32(_mm256_max_epi32(q, qlo), qhi);
    __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    __m128i q8 = dt == DType::u8 ? _mm_packus_epi16(q16, q16) : _mm_packs_epi16(q16, q16);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(o + k), q8);
  }
  for (; k < n; ++k) o[k] = uint8_t(quant::quantize_value(x[k], inv, zp, qmin, qmax));  // i8: the same byte
}

}  // namespace qs::kernels
