// Small AVX-512 helpers for the kernels' 16-lane builds (simd_avx2.h's, 16 lanes wide). Each
// carries QS_TARGET_AVX512, so it is inlined only into functions built for AVX-512, which
// run where backend::avx512() says so.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/target_avx512.h"
#include "qiusuo/dtype.h"

// GCC 12 reports the _mm512_undefined_*() sources inside AVX-512 intrinsics (widening loads,
// _mm512_reduce_add_ps) as uninitialized (in every file that includes this one).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace qs::kernels {

// Lanes [0, n) of 16 (n in 0..16).
QS_TARGET_AVX512 inline __mmask16 lanes16(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << unsigned(n)) - 1u);
}

// Sixteen values of either dtype as f32 lanes (bf16 widened, exactly); with a mask, the lanes
// of m (the others 0).
QS_TARGET_AVX512 inline __m512 widen16_bf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
QS_TARGET_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
QS_TARGET_AVX512 inline __m512 load16(const bf16* p) {
  return widen16_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
QS_TARGET_AVX512 inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
QS_TARGET_AVX512 inline __m512 load16(const bf16* p, __mmask16 m) { return widen16_bf16(_mm256_maskz_loadu_epi16(m, p)); }
// The lanes of m of 16 values at p, when p + 16 may pass the end of the buffer (`end`): a
// whole load zeroed by the mask where the buffer goes on, a masked load only at its end.
// Masked loads from memory stall on Zen 5 (a third of a streaming loop's time, measured on
// convolution_backward_weight_c1's gradient rows).
// (The empty asm keeps GCC from folding the load and the mask back into a masked load.)
template <class T> QS_TARGET_AVX512 inline __m512 load16_tail(const T* p, const T* end, __mmask16 m) {
  if (p + 16 > end) return load16(p, m);
  __m512 v = load16(p);
  __asm__("" : "+v"(v));
  return _mm512_maskz_mov_ps(m, v);
}

// The lanes of m of 32 bf16 values at p (the others 0), as load16_tail.
QS_TARGET_AVX512 inline __m512i load32_bf16_tail(const bf16* p, const bf16* end, __mmask32 m) {
  if (p + 32 > end) return _mm512_maskz_loadu_epi16(m, p);
  __m512i v = _mm512_loadu_si512(p);
  __asm__("" : "+v"(v));
  return _mm512_maskz_mov_epi16(m, v);
}

// Lanes [0, n) of 32 (n in 0..32).
QS_TARGET_AVX512 inline __mmask32 lanes32(int64_t n) {
  return n >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << unsigned(n)) - 1u);
}

// Sixteen f32 values rounded to bf16 exactly as f32_to_bf16 and store8_bf16 (nearest even;
// a NaN stays a quiet NaN), the lanes of m stored to p. Masked stores, like masked loads, are
// slow on Zen 5: a whole store where m has every lane, and callers keep partial ones rare.
QS_TARGET_AVX512 inline void store16_bf16(bf16* p, __m512 v, __mmask16 m = 0xffff) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan =
      _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  if (m == 0xffff)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
  else
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(r));
}
QS_TARGET_AVX512 inline void store16(float* p, __m512 v, __mmask16 m = 0xffff) {
  if (m == 0xffff)
    _mm512_storeu_ps(p, v);
  else
    _mm512_mask_storeu_ps(p, m, v);
}
QS_TARGET_AVX512 inline void store16(bf16* p, __m512 v, __mmask16 m = 0xffff) { store16_bf16(p, v, m); }

}  // namespace qs::kernels
