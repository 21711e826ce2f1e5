// LMConfig: validation, supported lengths and JSON.
#include <nlohmann/json.hpp>
#include <set>

#include "qiusuo/nn/transformer.h"

namespace qs::nn {

void LMConfig::validate() const {
  QS_CHECK(vocab_size > 0 && d_model > 0 && n_layers > 0 && n_heads > 0 && max_seq_len > 0 && n_kv_heads >= 0,
           "LMConfig: vocab_size, d_model, n_layers, n_heads, max_seq_len must be positive and n_kv_heads >= 0, got "
           "{}, {}, {}, {}, {}, {}",
           vocab_size, d_model, n_layers, n_heads, max_seq_len, n_kv_heads);
  QS_CHECK(d_model % n_heads == 0, "LMConfig: d_model {} is not divisible by n_heads {}", d_model, n_heads);
  const int64_t kv = n_kv_heads > 0 ? n_kv_heads : n_heads;
  QS_CHECK(n_heads % kv == 0, "LMConfig: n_heads {} is not a multiple of n_kv_heads {}", n_heads, kv);
  QS_CHECK(block == "gpt" || block == "deepseek", "LMConfig: unknown block '{}'; expected gpt or deepseek", block);
  QS_CHECK(attention == "mha" || attention == "mla", "LMConfig: unknown attention '{}'; expected mha or mla",
           attention);
  QS_CHECK(ffn == "swiglu" || ffn == "moe", "LMConfig: unknown ffn '{}'; expected swiglu or moe", ffn);
  QS_CHECK(block == "deepseek" || attention == "mha",
           "LMConfig: attention mla needs block deepseek (GPT blocks use mha), got block {}", block);
  QS_CHECK(ffn_hidden >= 0 && norm_eps > 0, "LMConfig: need ffn_hidden >= 0 and norm_eps > 0, got {} and {}",
           ffn_hidden, norm_eps);
  const int64_t dh = d_model / n_heads;
  const bool rope = pos.kind == PositionEncoding::rope;
  if (attention == "mha") {
    QS_CHECK(!rope || dh % 2 == 0, "LMConfig: rope needs an even head dim, got d_model / n_heads = {}", dh);
  } else {
    QS_CHECK(q_lora_rank >= 0 && kv_lora_rank > 0 && qk_nope_head_dim >= 0 && v_head_dim >= 0 && qk_rope_head_dim >= 0,
             "LMConfig: mla sizes must be non-negative (kv_lora_rank positive), got q_lora_rank {} kv_lora_rank {} "
             "qk_nope_head_dim {} qk_rope_head_dim {} v_head_dim {}",
             q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim);
    QS_CHECK(!rope || (qk_rope_head_dim > 0 && qk_rope_head_dim % 2 == 0),
             "LMConfig: rope needs an even positive qk_rope_head_dim, got {}", qk_rope_head_dim);
  }
  if (block == "deepseek" && ffn == "moe") {
    QS_CHECK(moe_n_routed >= 1 && moe_top_k >= 1 && moe_top_k <= moe_n_routed && moe_n_shared >= 0 &&
                 moe_d_expert >= 0,
             "LMConfig: moe needs n_routed >= 1, 1 <= top_k <= n_routed, n_shared >= 0, d_expert >= 0, got {}, {}, "
             "{}, {}",
             moe_n_routed, moe_top_k, moe_n_shared, moe_d_expert);
    QS_CHECK(moe_score == "sigmoid" || moe_score == "softmax",
             "LMConfig: unknown moe_score '{}'; expected sigmoid or softmax", moe_score);
    QS_CHECK(moe_first_dense >= 0 && moe_first_dense <= n_layers,
             "LMConfig: moe_first_dense must be in [0, n_layers = {}], got {}", n_layers, moe_first_dense);
  }
  PositionConfig p = pos;
  p.max_len = max_seq_len;
  p.validate();
}

int64_t LMConfig::max_supported_length() const {
  PositionConfig p = pos;
  p.max_len = max_seq_len;
  return p.max_supported_length();
}

void LMConfig::check_length(int64_t seq) const {
  const int64_t lim = max_supported_length();
  if (seq <= lim) return;
  const std::string kind = position_encoding_name(pos.kind);
  if (pos.kind == PositionEncoding::rope && pos.rope_scaling == RopeScaling::none)
    QS_FAIL("sequence length {} exceeds the trained length {} of rope without scaling; hint: set rope_scaling to "
            "ntk or yarn with rope_factor >= {:.2f}",
            seq, lim, double(seq) / double(max_seq_len));
  QS_FAIL("sequence length {} exceeds the {} position encoding's limit of {} (trained length {})", seq, kind, lim,
          max_seq_len);
}

nlohmann::json LMConfig::to_json() const {
  return {{"vocab_size", vocab_size}, {"d_model", d_model}, {"n_layers", n_layers}, {"n_heads", n_heads},
          {"n_kv_heads", n_kv_heads}, {"max_seq_len", max_seq_len}, {"block", block}, {"attention", attention},
          {"ffn", ffn}, {"ffn_hidden", ffn_hidden}, {"bias", bias}, {"tie_weights", tie_weights},
          {"norm_eps", norm_eps}, {"position", position_encoding_name(pos.kind)}, {"rope_base", pos.rope_base},
          {"rope_scaling", rope_scaling_name(pos.rope_scaling)}, {"rope_factor", pos.rope_factor},
          {"yarn_beta_fast", pos.yarn_beta_fast}, {"yarn_beta_slow", pos.yarn_beta_slow},
          {"t5_num_buckets", pos.t5_num_buckets}, {"t5_max_distance", pos.t5_max_distance},
          {"shaw_max_distance", pos.shaw_max_distance}, {"q_lora_rank", q_lora_rank},
          {"kv_lora_rank", kv_lora_rank}, {"qk_nope_head_dim", qk_nope_head_dim},
          {"qk_rope_head_dim", qk_rope_head_dim}, {"v_head_dim", v_head_dim}, {"moe_n_routed", moe_n_routed},
          {"moe_n_shared", moe_n_shared}, {"moe_top_k", moe_top_k}, {"moe_d_expert", moe_d_expert},
          {"moe_first_dense", moe_first_dense}, {"moe_score", moe_score}, {"moe_routed_scaling", moe_routed_scaling},
          {"moe_bias_update_speed", moe_bias_update_speed}, {"moe_aux_loss_alpha", moe_aux_loss_alpha}};
}

namespace {
template <class T> void read(const nlohmann::json& j, const char* key, T& out) {
  if (!j.contains(key)) return;
  try {
    out = j.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    QS_FAIL("LMConfig: key '{}' has the wrong type ({}): {}", key, j.at(key).type_name(), e.what());
  }
}
}  // namespace

LMConfig LMConfig::from_json(const nlohmann::json& j) {
  QS_CHECK(j.is_object(), "LMConfig: expected a JSON object, got {}", j.type_name());
  LMConfig c;
  const nlohmann::json defaults = c.to_json();
  for (auto it = j.begin(); it != j.end(); ++it)
    QS_CHECK(defaults.contains(it.key()), "LMConfig: unknown key '{}'", it.key());
  read(j, "vocab_size", c.vocab_size), read(j, "d_model", c.d_model), read(j, "n_layers", c.n_layers);
  read(j, "n_heads", c.n_heads), read(j, "n_kv_heads", c.n_kv_heads), read(j, "max_seq_len", c.max_seq_len);
  read(j, "block", c.block), read(j, "attention", c.attention), read(j, "ffn", c.ffn);
  read(j, "ffn_hidden", c.ffn_hidden), read(j, "bias", c.bias), read(j, "tie_weights", c.tie_weights);
  read(j, "norm_eps", c.norm_eps);
  std::string position = position_encoding_name(c.pos.kind), scaling = rope_scaling_name(c.pos.rope_scaling);
  read(j, "position", position), read(j, "rope_scaling", scaling);
  c.pos.kind = parse_position_encoding(position);
  c.pos.rope_scaling = parse_rope_scaling(scaling);
  read(j, "rope_base", c.pos.rope_base), read(j, "rope_factor", c.pos.rope_factor);
  read(j, "yarn_beta_fast", c.pos.yarn_beta_fast), read(j, "yarn_beta_slow", c.pos.yarn_beta_slow);
  read(j, "t5_num_buckets", c.pos.t5_num_buckets), read(j, "t5_max_distance", c.pos.t5_max_distance);
  read(j, "shaw_max_distance", c.pos.shaw_max_distance);
  read(j, "q_lora_rank", c.q_lora_rank), read(j, "kv_lora_rank", c.kv_lora_rank);
  read(j, "qk_nope_head_dim", c.qk_nope_head_dim), read(j, "qk_rope_head_dim", c.qk_rope_head_dim);
  read(j, "v_head_dim", c.v_head_dim);
  read(j, "moe_n_routed", c.moe_n_routed), read(j, "moe_n_shared", c.moe_n_shared), read(j, "moe_top_k", c.moe_top_k);
  read(j, "moe_d_expert", c.moe_d_expert), read(j, "moe_first_dense", c.moe_first_dense);
  read(j, "moe_score", c.moe_score), read(j, "moe_routed_scaling", c.moe_routed_scaling);
  read(j, "moe_bias_update_speed", c.moe_bias_update_speed), read(j, "moe_aux_loss_alpha", c.moe_aux_loss_alpha);
  c.pos.max_len = c.max_seq_len;
  return c;
}

}  // namespace qs::nn
