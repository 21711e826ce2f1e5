// woq_linear with q8 activations at small batch (LM decoding): x is quantised once per row
// into blocks of 32 codes and a scale (kernels/quant_math.h, the reference's rule), and each
// block's product with a weight row is an exact integer dot product, scaled in f32:
//   y[n] = w_scale[n] * sum_b d_b * sum_{k in b} q_k w[n, k]                    (int8)
//   y[n] = sum_g w_scale[n, g] * sum_{b in g} d_b * sum_{k in b} q_k w[n, k]  (int4)
// This is how llama.cpp multiplies Q8_0 / Q4_0 weights: at batch 1 the product is bound by
// the weight bytes read, and integer dot products (VNNI's vpdpbusd: 32 products a cycle in
// one instruction) keep the arithmetic well below that bound where f32 dequantisation did not.
//
// Weights are read in their stored layout (row-major, int4 packed two per byte, element 2i
// in the low nibble): instead of repacking the weights, the activation codes of each block of
// 32 are permuted to match (int4: the 16 even elements, then the 16 odd ones, the order in
// which a byte split into low and high nibbles delivers them).
//
// vpdpbusd multiplies unsigned by signed bytes, so the weights are offset into u8 (int8: w
// + 128 by flipping the sign bit; int4: nibble ^ 8 = q + 8) and the offset's contribution,
// offset * (sum of the four codes of each 32-bit lane), is subtracted exactly by starting
// each lane's accumulator at its negative (`nc`). AVX2 without VNNI: int4 as (q + 8) x code
// pairs with vpmaddubsw (at most 15 * 127 * 2, no saturation), int8 with codes widened to 16
// bits and vpmaddwd (exact for every s8 weight, -128 included).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/quant_woq_q8.h"
#include "kernels/cpu/target_avx512.h"
#include "kernels/quant_math.h"

// GCC 12 reports _mm512_cvtepi32_ps's _mm512_undefined_ps() source as maybe uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace qs::kernels::woq {

using quant::kActBlock;

namespace {

// The block's codes with the scale d, as quantize_act_block (bit for bit: cvtps_epi32 rounds
// half to even like nearbyint, and |x / d| <= 127 up to one rounding, so the saturating packs
// and the clamp to -127 reproduce its clamp).
void quantize_block32(const float* x, float d, int8_t* q) {
  const __m256 inv = _mm256_set1_ps(d > 0.0f ? quant::inv_scale(d) : 0.0f);
  __m256i i[4];
  for (int j = 0; j < 4; ++j) i[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), inv));
  // packs work within 128-bit halves: (0,1) -> lanes 0-3 of 0 | 0-3 of 1 | 4-7 of 0 | 4-7 of 1
  __m256i s16a = _mm256_packs_epi32(i[0], i[1]), s16b = _mm256_packs_epi32(i[2], i[3]);
  __m256i s8 = _mm256_packs_epi16(s16a, s16b);
  s8 = _mm256_permutevar8x32_epi32(s8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  s8 = _mm256_max_epi8(s8, _mm256_set1_epi8(-127));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), s8);
}

float block_scale32(const float* x) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  const __m256 big = _mm256_set1_ps(3.40282347e38f);
  for (int j = 0; j < 4; ++j) {
    __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + 8 * j), abs_mask);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, big, _CMP_NLE_UQ));  // NaN or inf
    m = _mm256_max_ps(m, a);
  }
  if (_mm256_movemask_ps(bad)) return std::nanf("");
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h) / 127.0f;  // act_block_scale's amax / 127
}

// Weight rows are streamed from memory once per call: each pass over R rows also asks for
// the rows kPrefetchRows further on, into L2 (one request per cache line), so that the next
// passes find their rows there. Measured on Zen 4 (gemv_stream_int8 / _int4): the hardware
// prefetcher alone reached about 40% of the read bandwidth, prefetching into L1 about 50%,
// into L2 8 rows ahead 80-90% (16 rows ahead, or 4, less).
constexpr int64_t kPrefetchRows = 8;

