// 16-lane (AVX-512) builds of quant_epilogue_avx2.h's loops, with the same f32 operations in
// the same order, so they give the same bits (include only from quant*.cpp files, which are
// compiled without FMA contraction), and the entry points that choose between the two by
// the effective ISA (backend::avx512(): capped by ONEDNN_MAX_CPU_ISA like every choice by
// ISA). The AVX-512 functions carry a GCC target attribute; the binary stays x86-64-v3.
#pragma once
#include <immintrin.h>

#include "backend/dnnl_util.h"
#include "kernels/cpu/quant_epilogue_avx2.h"
#include "kernels/cpu/target_avx512.h"

// GCC 12 reports the _mm512_undefined_*() sources of AVX-512 intrinsics as maybe uninitialized
// (in every file that includes this one).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace qs::kernels {

// The requantisation of an epilogue, 16 lanes: real -> codes in [qmin, qmax] as
// quant_epilogue_run computes them (NaN -> 0 -> zp, clamped before rounding where it
// saturates alike, _mm512_cvtps_epi32 rounding half to even under the default MXCSR).
struct Requant16 {
  __m512 inv, lo, hi;
  __m512i zp, qlo, qhi;
};
QS_TARGET_AVX512_INT inline Requant16 requant16(float inv_out_scale, int32_t out_zp, int32_t qmin, int32_t qmax) {
  return {_mm512_set1_ps(inv_out_scale), _mm512_set1_ps(float(qmin - out_zp - 1)), _mm512_set1_ps(float(qmax - out_zp + 1)),
          _mm512_set1_epi32(out_zp), _mm512_set1_epi32(qmin), _mm512_set1_epi32(qmax)};
}
QS_TARGET_AVX512_INT inline __m512i requant_codes16(const Requant16& k, __m512 real) {
  __m512 y = _mm512_mul_ps(real, k.inv);
  y = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, y, _CMP_ORD_Q), y);
  y = _mm512_min_ps(_mm512_max_ps(y, k.lo), k.hi);
  const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(y), k.zp);
  return _mm512_min_epi32(_mm512_max_epi32(q, k.qlo), k.qhi);
}
// 16 codes in [qmin, qmax] (within u8 or s8) -> 16 bytes: keeping each lane's low byte is exact.
QS_TARGET_AVX512_INT inline void store_codes16(__m512i q, void* out) {
  _mm_storeu_si128(static_cast<__m128i*>(out), _mm512_cvtepi32_epi8(q));
}

QS_TARGET_AVX512_INT inline void quant_epilogue_run_avx512(const quant::QEpilogue& e, const int32_t* acc, int32_t zp,
                                                      const int32_t* sums, const float* scale, const float* bias,
                                                      int64_t n, void* out, DType dt) {
  const __m512i vzp = _mm512_set1_epi32(zp);
  const __m512 zero = _mm512_setzero_ps();
  const Requant16 k = requant16(e.inv_out_scale, e.out_zp, e.out_qmin, e.out_qmax);
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    __m512i a = _mm512_loadu_si512(acc + c);
    if (sums) a = _mm512_sub_epi32(a, _mm512_mullo_epi32(vzp, _mm512_loadu_si512(sums + c)));
    __m512 real = _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_loadu_ps(scale + c));
    real = _mm512_add_ps(real, _mm512_loadu_ps(bias + c));
    if (e.relu) real = _mm512_max_ps(zero, real);
    if (e.real_out) {
      _mm512_storeu_ps(static_cast<float*>(out) + c, real);
      continue;
    }
    store_codes16(requant_codes16(k, real), static_cast<uint8_t*>(out) + c);
  }
  for (; c < n; ++c) e.store(acc[c] - (sums ? zp * sums[c] : 0), scale[c], bias[c], out, dt, c);
}

QS_TARGET_AVX512_INT inline void min_max_avx512(const float* x, int64_t n, float& lo, float& hi) {
  __m512 vl = _mm512_set1_ps(lo), vh = _mm512_set1_ps(hi);
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m512 v = _mm512_loadu_ps(x + k);
    vl = _mm512_min_ps(v, vl);  // NaN: the second operand, as min_max_avx2
    vh = _mm512_max_ps(v, vh);
  }
  alignas(64) float l16[16], h16[16];
  _mm512_store_ps(l16, vl);
  _mm512_store_ps(h16, vh);
  for (int i = 0; i < 16; ++i) lo = std::min(lo, l16[i]), hi = std::max(hi, h16[i]);
  for (; k < n; ++k) lo = std::min(lo, x[k]), hi = std::max(hi, x[k]);
}

QS_TARGET_AVX512_INT inline void quantize_avx512(const float* x, int64_t n, float inv, int32_t zp, int32_t qmin,
                                            int32_t qmax, void* out) {
  const Requant16 k = requant16(inv, zp, qmin, qmax);
  auto* o = static_cast<uint8_t*>(out);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store_codes16(requant_codes16(k, _mm512_loadu_ps(x + i)), o + i);
  for (; i < n; ++i) o[i] = uint8_t(quant::quantize_value(x[i], inv, zp, qmin, qmax));  // i8: the same byte
}

// ---- the entry points: the AVX-512 build where oneDNN runs AVX-512, else the AVX2 one.
inline bool quant_wide() {
  static const bool wide = backend::avx512_loops("INT8 requantisation and dynamic quantisation loops");
  return wide;
}
inline void quant_epilogue(const quant::QEpilogue& e, const int32_t* acc, int32_t zp, const int32_t* sums,
                           const float* scale, const float* bias, int64_t n, void* out, DType dt) {
  if (quant_wide()) return quant_epilogue_run_avx512(e, acc, zp, sums, scale, bias, n, out, dt);
  quant_epilogue_run(e, acc, zp, sums, scale, bias, n, out, dt);
}
inline void min_max_f32(const float* x, int64_t n, float& lo, float& hi) {
  if (quant_wide()) return min_max_avx512(x, n, lo, hi);
  min_max_avx2(x, n, lo, hi);
}
inline void quantize_f32(const float* x, int64_t n, float inv, int32_t zp, int32_t qmin, int32_t qmax, void* out,
                         DType dt) {
  if (quant_wide()) return quantize_avx512(x, n, inv, zp, qmin, qmax, out);
  quantize_avx2(x, n, inv, zp, qmin, qmax, out, dt);
}

}  // namespace qs::kernels
