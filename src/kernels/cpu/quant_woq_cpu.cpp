// woq_linear: weight-only INT8 / INT4 GEMV and small-M GEMM for LM generation (larger
// batches, such as a prompt's prefill, go through blocks of f32 weights). Weights are
// dequantised on the fly (AVX2: s8 or packed nibbles -> s32 -> f32, FMA with x); at batch 1
// the product is memory-bound, and INT8 reads 4x fewer weight bytes than f32, INT4 8x.
// Sums run in f32 in another order than the reference (which sums in double): equal within
// f32 tolerance, the one quantised row that is not bit-exact.
#include <immintrin.h>
#include <omp.h>

#include "kernels/cpu/cpu_kernels.h"

namespace qs::kernels {

namespace {

// Rows of x sharing one pass over a weight row. Each row keeps four independent
// accumulators: one chain of dependent FMAs would be latency-bound at batch 1.
constexpr int kRows = 2;

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

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

const char* woq_supports(const ops::OpCall& c) {
  if (c.out[0].numel() == 0) return "empty output";
  if (c.attrs.i("bits", 8) == 4 && c.attrs.i("group_size") % 32 != 0) return "int4 group size not a multiple of 32";
  return nullptr;
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
        for (int64_t k = 0; k < K; ++k) {
          int nib = (q[k / 2] >> (k % 2 == 0 ? 0 : 4)) & 15;
          dst[k] = float(nib >= 8 ? nib - 16 : nib) * sp[n * (K / group) + k / group];
        }
      }
    }
    Tensor yb = empty({M, nb});
    ops::OpCall mm{ops::OpKind::linear, {x2, blk.narrow(0, 0, nb), Tensor()}, {}, {yb}};
    ops::run_kernel(mm, "onednn");
    const float* yp = yb.data_ptr<float>();
#pragma omp parallel for if (M * nb > 32768)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t r = 0; r < nb; ++r) y[m * N + n0 + r] = yp[m * nb + r] + (bp ? bp[n0 + r] : 0.0f);
  }
}

void woq_linear_cpu(ops::OpCall& c) {
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
#pragma omp parallel for schedule(static) if (N * K > 32768)
  for (int64_t n = 0; n < N; ++n) {
    const void* wrow = static_cast<const char*>(w.raw_data()) + n * row_bytes;
    for (int64_t m0 = 0; m0 < M; m0 += kRows) {
      int mb = int(std::min<int64_t>(kRows, M - m0));
      const float* rows[kRows];
      for (int j = 0; j < mb; ++j) rows[j] = xp + (m0 + j) * K;
      float dot[kRows];
      if (int4)
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

void register_quant_woq_cpu(std::vector<ops::OpDef>& t) {
  ops::add_kernel(t, ops::OpKind::woq_linear, {"avx2", woq_supports, woq_linear_cpu});
}

}  // namespace qs::kernels
