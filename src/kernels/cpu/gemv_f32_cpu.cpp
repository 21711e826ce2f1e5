// linear at batch <= 4 in f32 (LM decoding): y = x W^T + b with W [N, K] row-major, read once
// from memory per call. At one row the product is bound by the weight bytes, and oneDNN's
// GEMM (built for reuse) reached about 70% of the machine's read bandwidth where this reaches
// nearly all of it: each pass streams 4 weight rows against the cached x row, with 8
// independent FMA chains, and prefetches the rows two passes on; OpenMP threads split the
// output rows. Sums run in f32 in another order than the reference (f32 tolerance).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/fast_math.h"
#include "kernels/matmul_layout.h"

namespace qs::kernels {

namespace {

constexpr int64_t kMaxRows = 4;  // rows of x; more go to oneDNN's GEMM, which reuses each weight
constexpr int kR = 4;            // weight rows per pass
// Each pass also asks for the rows kPrefetchRows further on, into L2 (one line per load of
// them), as the quantised GEMVs do (quant_woq_q8_cpu.cpp).
constexpr int64_t kPrefetchRows = 8;

// out[r] = x . w[r] for R rows of w (row stride ldw).
template <int R> void dot_rows(const float* x, const float* w, int64_t ldw, int64_t K, float* out) {
  __m256 a[R][2];
  for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w + (r + kPrefetchRows) * ldw + k), _MM_HINT_T1);
      a[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * ldw + k), x0, a[r][0]);
      a[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * ldw + k + 8), x1, a[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(_mm256_add_ps(a[r][0], a[r][1]));
    for (int64_t t = k; t < K; ++t) s += x[t] * w[r * ldw + t];
    out[r] = s;
  }
}

const char* gemv_supports(const ops::OpCall& c) {
  for (auto& t : c.in)
    if (t.defined() && t.dtype() != DType::f32) return "f32 only";
  const Tensor &x = c.in[0], &w = c.in[1];
  const int64_t K = x.size(-1);
  if (c.out[0].numel() == 0 || K == 0) return "empty product";
  if (x.numel() / K > kMaxRows) return "more than 4 rows (oneDNN's GEMM reuses the weights)";
  if (w.stride(1) != 1 || w.stride(0) != K) return "weights not row-major";
  return nullptr;
}

void gemv_f32(ops::OpCall& c) {
  const Tensor x = c.in[0].contiguous(), &w = c.in[1], &b = c.in[2];
  const int64_t K = x.size(-1), N = w.size(0), M = x.numel() / K;
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  const int64_t bs = b.defined() ? b.stride(0) : 0;
  const bool gelu = linear_gelu(c.attrs);
  float* y = c.out[0].data_ptr<float>();
  const int64_t chunks = (N + kR - 1) / kR;
#pragma omp parallel for schedule(static) if (N * K > 32768)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t n0 = ch * kR;
    const int nr = int(std::min<int64_t>(kR, N - n0));
    for (int64_t m = 0; m < M; ++m) {  // further rows of x reuse the weight rows from cache
      float out[kR];
      const float* xr = xp + m * K;
      const float* wr = wp + n0 * K;
      switch (nr) {
        case 4: dot_rows<4>(xr, wr, K, K, out); break;
        case 3: dot_rows<3>(xr, wr, K, K, out); break;
        case 2: dot_rows<2>(xr, wr, K, K, out); break;
        default: dot_rows<1>(xr, wr, K, K, out); break;
      }
      for (int r = 0; r < nr; ++r) {
        float v = out[r] + (bp ? bp[(n0 + r) * bs] : 0.0f);
        if (gelu) v = 0.5f * v * (1.0f + fast_erf(v * 0.70710678118654752f));
        y[m * N + n0 + r] = v;
      }
    }
  }
}

}  // namespace

void register_gemv_f32_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::linear, {"gemv", gemv_supports, gemv_f32});
}

}  // namespace qs::kernels
