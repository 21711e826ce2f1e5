// What the attention rows share between their shape rules, reference and optimised
// kernels: the attributes and dimensions of one call, and the per-head tables of the
// biases that depend only on the relative position r = j - pos_i (ALiBi and T5).
//
// Inputs of the rows (undefined tensors for absent options):
//   attention          q, k, v, key_padding_mask, alibi_slopes, rel_bias -> out, lse, bucket_weights
//   attention_backward dout, dlse, dbucket_weights, q, k, v, out, lse, bucket_weights,
//                      key_padding_mask, alibi_slopes, rel_bias -> dq, dk, dv, drel_bias
//   attention_weights  q, k, key_padding_mask, alibi_slopes, rel_bias, lse -> weights
#pragma once
#include <cmath>
#include <vector>

#include "kernels/kernel.h"
#include "qiusuo/attention.h"

namespace qs::kernels {

enum class AttnRel { none, t5, shaw };

struct AttnConfig {
  int64_t b, hq, hkv, n, m, dk, dv;
  double scale;
  bool causal;
  AttnRel rel;
  int64_t num_buckets, max_distance;
  bool bidirectional, bucket_weights;

  int64_t group() const { return hq / hkv; }
  int64_t offset() const { return m - n; }  // query row i sits at position i + offset()
  int64_t nbw() const { return rel == AttnRel::shaw ? 2 * max_distance + 1 : 0; }
  // Keys j < key_end(i) can be visible to row i.
  int64_t key_end(int64_t i) const { return causal ? std::min(m, i + offset() + 1) : m; }
};

// q, k, v are the call's inputs q_at, q_at + 1, q_at + 2 (v absent: dv = 0).
AttnConfig attn_config(const Tensor& q, const Tensor& k, const Tensor* v, const Attrs& a);
Attrs attn_attrs(const AttnConfig& c);

// The lse stored for a row whose keys are all masked (mathematically -inf; kept finite
// so losses over lse stay finite). Every kernel masks such a row's keys, so its P is 0.
template <class T> constexpr T attn_empty_lse() { return T(0); }
inline double attn_empty_lse(DType) { return 0.0; }

// T5 bucket of every relative position r in [-(m - 1), n - 1], at r + m - 1.
std::vector<int64_t> attn_t5_buckets(const AttnConfig& c);
// Head h's ALiBi + T5 bias of every relative position (same indexing); empty when neither.
std::vector<double> attn_distance_bias(const AttnConfig& c, const Tensor& slopes, const Tensor& rel_bias,
                                       const std::vector<int64_t>& t5_buckets, int64_t h);

}  // namespace qs::kernels
