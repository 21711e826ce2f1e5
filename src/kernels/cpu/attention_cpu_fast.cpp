// Fused attention forward in f32, GEMM-shaped: the same tiled online softmax as
// attention_cpu.cpp (same tiles, same masks, same exp), but a task's query rows are
// processed as a block, so both products run as register-blocked micro-kernels
//   S[Br x Bc] = Q_scaled[Br x dk] K_tile^T      O[Br x dv] = corr * O + P[Br x Bc] V_tile
// The per-row kernel computed a row of scores and then a row of P V at a time, each FMA
// waiting on a load of its own; this one reuses every loaded K or V vector across rows.
// Two builds of the products and the softmax step, chosen per call (AttnIsa):
//   AVX2:    6 rows x 16 columns of accumulators (12 ymm registers, 8 loads per 12 FMAs)
//   AVX-512: 12 rows x 32 columns (24 zmm registers, 14 loads per 24 FMAs), and the
//            softmax's exp 16 lanes wide; compiled through target attributes, so the binary
//            stays x86-64-v3 and runs it only where oneDNN's effective ISA is AVX-512.
// Both sum every product in the same order (t ascending, one accumulator per output) and
// run the same softmax (the row sums as the same tree of 16 partials), so they give the same
// bits (AttentionFastPaths.TheAvx512BuildRunsWhereOneDnnHasAvx512).
// Extra memory stays O(Br (Bc + dk + dv)) per thread: no n x n matrix.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>

#include "kernels/cpu/attention_cpu.h"
#include "kernels/cpu/target_avx512.h"

