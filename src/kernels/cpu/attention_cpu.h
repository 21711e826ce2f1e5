// The fused attention kernels' shared tile machinery (forward, backward, weights):
// a plan of pointers and strides for one call and the score tile of a block of query rows
// against a block of keys. exp is kernels/fast_math.h's (0 for masked, -inf, scores).
//
// Tiles: kBc keys at a time (a multiple of the vector width, so the score loops are
// fixed-length SIMD loops), kBr query rows per task. Every buffer is per thread and
// sized by kBr, kBc, dk, dv, the group size and the Shaw window, except the per-head
// tables of n + m - 1 relative positions and (backward, when the keys are split over
// threads) one partial dq per split: O(n + m) per head, never O(n m).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/attention_common.h"
#include "kernels/fast_math.h"

namespace qs::kernels {

constexpr int64_t kAttnBc = 64;  // keys per tile
constexpr int64_t kAttnBr = 32;  // query rows per forward task

// A call of at most this many query rows (LM decoding) takes the decoding kernel, which scores
// every visible key of a row in one pass instead of tiling.
constexpr int64_t kAttnDecodeRows = 4;
inline bool attn_decodes(const AttnConfig& c) { return c.n <= kAttnDecodeRows && !c.bucket_weights && c.dv > 0; }

// Bytes of scratch one call allocates (all threads together), for the memory test.
size_t attention_cpu_scratch_bytes(const AttnConfig& c, size_t elem, bool backward, int threads);

// One AVX register of T (GCC vector extension), so tile accumulators stay in registers.
template <class T> struct AttnVecOf;
template <> struct AttnVecOf<float> { typedef float type __attribute__((vector_size(32))); };
template <> struct AttnVecOf<double> { typedef double type __attribute__((vector_size(32))); };
template <class T> using AttnVec = typename AttnVecOf<T>::type;
template <class T> constexpr int64_t kAttnLanes = int64_t(32 / sizeof(T));
template <class T> inline AttnVec<T> attn_load(const T* p) {
  AttnVec<T> v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
template <class T> inline void attn_store(T* p, AttnVec<T> v) { __builtin_memcpy(p, &v, sizeof v); }

// acc[0, 4 lanes) += sum_r coef[r] * rows[r][0, 4 lanes) over r < R: two sets of four
// register accumulators (even and odd r), so eight FMA chains are in flight.
template <class T>
inline void attn_axpy4(T* acc, int64_t R, const T* coef, const T* const* rows, int64_t row_offset) {
  constexpr int64_t L = kAttnLanes<T>;
  AttnVec<T> a0 = attn_load(acc), a1 = attn_load(acc + L), a2 = attn_load(acc + 2 * L), a3 = attn_load(acc + 3 * L);
  AttnVec<T> b0 = {}, b1 = {}, b2 = {}, b3 = {};
  int64_t r = 0;
  for (; r + 1 < R; r += 2) {
    const T *x = rows[r] + row_offset, *y = rows[r + 1] + row_offset;
    const T c = coef[r], d = coef[r + 1];
    a0 += c * attn_load(x), a1 += c * attn_load(x + L), a2 += c * attn_load(x + 2 * L), a3 += c * attn_load(x + 3 * L);
    b0 += d * attn_load(y), b1 += d * attn_load(y + L), b2 += d * attn_load(y + 2 * L), b3 += d * attn_load(y + 3 * L);
  }
  if (r < R) {
    const T* x = rows[r] + row_offset;
    const T c = coef[r];
    a0 += c * attn_load(x), a1 += c * attn_load(x + L), a2 += c * attn_load(x + 2 * L), a3 += c * attn_load(x + 3 * L);
  }
  attn_store(acc, a0 + b0), attn_store(acc + L, a1 + b1), attn_store(acc + 2 * L, a2 + b2);
  attn_store(acc + 3 * L, a3 + b3);
}

// acc[0, n) += sum_{r < R} coef[r] * rows[r][row_offset, row_offset + n).
template <class T>
inline void attn_axpy(T* acc, int64_t n, int64_t R, const T* coef, const T* const* rows, int64_t row_offset) {
  constexpr int64_t kW = 4 * kAttnLanes<T>;
  int64_t y0 = 0;
  for (; y0 + kW <= n; y0 += kW) attn_axpy4(acc + y0, R, coef, rows, row_offset + y0);
  if (y0 == n) return;
  for (int64_t r = 0; r < R; ++r) {
    const T c = coef[r];
    const T* x = rows[r] + row_offset;
#pragma omp simd
    for (int64_t y = y0; y < n; ++y) acc[y] += c * x[y];
  }
}

template <class T> struct AttnPlan {
  AttnConfig c;
  const T *q, *k, *v;
  int64_t qs[3], ks[3], vs[3];  // strides of dims b, h, n (the last dim is contiguous)
  std::vector<T> dist;          // [hq][n + m - 1] ALiBi + T5 bias by r = j - pos_i (empty: none)
  std::vector<T> pad;           // [b][m]: 0 or -inf (empty: no padding)
  const T* shaw = nullptr;      // rel_bias [b, hq, n, 2K + 1] (Shaw only)
  int64_t ss[4] = {};

  const T* q_row(int64_t b, int64_t h, int64_t i) const { return q + b * qs[0] + h * qs[1] + i * qs[2]; }
  const T* k_row(int64_t b, int64_t g, int64_t j) const { return k + b * ks[0] + g * ks[1] + j * ks[2]; }
  const T* v_row(int64_t b, int64_t g, int64_t j) const { return v + b * vs[0] + g * vs[1] + j * vs[2]; }
};

// acc[jj] = sum_x q[x] kt[x][jj] for the kAttnBc columns of a transposed tile.
template <class T> inline void attn_dot_tile(const T* q, const T* kt, int64_t d, T* acc) {
  constexpr int64_t L = kAttnLanes<T>, NV = kAttnBc / L;
  AttnVec<T> a[NV] = {};
  for (int64_t x = 0; x < d; ++x) {
    const T qx = q[x];
    const T* kr = kt + x * kAttnBc;
#pragma GCC unroll 16
    for (int64_t v = 0; v < NV; ++v) a[v] += qx * attn_load(kr + v * L);
  }
#pragma GCC unroll 16
  for (int64_t v = 0; v < NV; ++v) attn_store(acc + v * L, a[v]);
}

// The plan of a call: q, k, v (v may be undefined), padding, slopes, rel_bias. half_k and
// half_v: f16 keys and values (given instead of k and v, which are then undefined): the plan
// takes their strides and leaves k and v null for the caller to read them as f16.
template <class T>
AttnPlan<T> make_attn_plan(const AttnConfig& c, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& pad,
                           const Tensor& slopes, const Tensor& rel_bias, const Tensor* half_k = nullptr,
                           const Tensor* half_v = nullptr);

// Kt[x][jj] = k[b, g, j0 + jj, x] for jj < jn, 0 for jn <= jj < kAttnBc.
template <class T> void attn_load_kt(const AttnPlan<T>& p, int64_t b, int64_t g, int64_t j0, int64_t jn, T* kt);

// s[jj] = q . kt[:, jj] (q already scaled) + biases for row i of head h against keys
// j0 + jj; -inf for masked keys and for jj >= jn. Returns the row maximum.
template <class T>
T attn_score_row(const AttnPlan<T>& p, int64_t b, int64_t h, int64_t i, const T* q, const T* kt, int64_t j0,
                 int64_t jn, T* s);

// The biases and masks of attn_score_row applied to raw dot products acc (clobbered; s may
// alias acc): s[jj] = acc[jj] + biases, -inf where masked or jj >= jn. Returns the maximum.
// Inline, so that a kernel compiled for a wider vector (target attributes) vectorises it so.
template <class T>
inline T attn_mask_row(const AttnPlan<T>& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t jn, T* acc, T* s) {
  const AttnConfig& c = p.c;
  const int64_t pos = i + c.offset();
  if (!p.dist.empty()) {
    const T* d = p.dist.data() + h * (c.n + c.m - 1) + (j0 - pos + c.m - 1);
#pragma omp simd
    for (int64_t jj = 0; jj < jn; ++jj) acc[jj] += d[jj];
  }
  if (p.shaw) {
    const T* rb = p.shaw + b * p.ss[0] + h * p.ss[1] + i * p.ss[2];
    const int64_t K = c.max_distance;
    for (int64_t jj = 0; jj < jn; ++jj) acc[jj] += rb[(std::clamp(j0 + jj - pos, -K, K) + K) * p.ss[3]];
  }
  if (!p.pad.empty()) {
    const T* pd = p.pad.data() + b * c.m + j0;
#pragma omp simd
    for (int64_t jj = 0; jj < jn; ++jj) acc[jj] += pd[jj];
  }
  const int64_t lim = c.causal ? std::min(jn, pos - j0 + 1) : jn;
  if (lim < kAttnBc || s != acc)  // in place with every key visible: nothing to copy or mask
#pragma omp simd
    for (int64_t jj = 0; jj < kAttnBc; ++jj) s[jj] = jj < lim ? acc[jj] : T(-INFINITY);
  constexpr int64_t L = kAttnLanes<T>;
  AttnVec<T> vm = attn_load(s);
  for (int64_t v = 1; v < kAttnBc / L; ++v) {
    AttnVec<T> x = attn_load(s + v * L);
    vm = vm > x ? vm : x;
  }
  T mx = vm[0];
  for (int64_t l = 1; l < L; ++l) mx = vm[l] > mx ? vm[l] : mx;
  return mx;
}

// The f32 forward with register-blocked tile products (attention_cpu_fast.cpp); the reason
// it does not apply to a call, or null. Its products and softmax come in two builds: AVX2
// (ymm, the binary's baseline) and AVX-512 (zmm, through target attributes; run only where
// backend::avx512(): the `cpu-avx512` kernel of attention).
const char* attention_fast_f32_declines(const AttnConfig& c, const ops::OpCall& call);
enum class AttnIsa { avx2, avx512 };
void attention_forward_fast_f32(const AttnPlan<float>& p, ops::OpCall& call, AttnIsa isa);

// The same micro-kernels for the f32 backward (attention_cpu_backward.cpp), in the build of
// `isa`: C[rows x cols] (+)= A[rows x T] B[T x cols], row-major with leading dims lda, ldb,
// ldc; cols a multiple of 16.
void attn_gemm_f32(AttnIsa isa, bool accumulate, int64_t rows, int64_t cols, int64_t T, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float* C, int64_t ldc);
// The backward's elementwise step for query rows i, i + 1, ... (rows of them) of head h
// against the key tile at j0 (jn keys), row r at s + r kAttnBc and dp + r kAttnBc:
// s holds raw scores (Q_scaled K^T), masked here, and becomes P = exp(s - lse[r]); dp holds
// dout V^T and becomes scale P (dp - D[r]).
void attn_backward_p_ds(AttnIsa isa, const AttnPlan<float>& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t jn,
                        int64_t rows, const float* lse, const float* D, float* s, float* dp);
// The register-blocked f32 backward's reason not to take a call (relative biases and
// bucket weights stay on the per-row kernel; dk and dv multiples of 16), or null.
const char* attention_backward_fast_f32_declines(const AttnConfig& c);

}  // namespace qs::kernels
