// LMConfig: validation, supported lengths and JSON.
#include <nlohmann/json.hpp>
#include <set>

#include "config_json.h"
#include "qiusuo/nn/transformer.h"

namespace qs::nn {

void LMConfig::validate() const {
  QS_CHECK(vocab_size > 0 && d_model > 0 && n_layers > 0 && n_heads > 0 && max_seq_len > 0 && n_kv_heads >= 0,
           "LMConfig: vocab_size, d_model, n_layers, n_heads, max_seq_len must be positive and n_kv_heads >= 0, got "
           "{}, {}, {}, {}, {}, {}",
           vocab_size, d_model, n_layers, n_heads, max_seq_len, n_kv_heads);
  QS_CHECK(head_dim >= 0, "LMConfig: head_dim must be 0 (d_model / n_heads) or positive, got {}", head_dim);
  // Heads whose dims are given need not divide d_model (a model whose heads were pruned).
  const bool dims_given = attention == "mla" ? qk_nope_head_dim > 0 && v_head_dim > 0 : head_dim > 0;
  QS_CHECK(dims_given || d_model % n_heads == 0, "LMConfig: d_model {} is not divisible by n_heads {}", d_model,
           n_heads);
  QS_CHECK(head_dim == 0 || attention == "mha",
           "LMConfig: head_dim is for mha attention (mla has qk_nope_head_dim and v_head_dim), got {}", head_dim);
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
  const int64_t dh = head_dim > 0 ? head_dim : d_model / n_heads;
  const bool rope = pos.kind == PositionEncoding::rope;
  if (attention == "mha") {
    QS_CHECK(!rope || dh % 2 == 0, "LMConfig: rope needs an even head dim, got {}", dh);
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
  nlohmann::json j = {
      {"vocab_size", vocab_size}, {"d_model", d_model}, {"n_layers", n_layers}, {"n_heads", n_heads},
      {"n_kv_heads", n_kv_heads}, {"head_dim", head_dim}, {"max_seq_len", max_seq_len}, {"block", block}, {"attention", attention},
      {"ffn", ffn}, {"ffn_hidden", ffn_hidden}, {"bias", bias}, {"tie_weights", tie_weights},
      {"norm_eps", norm_eps}, {"q_lora_rank", q_lora_rank}, {"kv_lora_rank", kv_lora_rank},
      {"qk_nope_head_dim", qk_nope_head_dim}, {"qk_rope_head_dim", qk_rope_head_dim}, {"v_head_dim", v_head_dim},
      {"moe_n_routed", moe_n_routed}, {"moe_n_shared", moe_n_shared}, {"moe_top_k", moe_top_k},
      {"moe_d_expert", moe_d_expert}, {"moe_first_dense", moe_first_dense}, {"moe_score", moe_score},
      {"moe_routed_scaling", moe_routed_scaling}, {"moe_bias_update_speed", moe_bias_update_speed},
      {"moe_aux_loss_alpha", moe_aux_loss_alpha}};
  detail::position_to_json(pos, j);
  return j;
}

LMConfig LMConfig::from_json(const nlohmann::json& j) {
  using detail::json_read;
  constexpr const char* what = "LMConfig";
  LMConfig c;
  detail::json_check_keys(j, c.to_json(), what);
  json_read(j, what, "vocab_size", c.vocab_size), json_read(j, what, "d_model", c.d_model);
  json_read(j, what, "n_layers", c.n_layers), json_read(j, what, "n_heads", c.n_heads);
  json_read(j, what, "n_kv_heads", c.n_kv_heads), json_read(j, what, "max_seq_len", c.max_seq_len);
  json_read(j, what, "head_dim", c.head_dim);
  json_read(j, what, "block", c.block), json_read(j, what, "attention", c.attention), json_read(j, what, "ffn", c.ffn);
  json_read(j, what, "ffn_hidden", c.ffn_hidden), json_read(j, what, "bias", c.bias);
  json_read(j, what, "tie_weights", c.tie_weights), json_read(j, what, "norm_eps", c.norm_eps);
  detail::position_from_json(j, what, c.pos);
  json_read(j, what, "q_lora_rank", c.q_lora_rank), json_read(j, what, "kv_lora_rank", c.kv_lora_rank);
  json_read(j, what, "qk_nope_head_dim", c.qk_nope_head_dim), json_read(j, what, "qk_rope_head_dim", c.qk_rope_head_dim);
  json_read(j, what, "v_head_dim", c.v_head_dim);
  json_read(j, what, "moe_n_routed", c.moe_n_routed), json_read(j, what, "moe_n_shared", c.moe_n_shared);
  json_read(j, what, "moe_top_k", c.moe_top_k), json_read(j, what, "moe_d_expert", c.moe_d_expert);
  json_read(j, what, "moe_first_dense", c.moe_first_dense), json_read(j, what, "moe_score", c.moe_score);
  json_read(j, what, "moe_routed_scaling", c.moe_routed_scaling);
  json_read(j, what, "moe_bias_update_speed", c.moe_bias_update_speed);
  json_read(j, what, "moe_aux_loss_alpha", c.moe_aux_loss_alpha);
  c.pos.max_len = c.max_seq_len;
  return c;
}

}  // namespace qs::nn