// ---- int8 weights, R rows of w against one quantised x row; out[r] = sum_k x^_k w[r, k]
// (before the row scale).

template <int R>
QS_TARGET_AVX512_VNNI void rows_s8_vnni(const int8_t* w, int64_t ldw, const ActQ8& a, float* out) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i flip = _mm256_set1_epi8(char(0x80));
  for (int64_t b = 0; b < a.blocks; ++b) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + kActBlock * b));
    const __m256i nc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.nc.data() + 8 * b));
    const __m256 dv = _mm256_broadcast_ss(a.d.data() + b);
    for (int r = 0; r < R; ++r) {
      if (b % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + (r + kPrefetchRows) * ldw + kActBlock * b), _MM_HINT_T1);
      __m256i wv = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * ldw + kActBlock * b)), flip);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_dpbusd_epi32(nc, wv, xv)), dv, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]);
}

template <int R>
void rows_s8_avx2(const int8_t* w, int64_t ldw, const ActQ8& a, float* out) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < a.blocks; ++b) {
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q16.data() + kActBlock * b));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q16.data() + kActBlock * b + 16));
    const __m256 dv = _mm256_broadcast_ss(a.d.data() + b);
    for (int r = 0; r < R; ++r) {
      const int8_t* wp = w + r * ldw + kActBlock * b;
      if (b % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * ldw), _MM_HINT_T1);
      __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp)));
      __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp + 16)));
      __m256i p = _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), dv, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]);
}

// The last block when K is not a multiple of 32 (int8 only), in plain code.
float tail_s8(const int8_t* w, const ActQ8& a) {
  const int64_t k0 = a.blocks * kActBlock;
  int32_t s = 0;
  for (int64_t k = k0; k < a.K; ++k) s += int32_t(a.q[size_t(k)]) * int32_t(w[k]);
  return a.K > k0 ? float(s) * a.d[size_t(a.blocks)] : 0.0f;
}

// ---- int4 weights (K a multiple of the group, the group a multiple of 32); the row scales
// are applied here, one per group: out[r] = sum_g scale[r, g] * (the group's blocks).

// 32 weights (16 packed bytes) as u8 q + 8: the 16 even elements, then the 16 odd ones. The
// bytes go to both halves, the upper half is shifted right by a nibble, and one mask keeps
// the low nibble of every byte (xor 8 maps two's complement [-8, 7] to q + 8 in [0, 15]).
inline __m256i nibbles_u8(const uint8_t* p) {
  __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
  return _mm256_xor_si256(_mm256_and_si256(v, _mm256_set1_epi8(15)), _mm256_set1_epi8(8));
}
// The same with the mask and the xor in one ternary-logic instruction ((a ^ b) & c: 0x28).
QS_TARGET_AVX512_VNNI inline __m256i nibbles_u8_vnni(const uint8_t* p) {
  __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
  return _mm256_ternarylogic_epi32(v, _mm256_set1_epi8(8), _mm256_set1_epi8(15), 0x28);
}

template <int R>
QS_TARGET_AVX512_VNNI
void rows_s4_vnni(const uint8_t* w, int64_t ldw, const float* scale, int64_t lds, int64_t group,
                  const ActQ8& a, float* out) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const int64_t per_group = group / kActBlock;
  for (int64_t b0 = 0, g = 0; b0 < a.blocks; b0 += per_group, ++g) {
    __m256 gacc[R];
    for (int r = 0; r < R; ++r) gacc[r] = _mm256_setzero_ps();
    for (int64_t b = b0; b < b0 + per_group; ++b) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + kActBlock * b));
      const __m256i nc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.nc.data() + 8 * b));
      const __m256 dv = _mm256_broadcast_ss(a.d.data() + b);
      for (int r = 0; r < R; ++r) {
        if (b % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + (r + kPrefetchRows) * ldw + kActBlock / 2 * b), _MM_HINT_T1);
        __m256i wv = nibbles_u8_vnni(w + r * ldw + kActBlock / 2 * b);
        gacc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_dpbusd_epi32(nc, wv, xv)), dv, gacc[r]);
      }
    }
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(gacc[r], _mm256_set1_ps(scale[r * lds + g]), acc[r]);
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]);
}

