// Scaled dot-product attention with every bias a Transformer of the handbook needs:
// causal and padding masks, grouped-query heads, ALiBi, T5 bucketed and Shaw clipped
// relative positions, and (on request) the attention weights themselves.
//
//   logits[b,h,i,j] = scale * q[b,h,i] . k[b,g(h),j] + bias[b,h,i,j]      (masked: -inf)
//   weights = softmax_j(logits)            out[b,h,i] = sum_j weights[b,h,i,j] v[b,g(h),j]
//
// Shapes: q [b, hq, n, dk], k [b, hkv, m, dk], v [b, hkv, m, dv]; hq % hkv == 0 and query
// head h reads key/value head g(h) = h / (hq / hkv) (grouped-query attention; hkv = 1 is
// multi-query). Any strides are accepted. f32 or f64, all of one dtype.
// Positions: key j sits at position j; query row i sits at position i + (m - n), so a
// KV cache holding m - n earlier tokens needs no extra argument.
// A row whose keys are all masked gets zero weights and a zero output (PyTorch gives NaN).
#pragma once
#include <cstdint>

#include "qiusuo/tensor.h"

namespace qs {

enum class RelativeBias {
  none,
  t5,    // bias[b,h,i,j] = rel_bias[h, t5_relative_bucket(j - pos_i, ...)]; rel_bias [hq, num_buckets]
  shaw,  // bias[b,h,i,j] = rel_bias[b, h, i, shaw_relative_bucket(j - pos_i, K)];
         // rel_bias [b, hq, n, 2K + 1] holds q_i . a_K[r] (the caller's relative key term), K = rel_max_distance
};

struct AttentionOptions {
  double scale = 0.0;      // 0 means 1 / sqrt(dk)
  bool causal = false;     // key j is visible to query i only when j <= pos_i
  Tensor key_padding_mask;  // bool [b, m], true = padding (never attended); undefined = none
  Tensor alibi_slopes;      // f32/f64 [hq]: bias -slope[h] * |pos_i - j|; undefined = none; no gradient
  RelativeBias relative = RelativeBias::none;
  Tensor rel_bias;                  // see RelativeBias; differentiable
  int64_t rel_num_buckets = 32;     // t5
  int64_t rel_max_distance = 128;   // t5: distance of the last bucket; shaw: clipping distance K
  bool rel_bidirectional = false;   // t5: true for encoders (separate buckets for keys ahead)
  // shaw: also return bucket_weights[b,h,i,r] = sum of weights[b,h,i,j] over the keys j in
  // relative bucket r, so the caller adds the relative value term sum_r bucket_weights a_V[r].
  bool return_bucket_weights = false;
  bool need_weights = false;  // also return the weights [b, hq, n, m] (detached)
};

struct AttentionOutput {
  Tensor out;             // [b, hq, n, dv]; may be a view of a [b, n, hq, dv] buffer
  Tensor weights;         // [b, hq, n, m] when need_weights, else undefined
  Tensor bucket_weights;  // [b, hq, n, 2K + 1] when return_bucket_weights, else undefined
};

// The fused path: tiled, online softmax, never materialises the [n, m] matrix of a head
// unless need_weights asks for it. Differentiable in q, k, v and rel_bias.
AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& opts = {});

// The textbook path: builds the logits, softmax and products with ordinary ops
// (O(n m) memory per head). The reference the fused path is tested against.
AttentionOutput attention_explicit(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const AttentionOptions& opts = {});

// T5's relative position bucket (relative_position = key position - query position):
// bidirectional halves the buckets and uses the upper half for keys ahead; of each half,
// the first half of the buckets are exact distances and the rest are log-spaced up to
// max_distance, beyond which everything shares the last bucket.
int64_t t5_relative_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                           int64_t max_distance);
// Shaw et al.: clip(relative_position, -K, K) + K, in [0, 2K].
inline int64_t shaw_relative_bucket(int64_t relative_position, int64_t max_distance) {
  int64_t r = relative_position < -max_distance ? -max_distance : relative_position;
  return (r > max_distance ? max_distance : r) + max_distance;
}
// ALiBi head slopes (Press et al. 2022): for a power of two h, 2^(-8 i / h), i = 1..h;
// otherwise those of the next lower power of two, then every other slope of the next
// higher one. f32 [h].
Tensor alibi_slopes(int64_t heads);

}  // namespace qs