namespace qs::kernels {

namespace {

constexpr int kMr = 6;  // rows of a micro-kernel block

// C[r][0, 16) = (acc ? C[r] : 0) + sum_{t < T} A[r * lda + t] * B[t * ldb + (0, 16)] for r < R.
template <int R, bool kAcc>
void micro_6x16(int64_t T, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  __m256 c0[R], c1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    c0[r] = kAcc ? _mm256_loadu_ps(C + r * ldc) : _mm256_setzero_ps();
    c1[r] = kAcc ? _mm256_loadu_ps(C + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t t = 0; t < T; ++t) {
    const __m256 b0 = _mm256_loadu_ps(B + t * ldb), b1 = _mm256_loadu_ps(B + t * ldb + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + t);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(C + r * ldc, c0[r]);
    _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
  }
}

// C[rows][0, 16 cols) (+)= A B over every 16-column strip: rows in blocks of kMr.
template <bool kAcc>
void gemm_strips(int64_t rows, int64_t cols, int64_t T, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float* C, int64_t ldc) {
  for (int64_t c0 = 0; c0 < cols; c0 += 16)
    for (int64_t r0 = 0; r0 < rows; r0 += kMr) {
      const float* a = A + r0 * lda;
      float* c = C + r0 * ldc + c0;
      switch (std::min<int64_t>(kMr, rows - r0)) {
        case 6: micro_6x16<6, kAcc>(T, a, lda, B + c0, ldb, c, ldc); break;
        case 5: micro_6x16<5, kAcc>(T, a, lda, B + c0, ldb, c, ldc); break;
        case 4: micro_6x16<4, kAcc>(T, a, lda, B + c0, ldb, c, ldc); break;
        case 3: micro_6x16<3, kAcc>(T, a, lda, B + c0, ldb, c, ldc); break;
        case 2: micro_6x16<2, kAcc>(T, a, lda, B + c0, ldb, c, ldc); break;
        default: micro_6x16<1, kAcc>(T, a, lda, B + c0, ldb, c, ldc); break;
      }
    }
}

constexpr int kMrZ = 12;  // rows of an AVX-512 micro-kernel block

// C[r][0, 32) = (acc ? C[r] : 0) + sum_{t < T} A[r * lda + t] * B[t * ldb + (0, 32)] for r < R.
template <int R, bool kAcc>
QS_TARGET_AVX512
void micro_12x32(int64_t T, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc) {
  __m512 c0[R], c1[R];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    c0[r] = kAcc ? _mm512_loadu_ps(C + r * ldc) : _mm512_setzero_ps();
    c1[r] = kAcc ? _mm512_loadu_ps(C + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t t = 0; t < T; ++t) {
    const __m512 b0 = _mm512_loadu_ps(B + t * ldb), b1 = _mm512_loadu_ps(B + t * ldb + 16);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + t]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(C + r * ldc, c0[r]);
    _mm512_storeu_ps(C + r * ldc + 16, c1[r]);
  }
}

template <bool kAcc>
QS_TARGET_AVX512
void micro_rows_x32(int64_t rows, int64_t T, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc) {
  switch (rows) {
    case 12: return micro_12x32<12, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 11: return micro_12x32<11, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 10: return micro_12x32<10, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 9: return micro_12x32<9, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 8: return micro_12x32<8, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 7: return micro_12x32<7, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 6: return micro_12x32<6, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 5: return micro_12x32<5, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 4: return micro_12x32<4, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 3: return micro_12x32<3, kAcc>(T, A, lda, B, ldb, C, ldc);
    case 2: return micro_12x32<2, kAcc>(T, A, lda, B, ldb, C, ldc);
    default: return micro_12x32<1, kAcc>(T, A, lda, B, ldb, C, ldc);
  }
}

// gemm_strips with 32-column strips (a last strip of 16 takes the AVX2 micro-kernel).
template <bool kAcc>
QS_TARGET_AVX512
void gemm_strips_zmm(int64_t rows, int64_t cols, int64_t T, const float* A, int64_t lda, const float* B,
                     int64_t ldb, float* C, int64_t ldc) {
  int64_t c0 = 0;
  for (; c0 + 32 <= cols; c0 += 32)
    for (int64_t r0 = 0; r0 < rows; r0 += kMrZ)
      micro_rows_x32<kAcc>(std::min<int64_t>(kMrZ, rows - r0), T, A + r0 * lda, lda, B + c0, ldb, C + r0 * ldc + c0,
                           ldc);
  if (c0 < cols) gemm_strips<kAcc>(rows, cols - c0, T, A, lda, B + c0, ldb, C + c0, ldc);
}

// Row stride of the transposed keys: whole tiles, plus 16 floats so that the rows of a tile
// do not all fall into the same few L1 sets when m is a multiple of 256.
int64_t padded_keys(const AttnConfig& c) { return (c.m + kAttnBc - 1) / kAttnBc * kAttnBc + 16; }

// K^T of every (batch, kv head), zero-padded to whole tiles: kt[(b hkv + g) dk + x][j] =
// k[b, g, j, x]. Transposed once per call (O(m dk) per head, the size of K) instead of once
// per query block and tile.
std::vector<float> transpose_keys(const AttnPlan<float>& p) {
  const AttnConfig& c = p.c;
  const int64_t mp = padded_keys(c), pairs = c.b * c.hkv;
  std::vector<float> kt(size_t(pairs * c.dk * mp));
#pragma omp parallel for if (pairs * c.dk * mp > 65536)
  for (int64_t bg = 0; bg < pairs; ++bg) {
    const float* k0 = p.k_row(bg / c.hkv, bg % c.hkv, 0);
    float* dst = kt.data() + bg * c.dk * mp;
    for (int64_t j = 0; j < c.m; ++j)
      for (int64_t x = 0; x < c.dk; ++x) dst[x * mp + j] = k0[j * p.ks[2] + x];
  }
  return kt;
}

struct FastScratch {
  std::vector<float> s, q, o, mx, l;
  FastScratch(const AttnConfig& c)
      : s(size_t(kAttnBr * kAttnBc)), q(size_t(c.group() * kAttnBr * c.dk)),
        o(size_t(c.group() * kAttnBr * c.dv)), mx(size_t(c.group() * kAttnBr)), l(mx.size()) {}
};

// The online-softmax step of rows [0, rows) of a block (query rows i, i + 1, ...) after
// their raw scores (row r at s + r kAttnBc): masks and biases, the new maxima, P = exp(s -
// max) in place, l = l corr + sum P and O *= corr with corr = exp(old max - new max). The
// corrections of all rows are one vectorised loop, and each row's sum of P is a tree of 16
// partial sums: a per-row scalar exp and a 64-long chain of adds held the AVX-512 build to
// the speed of its products. One build per ISA (inlined in each, so the AVX-512 one computes
// its exps 16 lanes wide).
__attribute__((always_inline)) inline void softmax_rows(const AttnPlan<float>& p, int64_t b, int64_t h, int64_t i,
                                                        int64_t j0, int64_t jn, int64_t rows, float* s, float* mx,
                                                        float* l, float* o) {
  alignas(64) float mnew[kAttnBr], corr[kAttnBr];
  for (int64_t r = 0; r < rows; ++r)
    mnew[r] = std::max(mx[r], attn_mask_row(p, b, h, i + r, j0, jn, s + r * kAttnBc, s + r * kAttnBc));
#pragma omp simd
  for (int64_t r = 0; r < rows; ++r)  // nothing visible yet (max -inf): corr 1 and P 0
    corr[r] = mnew[r] == -INFINITY ? 1.0f : fast_exp(mx[r] - mnew[r]);
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * kAttnBc;
    const float m = mnew[r];
    if (m == -INFINITY) {
      std::fill_n(sr, kAttnBc, 0.0f);
      continue;
    }
    alignas(64) float part[16] = {};
    for (int64_t j = 0; j < kAttnBc; j += 16)
#pragma omp simd
      for (int64_t k = 0; k < 16; ++k) {
        const float e = fast_exp(sr[j + k] - m);
        sr[j + k] = e;
        part[k] += e;
      }
    for (int64_t w = 8; w >= 1; w /= 2)
      for (int64_t k = 0; k < w; ++k) part[k] += part[k + w];
    l[r] = l[r] * corr[r] + part[0], mx[r] = m;
    if (corr[r] != 1.0f) {
      float* orow = o + r * p.c.dv;
#pragma omp simd
      for (int64_t y = 0; y < p.c.dv; ++y) orow[y] *= corr[r];
    }
  }
}
void softmax_rows_avx2(const AttnPlan<float>& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t jn,
                       int64_t rows, float* s, float* mx, float* l, float* o) {
  softmax_rows(p, b, h, i, j0, jn, rows, s, mx, l, o);
}
QS_TARGET_AVX512
void softmax_rows_avx512(const AttnPlan<float>& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t jn,
                         int64_t rows, float* s, float* mx, float* l, float* o) {
  softmax_rows(p, b, h, i, j0, jn, rows, s, mx, l, o);
}