// rows_s4_vnni's loop again with AVX2's dot product: a function is compiled for one target
// (the VNNI one may not be inlined into, or instantiated for, code that runs on AVX2-only CPUs),
// so the two ISAs' loops are written out each.
template <int R>
void rows_s4_avx2(const uint8_t* w, int64_t ldw, const float* scale, int64_t lds, int64_t group, const ActQ8& a,
                  float* out) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t per_group = group / kActBlock;
  for (int64_t b0 = 0, g = 0; b0 < a.blocks; b0 += per_group, ++g) {
    __m256 gacc[R];
    for (int r = 0; r < R; ++r) gacc[r] = _mm256_setzero_ps();
    for (int64_t b = b0; b < b0 + per_group; ++b) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + kActBlock * b));
      const __m256i nc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.nc.data() + 8 * b));
      const __m256 dv = _mm256_broadcast_ss(a.d.data() + b);
      for (int r = 0; r < R; ++r) {
        if (b % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + (r + kPrefetchRows) * ldw + kActBlock / 2 * b), _MM_HINT_T1);
        __m256i wv = nibbles_u8(w + r * ldw + kActBlock / 2 * b);
        __m256i p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), ones), nc);
        gacc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), dv, gacc[r]);
      }
    }
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(gacc[r], _mm256_set1_ps(scale[r * lds + g]), acc[r]);
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]);
}

constexpr int kR = 4;  // weight rows per pass over a block of x: x loads shared, 4 independent chains

// ---- prefill (many rows of x), AVX-512 VNNI: a GEMM whose K is cut into the activation
// blocks. A panel of 32 output columns is packed per call into vpdpbusd's layout (4
// consecutive k of 16 columns per 64 bytes, u8 = int8 w + 128 or int4 q + 8, K padded to
// whole blocks with zero weights); a tile of kMr rows x 32 columns keeps 2 s32 accumulators
// per row, started at the block's -offset * (sum of the row's codes) so that they end exact,
// and adds each block's integer sums into f32 accumulators with the row's block scale (times
// the columns' group scale for int4).
constexpr int kMr = 6;
constexpr int64_t kPanel = 32;

// out[(k / 4) * 128 + c * 4 + k % 4] = the u8 form of weight (n0 + c, k) for c < 32: int8 w + 128,
// int4 q + 8 (q = 0 beyond N or K); 4 weights (one 32-bit lane) at a time.
QS_TARGET_AVX512_VNNI void pack_panel(const void* w, bool int4, int64_t K, int64_t n0, int64_t nc, int64_t kp, uint8_t* out) {
  const uint32_t zero4 = int4 ? 0x08080808u : 0x80808080u;
  for (int64_t c = 0; c < kPanel; ++c) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(out) + c;  // lane (k4, c) at dst[k4 * kPanel]
    int64_t k4 = 0;
    if (c < nc && int4) {  // K is a multiple of 32 here: whole lanes of 2 bytes
      const uint8_t* row = static_cast<const uint8_t*>(w) + (n0 + c) * (K / 2);
      for (; 4 * k4 < K; ++k4) {
        const uint32_t b = uint32_t(row[2 * k4]) | uint32_t(row[2 * k4 + 1]) << 8;
        dst[k4 * kPanel] = ((b & 15) | ((b >> 4) & 15) << 8 | ((b >> 8) & 15) << 16 | ((b >> 12) & 15) << 24) ^ zero4;
      }
    } else if (c < nc) {
      const int8_t* row = static_cast<const int8_t*>(w) + (n0 + c) * K;
      for (; 4 * k4 + 4 <= K; ++k4) {
        uint32_t v;
        __builtin_memcpy(&v, row + 4 * k4, 4);
        dst[k4 * kPanel] = v ^ zero4;
      }
      if (4 * k4 < K) {  // the lane K falls in
        uint32_t v = zero4;
        for (int64_t j = 0; 4 * k4 + j < K; ++j)
          v = (v & ~(0xffu << (8 * j))) | uint32_t(uint8_t(row[4 * k4 + j] ^ 0x80)) << (8 * j);
        dst[k4 * kPanel] = v;
        ++k4;
      }
    }
    for (; k4 < kp / 4; ++k4) dst[k4 * kPanel] = zero4;
  }
}

