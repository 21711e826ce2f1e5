// Small AVX2 helpers shared by the optimised CPU kernels.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "qiusuo/dtype.h"

namespace qs::kernels {

// The sum of a vector's eight lanes.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A mask of lanes [0, n) for _mm256_maskload_ps (n in 0..8).
inline __m256i lane_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Eight bf16 values widened to f32 (exact: a bf16 is the upper half of an f32).
inline __m256 load8_bf16(const bf16* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Eight f32 values rounded to bf16 exactly as f32_to_bf16 (nearest even; a NaN stays a
// quiet NaN), stored to p.
inline void store8_bf16(bf16* p, __m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  r = _mm256_blendv_epi8(r, quiet, nan);
  // 32-bit lanes (each < 2^16) to 16 bits: packus works within 128-bit halves.
  __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

// Eight activations of either dtype as f32 lanes, and back (bf16: widened in registers,
// rounded once); one value likewise. Kernels templated on float / bf16 use these.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const bf16* p) { return load8_bf16(p); }
inline void store8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
inline void store8(bf16* p, __m256 v) { store8_bf16(p, v); }
inline float to_f32(float v) { return v; }
inline float to_f32(bf16 v) { return bf16_to_f32(v); }
inline void from_f32(float* q, float v) { *q = v; }
inline void from_f32(bf16* q, float v) { *q = f32_to_bf16(v); }

// n values between bf16 and f32 (a row or a plane into or out of f32 scratch), eight at a
// time; a tail of fewer goes through a small buffer with the same rounding.
inline void widen_bf16(const bf16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8_bf16(src + i));
  if (i < n) {
    bf16 in[8] = {};
    alignas(32) float out[8];
    std::memcpy(in, src + i, size_t(n - i) * sizeof(bf16));
    _mm256_store_ps(out, load8_bf16(in));
    std::memcpy(dst + i, out, size_t(n - i) * sizeof(float));
  }
}
// n values between f16 and f32 by F16C, eight at a time (the tail one by one): round to
// nearest even, overflow to inf, subnormals exact, as f32_to_f16; a NaN stays a NaN (F16C keeps
// the top bits of its payload where f32_to_f16 writes the canonical quiet NaN).
inline void widen_f16(const f16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
inline void narrow_f16(const float* src, f16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}
inline void narrow_bf16(const float* src, bf16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8_bf16(dst + i, _mm256_loadu_ps(src + i));
  if (i < n) {
    alignas(32) float in[8] = {};
    bf16 out[8];
    std::memcpy(in, src + i, size_t(n - i) * sizeof(float));
    store8_bf16(out, _mm256_load_ps(in));
    std::memcpy(dst + i, out, size_t(n - i) * sizeof(bf16));
  }
}

}  // namespace qs::kernels
