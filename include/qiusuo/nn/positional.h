// Positional encodings for the Transformer modules (nn/transformer.h).
//
// Absolute encodings are added to the token embeddings by the LM:
//   sinusoidal  Vaswani et al. 2017: pe[p, 2i] = sin(p / 10000^(2i/d)), pe[p, 2i+1] = cos(same)
//   learned     a trained table [max_len, d] ("wpe"); a position >= max_len is an error
// Relative encodings live inside each attention layer:
//   rope        Su et al. 2021, rotate-half layout (qs::rope), inv_freq[i] = base^(-2i/d_rot),
//               with NTK-aware or YaRN scaling to run beyond the trained length
//   alibi       Press et al. 2022: qs::alibi_slopes(heads) as AttentionOptions::alibi_slopes
//   t5          Raffel et al. 2020: a learned bias table [heads, num_buckets] per layer
//               (per layer, not shared as in T5, so each layer keeps its own distance profile);
//               unidirectional buckets in the decoder-only LM, bidirectional for encoders
//   shaw        Shaw et al. 2018: relative key/value embeddings a_K, a_V [2K+1, d_head] per
//               layer, shared by the heads; clip distance K
//   none        NoPE: causal masking alone carries order.
// Every encoding works with the KV cache: the queries of a cached step sit at positions
// [cache_len, cache_len + n).
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qiusuo/attention.h"
#include "qiusuo/nn/module.h"
#include "qiusuo/tensor.h"

namespace qs::nn {

enum class PositionEncoding { none, sinusoidal, learned, shaw, t5, alibi, rope };
enum class RopeScaling { none, ntk, yarn };

// The names of the encodings above, the one list behind parsing, error messages, the
// CLI's help and the positional-encoding experiment (whose row order it sets: absolute
// encodings first, RoPE, then ALiBi).
const std::vector<std::string>& position_encoding_names();
// One of position_encoding_names(); an unknown name is an error that lists them.
PositionEncoding parse_position_encoding(const std::string& name);
std::string position_encoding_name(PositionEncoding p);
// "none", "ntk", "yarn".
RopeScaling parse_rope_scaling(const std::string& name);
std::string rope_scaling_name(RopeScaling s);

struct PositionConfig {
  PositionEncoding kind = PositionEncoding::rope;
  int64_t max_len = 1024;  // the trained length: learned table size, RoPE's original length
  // rope
  double rope_base = 10000.0;
  RopeScaling rope_scaling = RopeScaling::none;
  double rope_factor = 1.0;  // context extension factor s (>= 1) for ntk / yarn
  double yarn_beta_fast = 32.0, yarn_beta_slow = 1.0;
  // t5
  int64_t t5_num_buckets = 32, t5_max_distance = 128;
  bool t5_bidirectional = false;
  // shaw
  int64_t shaw_max_distance = 16;

  // The longest sequence (prompt + generated) this encoding supports: learned and plain
  // RoPE stop at max_len (RoPE beyond its trained length degrades sharply, so it is refused;
  // hint: rope_scaling ntk or yarn), scaled RoPE at floor(max_len * rope_factor); the
  // others have no limit (INT64_MAX).
  int64_t max_supported_length() const;
  // Errors on bad values (factor < 1, base <= 1, non-positive sizes), naming the field.
  void validate() const;
};

// Sinusoidal table rows for positions [start, start + n): [n, d] of dtype dt (d even or odd;
// an odd last column holds sin).
Tensor sinusoidal_table(int64_t start, int64_t n, int64_t d, DType dt = DType::f32);

// RoPE inverse frequencies for a rotary dimension d_rot (even), d_rot / 2 values:
//   none: base^(-2i/d)
//   ntk:  (base * s^(d/(d-2)))^(-2i/d)                                  (bloc97, "NTK-aware")
//   yarn: interpolated (inv/s) and extrapolated (inv) frequencies blended per dimension by
//         a linear ramp between the dims that make beta_fast and beta_slow rotations over
//         max_len (Peng et al. 2023, eqs. 17-18; Hugging Face's _compute_yarn_parameters).
std::vector<double> rope_inv_freq(int64_t d_rot, const PositionConfig& cfg);
// YaRN's attention temperature sqrt(1/t) = 0.1 ln(s) + 1 (1 for the other scalings). It
// multiplies both q and k in the paper, so the logits carry its square: see logit_scale().
double yarn_mscale(const PositionConfig& cfg);

// cos/sin tables for qs::rope, computed in double and cached per module; the cache grows
// on demand and is handed out as views converted to the caller's dtype.
class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t d_rot, const PositionConfig& cfg);
  // cos and sin [n, d_rot / 2] for positions [start, start + n).
  std::pair<Tensor, Tensor> cos_sin(int64_t start, int64_t n, DType dt);
  // x [..., n, d_rot] rotated as if its rows sat at positions [start, start + n).
  Tensor apply(const Tensor& x, int64_t start);
  // Factor on the attention logits: yarn_mscale^2 for YaRN, else 1.
  double logit_scale() const { return mscale_ * mscale_; }
  const std::vector<double>& inv_freq() const { return inv_freq_; }
  int64_t dim() const { return d_rot_; }

 private:
  void grow(int64_t len);
  int64_t d_rot_;
  double mscale_;
  std::vector<double> inv_freq_;
  int64_t cached_len_ = 0;
  Tensor cos_, sin_;  // f64 [cached_len, d_rot / 2]
  Tensor cos_f32_, sin_f32_;
};

// The relative-position state of one attention layer, shared by MultiheadAttention and
// MLA. Registers the learned tables on `owner`: t5 "relative_attention_bias" [heads,
// buckets] (init N(0, 0.02)); shaw "rel_k" [2K+1, d_qk] and "rel_v" [2K+1, d_v] (N(0, 0.02)).
class AttentionPositions {
 public:
  AttentionPositions(Module& owner, const PositionConfig& cfg, int64_t heads, int64_t d_qk, int64_t d_rope,
                     int64_t d_v, Generator& gen);
  // RoPE on x [..., n, d_rope] at positions [start, start + n); identity for other kinds.
  Tensor rotate(const Tensor& x, int64_t start);
  // Sets the ALiBi / T5 / Shaw fields of o. q [B, H, n, d_qk] is the (rotated) query for
  // Shaw's key term rel_bias = scale * q . a_K^T [B, H, n, 2K+1]; scale is the logit scale.
  void add_to(AttentionOptions& o, const Tensor& q, double scale) const;
  // Shaw's value term: out [B, H, n, d_v] + bucket_weights @ a_V; out itself otherwise.
  Tensor value_term(const Tensor& out, const Tensor& bucket_weights) const;
  // Extra factor on the logit scale (YaRN's mscale^2; 1 otherwise).
  double logit_scale() const { return rope_ ? rope_->logit_scale() : 1.0; }
  const PositionConfig& config() const { return cfg_; }

 private:
  PositionConfig cfg_;
  std::unique_ptr<RotaryEmbedding> rope_;
  Tensor alibi_, t5_bias_, rel_k_, rel_v_;
};

}  // namespace qs::nn