// gscale: int4's weight scales of the panel's columns, [group][32] (one group per
// blocks_per_group blocks); null for int8 (its per-column scale is applied by the caller).
template <int MR>
QS_TARGET_AVX512_VNNI
void tile(const uint8_t* pw, const int8_t* xq, int64_t ldx, const float* d, const int32_t* corr, int64_t ldb,
          int64_t blocks, const float* gscale, int64_t blocks_per_group, __m512 (&out)[kMr][2]) {
  __m512 f[MR][2];
  for (int r = 0; r < MR; ++r) f[r][0] = f[r][1] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i s[MR][2];
    for (int r = 0; r < MR; ++r) s[r][0] = s[r][1] = _mm512_set1_epi32(corr[r * ldb + b]);
    const uint8_t* wb = pw + b * kActBlock * kPanel;
#pragma GCC unroll 8
    for (int kk = 0; kk < kActBlock / 4; ++kk) {
      const __m512i w0 = _mm512_loadu_si512(wb + kk * 4 * kPanel), w1 = _mm512_loadu_si512(wb + kk * 4 * kPanel + 64);
      for (int r = 0; r < MR; ++r) {
        int32_t a4;
        __builtin_memcpy(&a4, xq + r * ldx + b * kActBlock + 4 * kk, 4);
        const __m512i a = _mm512_set1_epi32(a4);
        s[r][0] = _mm512_dpbusd_epi32(s[r][0], w0, a);
        s[r][1] = _mm512_dpbusd_epi32(s[r][1], w1, a);
      }
    }
    if (gscale) {
      const float* gs = gscale + b / blocks_per_group * kPanel;
      const __m512 g0 = _mm512_loadu_ps(gs), g1 = _mm512_loadu_ps(gs + 16);
      for (int r = 0; r < MR; ++r) {
        const __m512 dv = _mm512_set1_ps(d[r * ldb + b]);
        f[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][0]), _mm512_mul_ps(dv, g0), f[r][0]);
        f[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][1]), _mm512_mul_ps(dv, g1), f[r][1]);
      }
    } else {
      for (int r = 0; r < MR; ++r) {
        const __m512 dv = _mm512_set1_ps(d[r * ldb + b]);
        f[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][0]), dv, f[r][0]);
        f[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][1]), dv, f[r][1]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) out[r][0] = f[r][0], out[r][1] = f[r][1];
}

}  // namespace

void quantize_row(const float* x, int64_t K, Kind kind, ActQ8& a) {
  a.K = K;
  a.blocks = K / kActBlock;
  const int64_t all = (K + kActBlock - 1) / kActBlock;
  a.q.resize(size_t(K));
  a.d.resize(size_t(all));
  int8_t tmp[kActBlock];
  for (int64_t b = 0; b < all; ++b) {
    const float* xb = x + kActBlock * b;
    int8_t* qb = a.q.data() + kActBlock * b;
    const int64_t len = std::min(kActBlock, K - kActBlock * b);
    const float d = len == kActBlock ? block_scale32(xb) : quant::act_block_scale(xb, len);
    a.d[size_t(b)] = d;
    // the vector rounding where 1 / d is finite (the rule's x * inf = NaN -> 0 case stays scalar)
    if (len == kActBlock && d > 0.0f && std::isfinite(quant::inv_scale(d)))
      quantize_block32(xb, d, tmp);
    else
      quant::quantize_act_block(xb, len, d, tmp);
    if (kind == Kind::s4_avx2 || kind == Kind::s4_vnni) {
      for (int i = 0; i < 16; ++i) qb[i] = tmp[2 * i], qb[16 + i] = tmp[2 * i + 1];
    } else {
      std::copy(tmp, tmp + len, qb);
    }
  }
  if (kind == Kind::codes) return;
  if (kind == Kind::s8_avx2) {
    a.q16.resize(size_t(K));
    for (int64_t k = 0; k < K; ++k) a.q16[size_t(k)] = a.q[size_t(k)];
    return;
  }
  // the offset's share of each 32-bit lane, negated: -offset * (sum of the lane's 4 codes)
  const int32_t offset = kind == Kind::s8_vnni ? 128 : 8;
  a.nc.resize(size_t(a.blocks * 8));
  for (int64_t j = 0; j < a.blocks * 8; ++j) {
    const int8_t* q = a.q.data() + 4 * j;
    a.nc[size_t(j)] = -offset * (int32_t(q[0]) + q[1] + q[2] + q[3]);
  }
}

