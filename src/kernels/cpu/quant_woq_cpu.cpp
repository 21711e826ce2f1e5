// woq_linear: weight-only INT8 / INT4 GEMV and small-M GEMM for LM generation (larger
// batches, such as a prompt's prefill, go through blocks of f32 weights).
//   activations "f32": weights are dequantised on the fly (AVX2: s8 or packed nibbles ->
//     s32 -> f32, FMA with x); sums run in f32 in another order than the reference (which
//     sums in double): equal within f32 tolerance.
//   activations "q8": x is quantised per block of 32 and the products are integer dot
//     products (quant_woq_q8_cpu.cpp), by AVX-512 VNNI (kernel "vnni") or AVX2 (kernel "avx2").
// At batch 1 the product is memory-bound: INT8 reads 4x fewer weight bytes than f32, INT4 8x.
#include <immintrin.h>
#include <omp.h>

#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "backend/dnnl_util.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/quant_woq_q8.h"

namespace qs::kernels {

namespace {

// Rows of x sharing one pass over a weight row. Each row keeps four independent
// accumulators: one chain of dependent FMAs would be latency-bound at batch 1.
constexpr int kRows = 2;

struct Acc {
  __m256 a[kRows][4];
  void zero(int mb) {
    for (int j = 0; j < mb; ++j)
      for (auto& v : a[j]) v = _mm256_setzero_ps();
  }
  // a[j][i] += x[j][k + 8 i] * w[i] for the 32 weights w[0..3] at column k.
  void fma32(const float* const* x, int mb, int64_t k, const __m256 (&w)[4]) {
    for (int j = 0; j < mb; ++j)
      for (int i = 0; i < 4; ++i) a[j][i] = _mm256_fmadd_ps(_mm256_loadu_ps(x[j] + k + 8 * i), w[i], a[j][i]);
  }
  __m256 total(int j) const { return _mm256_add_ps(_mm256_add_ps(a[j][0], a[j][1]), _mm256_add_ps(a[j][2], a[j][3])); }
};

// dot[j] = sum_k x[j][k] w[k] for mb rows of x, w s8 [K].
void dot_s8(const float* const* x, int mb, const int8_t* w, int64_t K, float* dot) {
  Acc acc;
  acc.zero(mb);
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m256 wf[4];
    for (int i = 0; i < 4; ++i)
      wf[i] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + k + 8 * i))));
    acc.fma32(x, mb, k, wf);
  }
  for (int j = 0; j < mb; ++j) {
    float s = hsum(acc.total(j));
    for (int64_t t = k; t < K; ++t) s += x[j][t] * float(w[t]);
    dot[j] = s;
  }
}

// dot[j] = sum_g scale[g] sum_{k in g} x[j][k] q[k], q packed s4 (group % 32 == 0).
void dot_s4(const float* const* x, int mb, const uint8_t* w, const float* scale, int64_t K, int64_t group,
            float* dot) {
  const __m128i mask = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
  __m256 total[kRows];
  for (int j = 0; j < mb; ++j) total[j] = _mm256_setzero_ps();
  for (int64_t g0 = 0; g0 < K; g0 += group) {
    Acc acc;
    acc.zero(mb);
    for (int64_t k = g0; k < g0 + group; k += 32) {
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k / 2));
      __m128i lo = _mm_and_si128(b, mask), hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
      // element 2i is the low nibble of byte i: interleave, then sign-extend 4 -> 8 bits
      __m128i e0 = _mm_sub_epi8(_mm_xor_si128(_mm_unpacklo_epi8(lo, hi), eight), eight);
      __m128i e1 = _mm_sub_epi8(_mm_xor_si128(_mm_unpackhi_epi8(lo, hi), eight), eight);
      __m256 wf[4] = {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e0)),
                      _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(e0, e0))),
                      _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e1)),
                      _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(e1, e1)))};
      acc.fma32(x, mb, k, wf);
    }
    __m256 s = _mm256_set1_ps(scale[g0 / group]);
    for (int j = 0; j < mb; ++j) total[j] = _mm256_fmadd_ps(acc.total(j), s, total[j]);
  }
  for (int j = 0; j < mb; ++j) dot[j] = hsum(total[j]);
}

