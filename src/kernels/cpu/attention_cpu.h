// The fused attention kernels' shared tile machinery (forward, backward, weights):
// a plan of pointers and strides for one call, the score tile of a block of query rows
// against a block of keys, and a vectorisable exp.
//
// Tiles: kBc keys at a time (a multiple of the vector width, so the score loops are
// fixed-length SIMD loops), kBr query rows per task. Every buffer is per thread and
// sized by kBr, kBc, dk, dv, the group size and the Shaw window, except the per-head
// tables of n + m - 1 relative positions and (backward, when the keys are split over
// threads) one partial dq per split: O(n + m) per head, never O(n m).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/attention_common.h"

namespace qs::kernels {

constexpr int64_t kAttnBc = 64;  // keys per tile
constexpr int64_t kAttnBr = 32;  // query rows per forward task

// Bytes of scratch one call allocates (all threads together), for the memory test.
size_t attention_cpu_scratch_bytes(const AttnConfig& c, size_t elem, bool backward, int threads);

// exp for the f32 kernels: range reduction to [-ln2/2, ln2/2], degree-7 Taylor (< 1 ulp
// of error from the series), 2^n through the exponent bits; 0 below -87.3 (and for -inf).
inline float attn_exp(float x) {
  float xc = std::fmin(std::fmax(x, -87.0f), 88.0f);
  float fn = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - fn * 0.693359375f + fn * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  float two_n = std::bit_cast<float>((int32_t(fn) + 127) << 23);
  return x < -87.0f ? 0.0f : p * two_n;
}
inline double attn_exp(double x) { return std::exp(x); }

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

// The plan of a call: q, k, v (v may be undefined), padding, slopes, rel_bias.
template <class T>
AttnPlan<T> make_attn_plan(const AttnConfig& c, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& pad,
                           const Tensor& slopes, const Tensor& rel_bias);

// Kt[x][jj] = k[b, g, j0 + jj, x] for jj < jn, 0 for jn <= jj < kAttnBc.
template <class T> void attn_load_kt(const AttnPlan<T>& p, int64_t b, int64_t g, int64_t j0, int64_t jn, T* kt);

// s[jj] = q . kt[:, jj] (q already scaled) + biases for row i of head h against keys
// j0 + jj; -inf for masked keys and for jj >= jn. Returns the row maximum.
template <class T>
T attn_score_row(const AttnPlan<T>& p, int64_t b, int64_t h, int64_t i, const T* q, const T* kt, int64_t j0,
                 int64_t jn, T* s);

}  // namespace qs::kernels