void dequantized_row(const float* x, int64_t K, float* out) {
  ActQ8 a;
  quantize_row(x, K, Kind::codes, a);
  for (int64_t k = 0; k < K; ++k) out[k] = float(a.q[size_t(k)]) * a.d[size_t(k / kActBlock)];
}

void gemv(Kind kind, const void* w, const float* scale, int64_t N, int64_t group, const ActQ8* rows, int64_t M,
          const float* bias, float* y) {
  const int64_t K = rows[0].K;
  const bool int4 = kind == Kind::s4_avx2 || kind == Kind::s4_vnni;
  const int64_t ldw = int4 ? K / 2 : K, lds = int4 ? K / group : 1;
  const int64_t chunks = (N + kR - 1) / kR;
#pragma omp parallel for schedule(static) if (N * K > 32768)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t n0 = c * kR;
    const int nr = int(std::min<int64_t>(kR, N - n0));
    for (int64_t m = 0; m < M; ++m) {
      const ActQ8& a = rows[m];
      float out[kR];
      if (int4) {
        const uint8_t* wp = static_cast<const uint8_t*>(w) + n0 * ldw;
        const float* sp = scale + n0 * lds;
        auto run = kind == Kind::s4_vnni
                       ? (nr == kR ? rows_s4_vnni<kR> : nr == 3 ? rows_s4_vnni<3> : nr == 2 ? rows_s4_vnni<2> : rows_s4_vnni<1>)
                       : (nr == kR ? rows_s4_avx2<kR> : nr == 3 ? rows_s4_avx2<3> : nr == 2 ? rows_s4_avx2<2> : rows_s4_avx2<1>);
        run(wp, ldw, sp, lds, group, a, out);
      } else {
        const int8_t* wp = static_cast<const int8_t*>(w) + n0 * ldw;
        auto run = kind == Kind::s8_vnni
                       ? (nr == kR ? rows_s8_vnni<kR> : nr == 3 ? rows_s8_vnni<3> : nr == 2 ? rows_s8_vnni<2> : rows_s8_vnni<1>)
                       : (nr == kR ? rows_s8_avx2<kR> : nr == 3 ? rows_s8_avx2<3> : nr == 2 ? rows_s8_avx2<2> : rows_s8_avx2<1>);
        run(wp, ldw, a, out);
        for (int r = 0; r < nr; ++r) out[r] = (out[r] + tail_s8(wp + r * ldw, a)) * scale[n0 + r];
      }
      for (int r = 0; r < nr; ++r) y[m * N + n0 + r] = out[r] + (bias ? bias[n0 + r] : 0.0f);
    }
  }
}