// The same product with no byte shuffles (K % 64 == 0): 64 weights are 8 lanes of 32
// bits, and nibble j of lane l is weight 8 l + j, sign-extended by two shifts. x is given
// permuted to match: xp[64 b + 8 j + l] = x[64 b + 8 l + j] (permute_x64). Lanes 0-3 hold
// weights 0-31 of the block, lanes 4-7 weights 32-63: one scale per half (group >= 32).
template <int J> __m256 nibble(__m256i v) {
  return _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 28 - 4 * J), 28));
}
template <int J> void fma_nibble(__m256i v, const float* const* x, int mb, int64_t k, __m256 (&blk)[kRows][2]) {
  __m256 w = nibble<J>(v);
  for (int r = 0; r < mb; ++r) blk[r][J & 1] = _mm256_fmadd_ps(_mm256_loadu_ps(x[r] + k + 8 * J), w, blk[r][J & 1]);
}
void dot_s4_lanes(const float* const* x, int mb, const uint8_t* w, const float* scale, int64_t K, int64_t group,
                  float* dot) {
  __m256 total[kRows];
  for (int r = 0; r < mb; ++r) total[r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k += 64) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k / 2));
    __m256 blk[kRows][2];
    for (int r = 0; r < mb; ++r) blk[r][0] = blk[r][1] = _mm256_setzero_ps();
    fma_nibble<0>(v, x, mb, k, blk);
    fma_nibble<1>(v, x, mb, k, blk);
    fma_nibble<2>(v, x, mb, k, blk);
    fma_nibble<3>(v, x, mb, k, blk);
    fma_nibble<4>(v, x, mb, k, blk);
    fma_nibble<5>(v, x, mb, k, blk);
    fma_nibble<6>(v, x, mb, k, blk);
    fma_nibble<7>(v, x, mb, k, blk);
    __m256 sv = _mm256_set_m128(_mm_set1_ps(scale[(k + 32) / group]), _mm_set1_ps(scale[k / group]));
    for (int r = 0; r < mb; ++r) total[r] = _mm256_fmadd_ps(_mm256_add_ps(blk[r][0], blk[r][1]), sv, total[r]);
  }
  for (int r = 0; r < mb; ++r) dot[r] = hsum(total[r]);
}
void permute_x64(const float* x, int64_t K, float* xp) {
  for (int64_t b = 0; b < K; b += 64)
    for (int j = 0; j < 8; ++j)
      for (int l = 0; l < 8; ++l) xp[b + 8 * j + l] = x[b + 8 * l + j];
}

// INT8 the same way (K % 32 == 0): 32 weights are 8 lanes, byte j of lane l is weight
// 4 l + j; x permuted as xp[32 b + 8 j + l] = x[32 b + 4 l + j] (permute_x32).
template <int J> void fma_byte(__m256i v, const float* const* x, int mb, int64_t k, __m256 (&blk)[kRows][2]) {
  __m256 w = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 24 - 8 * J), 24));
  for (int r = 0; r < mb; ++r) blk[r][J & 1] = _mm256_fmadd_ps(_mm256_loadu_ps(x[r] + k + 8 * J), w, blk[r][J & 1]);
}
void dot_s8_lanes(const float* const* x, int mb, const int8_t* w, int64_t K, float* dot) {
  __m256 acc[kRows][2];
  for (int r = 0; r < mb; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k));
    fma_byte<0>(v, x, mb, k, acc);
    fma_byte<1>(v, x, mb, k, acc);
    fma_byte<2>(v, x, mb, k, acc);
    fma_byte<3>(v, x, mb, k, acc);
  }
  for (int r = 0; r < mb; ++r) dot[r] = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
}
void permute_x32(const float* x, int64_t K, float* xp) {
  for (int64_t b = 0; b < K; b += 32)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 8; ++l) xp[b + 8 * j + l] = x[b + 4 * l + j];
}

bool q8_activations(const ops::OpCall& c) { return c.attrs.has("activations") && c.attrs.s("activations") == "q8"; }