// out = O / l and lse = mx + log l for the task's rows (out's last dim is contiguous).
void finish_rows(ops::OpCall& call, const AttnConfig& c, int64_t b, int64_t g, int64_t i0, int64_t nr,
                 const FastScratch& w) {
  const Tensor& out = call.out[0];
  const int64_t os[3] = {out.stride(0), out.stride(1), out.stride(2)}, dv = c.dv;
  float* op = static_cast<float*>(out.raw_data());
  float* lse = static_cast<float*>(call.out[1].raw_data());
  for (int64_t hh = 0; hh < c.group(); ++hh)
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t h = g * c.group() + hh, i = i0 + r, row = hh * kAttnBr + r;
      const float l = w.l[size_t(row)], inv = l > 0 ? 1.0f / l : 0.0f;
      float* o = op + b * os[0] + h * os[1] + i * os[2];
      const float* src = &w.o[size_t(row * dv)];
#pragma omp simd
      for (int64_t y = 0; y < dv; ++y) o[y] = src[y] * inv;
      lse[(b * c.hq + h) * c.n + i] = l > 0 ? w.mx[size_t(row)] + std::log(l) : attn_empty_lse<float>();
    }
}

// One task: batch b, kv head g, query rows [i0, i0 + nr) of every query head in the group.
template <AttnIsa I>
void fast_task(const AttnPlan<float>& p, const float* kt_all, ops::OpCall& call, int64_t b, int64_t g, int64_t i0,
               FastScratch& w) {
  const AttnConfig& c = p.c;
  const int64_t nr = std::min(kAttnBr, c.n - i0), G = c.group(), dk = c.dk, dv = c.dv;
  for (int64_t hh = 0; hh < G; ++hh)
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t row = hh * kAttnBr + r;
      const float* qr = p.q_row(b, g * G + hh, i0 + r);
      for (int64_t x = 0; x < dk; ++x) w.q[size_t(row * dk + x)] = float(c.scale) * qr[x];
      std::fill_n(w.o.begin() + row * dv, dv, 0.0f);
      w.mx[size_t(row)] = -INFINITY, w.l[size_t(row)] = 0.0f;
    }
  const int64_t key_end = c.key_end(i0 + nr - 1), mp = padded_keys(c);
  const float* kt = kt_all + (b * c.hkv + g) * dk * mp;
  for (int64_t j0 = 0; j0 < key_end; j0 += kAttnBc) {
    const int64_t jn = std::min(kAttnBc, c.m - j0);
    // Causal: rows before r0 see none of this tile.
    const int64_t r0 = c.causal ? std::clamp(j0 - c.offset() - i0, int64_t(0), nr) : 0, rows = nr - r0;
    if (rows == 0) continue;
    for (int64_t hh = 0; hh < G; ++hh) {
      const int64_t h = g * G + hh, base = hh * kAttnBr + r0;
      float *s = w.s.data() + r0 * kAttnBc, *q = &w.q[size_t(base * dk)], *o = &w.o[size_t(base * dv)];
      float *mx = &w.mx[size_t(base)], *l = &w.l[size_t(base)];
      if constexpr (I == AttnIsa::avx512) {
        gemm_strips_zmm<false>(rows, kAttnBc, dk, q, dk, kt + j0, mp, s, kAttnBc);
        softmax_rows_avx512(p, b, h, i0 + r0, j0, jn, rows, s, mx, l, o);
        gemm_strips_zmm<true>(rows, dv, jn, s, kAttnBc, p.v_row(b, g, j0), p.vs[2], o, dv);
      } else {
        gemm_strips<false>(rows, kAttnBc, dk, q, dk, kt + j0, mp, s, kAttnBc);
        softmax_rows_avx2(p, b, h, i0 + r0, j0, jn, rows, s, mx, l, o);
        gemm_strips<true>(rows, dv, jn, s, kAttnBc, p.v_row(b, g, j0), p.vs[2], o, dv);
      }
    }
  }
  finish_rows(call, c, b, g, i0, nr, w);
}