// One panel of 32 output columns against every row of x: the body of gemm_vnni's parallel
// loop, a function of its own so that its AVX-512 code carries the target attribute (clang
// does not give it to the region OpenMP outlines from a function that has it).
QS_TARGET_AVX512_VNNI
static void panel_product(const void* w, bool int4, const float* scale, const float* bias, int64_t N,
                          int64_t group, int64_t K, int64_t M, const int8_t* xq, const float* d,
                          const int32_t* corr, int64_t p, uint8_t* pw, float* gs, float* y) {
  const int64_t blocks = (K + kActBlock - 1) / kActBlock, kp = blocks * kActBlock, groups = int4 ? K / group : 0;
  const int64_t n0 = p * kPanel, nc = std::min(kPanel, N - n0);
  pack_panel(w, int4, K, n0, nc, kp, pw);
  alignas(64) float sc[kPanel] = {}, bs[kPanel] = {};
  for (int64_t c = 0; c < nc; ++c) sc[c] = int4 ? 1.0f : scale[n0 + c], bs[c] = bias ? bias[n0 + c] : 0.0f;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t c = 0; c < kPanel; ++c) gs[g * kPanel + c] = c < nc ? scale[(n0 + c) * groups + g] : 0.0f;
  const __m512 s0 = _mm512_load_ps(sc), s1 = _mm512_load_ps(sc + 16), b0 = _mm512_load_ps(bs), b1 = _mm512_load_ps(bs + 16);
  const float* gsp = int4 ? gs : nullptr;
  const int64_t bpg = int4 ? group / kActBlock : 1;
  for (int64_t m0 = 0; m0 < M; m0 += kMr) {
    const int mr = int(std::min<int64_t>(kMr, M - m0));
    __m512 acc[kMr][2];
    const int8_t* xr = xq + m0 * kp;
    const float* dr = d + m0 * blocks;
    const int32_t* cr = corr + m0 * blocks;
    switch (mr) {
      case 6: tile<6>(pw, xr, kp, dr, cr, blocks, blocks, gsp, bpg, acc); break;
      case 5: tile<5>(pw, xr, kp, dr, cr, blocks, blocks, gsp, bpg, acc); break;
      case 4: tile<4>(pw, xr, kp, dr, cr, blocks, blocks, gsp, bpg, acc); break;
      case 3: tile<3>(pw, xr, kp, dr, cr, blocks, blocks, gsp, bpg, acc); break;
      case 2: tile<2>(pw, xr, kp, dr, cr, blocks, blocks, gsp, bpg, acc); break;
      default: tile<1>(pw, xr, kp, dr, cr, blocks, blocks, gsp, bpg, acc); break;
    }
    for (int r = 0; r < mr; ++r) {
      alignas(64) float row[kPanel];
      _mm512_store_ps(row, _mm512_fmadd_ps(acc[r][0], s0, b0));
      _mm512_store_ps(row + 16, _mm512_fmadd_ps(acc[r][1], s1, b1));
      std::copy(row, row + nc, y + (m0 + r) * N + n0);
    }
  }
}

void gemm_vnni(const void* w, bool int4, const float* scale, int64_t N, int64_t group, const float* x, int64_t M,
               int64_t K, const float* bias, float* y) {
  const int64_t blocks = (K + kActBlock - 1) / kActBlock, kp = blocks * kActBlock;
  const int64_t offset = int4 ? 8 : 128, groups = int4 ? K / group : 0;
  // the rows of x: codes padded to whole blocks, block scales, -offset * block code sums
  std::vector<int8_t> xq(size_t(M * kp), 0);
  std::vector<float> d(size_t(M * blocks));
  std::vector<int32_t> corr(size_t(M * blocks));
#pragma omp parallel for if (M * K > 32768)
  for (int64_t m = 0; m < M; ++m) {
    ActQ8 a;
    quantize_row(x + m * K, K, Kind::codes, a);
    std::copy(a.q.begin(), a.q.end(), xq.begin() + m * kp);
    for (int64_t b = 0; b < blocks; ++b) {
      d[size_t(m * blocks + b)] = a.d[size_t(b)];
      int32_t sum = 0;
      for (int64_t k = b * kActBlock; k < std::min(K, (b + 1) * kActBlock); ++k) sum += a.q[size_t(k)];
      corr[size_t(m * blocks + b)] = int32_t(-offset) * sum;
    }
  }
  const int64_t panels = (N + kPanel - 1) / kPanel;
#pragma omp parallel
  {
    std::vector<uint8_t> pw(size_t(kp * kPanel));
    std::vector<float> gs(size_t(groups * kPanel));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels; ++p)
      panel_product(w, int4, scale, bias, N, group, K, M, xq.data(), d.data(), corr.data(), p, pw.data(), gs.data(), y);
  }
}

}  // namespace qs::kernels::woq