const char* woq_supports(const ops::OpCall& c) {
  if (c.out[0].numel() == 0) return "empty output";
  if (c.attrs.i("bits", 8) == 4 && c.attrs.i("group_size") % 32 != 0) return "int4 group size not a multiple of 32";
  return nullptr;
}
// VEX-encoded AVX-VNNI (avx2_vnni) has other intrinsics; such CPUs take the AVX2 kernel.
const char* woq_vnni_supports(const ops::OpCall& c) {
  if (!q8_activations(c)) return "f32 activations (the avx2 kernel's)";
  if (!backend::avx512() || !backend::exact_u8s8()) return "no AVX-512 VNNI (or capped below it)";
  return woq_supports(c);
}

// Prefill-sized batches (M > kGemvRows) reuse each weight many times: dequantise blocks
// of kBlock weight rows to f32 and multiply them with oneDNN's f32 matmul (the linear
// row's kernel, run directly so no autocast hook changes its precision).
constexpr int64_t kGemvRows = 8, kBlock = 256;

void woq_blocked(const Tensor& x, const Tensor& w, const float* sp, const float* bp, bool int4, int64_t group,
                 int64_t M, int64_t K, int64_t N, float* y) {
  Tensor x2 = x.reshape({M, K}), blk = empty({std::min(kBlock, N), K});
  float* bw = blk.data_ptr<float>();
  for (int64_t n0 = 0; n0 < N; n0 += kBlock) {
    const int64_t nb = std::min(kBlock, N - n0);
#pragma omp parallel for if (nb * K > 32768)
    for (int64_t r = 0; r < nb; ++r) {
      const int64_t n = n0 + r;
      float* dst = bw + r * K;
      if (!int4) {
        const int8_t* q = static_cast<const int8_t*>(w.raw_data()) + n * K;
        for (int64_t k = 0; k < K; ++k) dst[k] = float(q[k]) * sp[n];
      } else {
        const uint8_t* q = static_cast<const uint8_t*>(w.raw_data()) + n * (K / 2);
        for (int64_t g = 0; g < K / group; ++g) {
          const float sc = sp[n * (K / group) + g];
          for (int64_t i = g * group / 2; i < (g + 1) * group / 2; ++i) {
            dst[2 * i] = float(int8_t(q[i] << 4) >> 4) * sc;  // low nibble, sign-extended
            dst[2 * i + 1] = float(int8_t(q[i]) >> 4) * sc;
          }
        }
      }
    }
    Tensor yb = empty({M, nb});
    ops::OpCall mm{ops::OpKind::linear, {x2, blk.narrow(0, 0, nb), Tensor()}, {}, {yb}};
    ops::run_optimised(mm, "onednn");
    const float* yp = yb.data_ptr<float>();
#pragma omp parallel for if (M * nb > 32768)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t r = 0; r < nb; ++r) y[m * N + n0 + r] = yp[m * nb + r] + (bp ? bp[n0 + r] : 0.0f);
  }
}

// activations "q8": rows of x quantised once, then woq::gemv; prefill-sized batches run
// woq::gemm_vnni (integer products, VNNI), or on AVX2 multiply the dequantised codes (x^) by
// blocks of f32 weights.
void woq_q8(ops::OpCall& c, bool vnni) {
  const Tensor x = c.in[0].contiguous(), w = c.in[1].contiguous(), s = c.in[2].contiguous();
  const Tensor b = c.in[3].defined() ? c.in[3].contiguous() : Tensor();
  const bool int4 = c.attrs.i("bits", 8) == 4;
  const int64_t group = int4 ? c.attrs.i("group_size") : 0;
  const int64_t K = x.size(-1), N = w.size(0), M = K == 0 ? c.out[0].numel() / N : x.numel() / K;
  const float* sp = s.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* y = c.out[0].data_ptr<float>();
  if (K == 0) {
    for (int64_t i = 0; i < M * N; ++i) y[i] = bp ? bp[i % N] : 0.0f;
    return;
  }
  const float* xp = x.data_ptr<float>();
  if (M > kGemvRows && vnni) {
    woq::gemm_vnni(w.raw_data(), int4, sp, N, group, xp, M, K, bp, y);
    return;
  }
  if (M > kGemvRows) {
    Tensor xh = empty({M, K});
    float* h = xh.data_ptr<float>();
#pragma omp parallel for if (M * K > 32768)
    for (int64_t m = 0; m < M; ++m) woq::dequantized_row(xp + m * K, K, h + m * K);
    woq_blocked(xh, w, sp, bp, int4, group, M, K, N, y);
    return;
  }
  const woq::Kind kind = int4 ? (vnni ? woq::Kind::s4_vnni : woq::Kind::s4_avx2)
                              : (vnni ? woq::Kind::s8_vnni : woq::Kind::s8_avx2);
  thread_local std::vector<woq::ActQ8> rows;  // reused: no allocation per token
  if (rows.size() < size_t(M)) rows.resize(size_t(M));
  for (int64_t m = 0; m < M; ++m) woq::quantize_row(xp + m * K, K, kind, rows[size_t(m)]);
  woq::gemv(kind, w.raw_data(), sp, N, group, rows.data(), M, bp, y);
}