template <AttnIsa I> void forward_tasks(const AttnPlan<float>& p, ops::OpCall& call) {
  const AttnConfig& c = p.c;
  const int64_t nqb = (c.n + kAttnBr - 1) / kAttnBr, tasks = c.b * c.hkv * nqb;
  const std::vector<float> kt = transpose_keys(p);
#pragma omp parallel if (tasks > 1)
  {
    FastScratch w(c);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {  // the longest (last, when causal) query blocks first
      const int64_t qb = nqb - 1 - t / (c.b * c.hkv), bg = t % (c.b * c.hkv);
      fast_task<I>(p, kt.data(), call, bg / c.hkv, bg % c.hkv, qb * kAttnBr, w);
    }
  }
}

}  // namespace

void attn_gemm_f32(AttnIsa isa, bool accumulate, int64_t rows, int64_t cols, int64_t T, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float* C, int64_t ldc) {
  if (isa == AttnIsa::avx512)
    return accumulate ? gemm_strips_zmm<true>(rows, cols, T, A, lda, B, ldb, C, ldc)
                      : gemm_strips_zmm<false>(rows, cols, T, A, lda, B, ldb, C, ldc);
  accumulate ? gemm_strips<true>(rows, cols, T, A, lda, B, ldb, C, ldc)
             : gemm_strips<false>(rows, cols, T, A, lda, B, ldb, C, ldc);
}

namespace {
__attribute__((always_inline)) inline void p_ds_rows(const AttnPlan<float>& p, int64_t b, int64_t h, int64_t i,
                                                     int64_t j0, int64_t jn, int64_t rows, const float* lse,
                                                     const float* D, float* s, float* dp) {
  const float scale = float(p.c.scale);
  for (int64_t r = 0; r < rows; ++r) {
    float *sr = s + r * kAttnBc, *dr = dp + r * kAttnBc;
    attn_mask_row(p, b, h, i + r, j0, jn, sr, sr);
    const float l = lse[r], d = D[r];
#pragma omp simd
    for (int64_t jj = 0; jj < kAttnBc; ++jj) {
      sr[jj] = fast_exp(sr[jj] - l);
      dr[jj] = scale * sr[jj] * (dr[jj] - d);
    }
  }
}
void p_ds_rows_avx2(const AttnPlan<float>& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t jn, int64_t rows,
                    const float* lse, const float* D, float* s, float* dp) {
  p_ds_rows(p, b, h, i, j0, jn, rows, lse, D, s, dp);
}
QS_TARGET_AVX512
void p_ds_rows_avx512(const AttnPlan<float>& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t jn,
                      int64_t rows, const float* lse, const float* D, float* s, float* dp) {
  p_ds_rows(p, b, h, i, j0, jn, rows, lse, D, s, dp);
}
}  // namespace

void attn_backward_p_ds(AttnIsa isa, const AttnPlan<float>& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t jn,
                        int64_t rows, const float* lse, const float* D, float* s, float* dp) {
  (isa == AttnIsa::avx512 ? p_ds_rows_avx512 : p_ds_rows_avx2)(p, b, h, i, j0, jn, rows, lse, D, s, dp);
}

const char* attention_backward_fast_f32_declines(const AttnConfig& c) {
  if (c.rel != AttnRel::none) return "a relative bias (its gradient is summed per row)";
  if (c.bucket_weights) return "Shaw bucket weights are returned";
  if (c.dk % 16 != 0 || c.dv % 16 != 0) return "dk or dv is not a multiple of 16";
  return nullptr;
}

const char* attention_fast_f32_declines(const AttnConfig& c, const ops::OpCall& call) {
  if (c.bucket_weights) return "Shaw bucket weights are returned";
  if (c.dv % 16 != 0) return "dv is not a multiple of 16";
  if (call.out[0].stride(3) != 1) return "the output's last dim is not contiguous";
  return nullptr;
}

void attention_forward_fast_f32(const AttnPlan<float>& p, ops::OpCall& call, AttnIsa isa) {
  if (isa == AttnIsa::avx512) return forward_tasks<AttnIsa::avx512>(p, call);
  forward_tasks<AttnIsa::avx2>(p, call);
}

}  // namespace qs::kernels