void woq_vnni_cpu(ops::OpCall& c) { woq_q8(c, true); }

void woq_linear_cpu(ops::OpCall& c) {
  if (q8_activations(c)) return woq_q8(c, false);
  const Tensor x = c.in[0].contiguous(), w = c.in[1].contiguous(), s = c.in[2].contiguous();
  const Tensor& b = c.in[3];
  Tensor bc = b.defined() ? b.contiguous() : Tensor();
  bool int4 = c.attrs.i("bits", 8) == 4;
  int64_t group = int4 ? c.attrs.i("group_size") : 0;
  int64_t K = x.size(-1), N = w.size(0), M = K == 0 ? 0 : x.numel() / K;
  if (K == 0) M = c.out[0].numel() / N;
  const float* xp = x.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  const float* bp = bc.defined() ? bc.data_ptr<float>() : nullptr;
  float* y = c.out[0].data_ptr<float>();
  if (M > kGemvRows && K > 0) {
    woq_blocked(x, w, sp, bp, int4, group, M, K, N, y);
    return;
  }
  int64_t row_bytes = w.size(1);
  const bool lanes = int4 ? K % 64 == 0 : K % 32 == 0;
  std::vector<float> xperm(lanes ? size_t(M * K) : 0);
  for (int64_t m = 0; lanes && m < M; ++m)
    (int4 ? permute_x64 : permute_x32)(xp + m * K, K, xperm.data() + m * K);
  const float* xin = lanes ? xperm.data() : xp;
#pragma omp parallel for schedule(static) if (N * K > 32768)
  for (int64_t n = 0; n < N; ++n) {
    const void* wrow = static_cast<const char*>(w.raw_data()) + n * row_bytes;
    for (int64_t m0 = 0; m0 < M; m0 += kRows) {
      int mb = int(std::min<int64_t>(kRows, M - m0));
      const float* rows[kRows];
      for (int j = 0; j < mb; ++j) rows[j] = xin + (m0 + j) * K;
      float dot[kRows];
      if (lanes && int4)
        dot_s4_lanes(rows, mb, static_cast<const uint8_t*>(wrow), sp + n * (K / group), K, group, dot);
      else if (lanes)
        dot_s8_lanes(rows, mb, static_cast<const int8_t*>(wrow), K, dot);
      else if (int4)
        dot_s4(rows, mb, static_cast<const uint8_t*>(wrow), sp + n * (K / group), K, group, dot);
      else
        dot_s8(rows, mb, static_cast<const int8_t*>(wrow), K, dot);
      for (int j = 0; j < mb; ++j) {
        float v = int4 ? dot[j] : dot[j] * sp[n];
        y[(m0 + j) * N + n] = v + (bp ? bp[n] : 0.0f);
      }
    }
  }
}

}  // namespace

void register_quant_woq_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::woq_linear, {"vnni", woq_vnni_supports, woq_vnni_cpu});
  ops::add_kernel(t, ops::OpKind::woq_linear, {"avx2", woq_supports, woq_linear_cpu});
}

}  // namespace qs::kernels
