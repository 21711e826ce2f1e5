// DeepSeek-V2 multi-head latent attention (Liu et al. 2024, section 2.1): low-rank
// joint key/value compression with a decoupled RoPE key, a compressed KV cache and the
// weight-absorbed form used in generation.
#include <cmath>

#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

namespace qs::nn {

MultiheadLatentAttention::MultiheadLatentAttention(const MlaConfig& cfg, const PositionConfig& pos, Generator& gen)
    : AttentionLayer("MultiheadLatentAttention"), cfg_(cfg) {
  const int64_t h = cfg.n_heads, dn = cfg.qk_nope_head_dim, dr = cfg.qk_rope_head_dim, dv = cfg.v_head_dim;
  QS_CHECK(cfg.d_model > 0 && h > 0 && cfg.kv_lora_rank > 0 && dn > 0 && dr >= 0 && dv > 0 && cfg.q_lora_rank >= 0,
           "MultiheadLatentAttention: sizes must be positive (d_rope, q_lora_rank >= 0): d_model {} n_heads {} "
           "kv_lora_rank {} d_nope {} d_rope {} d_v {} q_lora_rank {}",
           cfg.d_model, h, cfg.kv_lora_rank, dn, dr, dv, cfg.q_lora_rank);
  const int64_t c = cfg.d_model, dq = dn + dr;
  if (cfg.q_lora_rank == 0) {
    q_proj_ = register_module("q_proj", std::make_shared<Linear>(c, h * dq, false, gen));
  } else {
    q_a_proj_ = register_module("q_a_proj", std::make_shared<Linear>(c, cfg.q_lora_rank, false, gen));
    q_a_norm_ = register_module("q_a_layernorm", std::make_shared<RMSNorm>(Shape{cfg.q_lora_rank}, cfg.norm_eps));
    q_b_proj_ = register_module("q_b_proj", std::make_shared<Linear>(cfg.q_lora_rank, h * dq, false, gen));
  }
  kv_a_proj_ = register_module("kv_a_proj_with_mqa", std::make_shared<Linear>(c, cfg.kv_lora_rank + dr, false, gen));
  kv_a_norm_ = register_module("kv_a_layernorm", std::make_shared<RMSNorm>(Shape{cfg.kv_lora_rank}, cfg.norm_eps));
  kv_b_proj_ = register_module("kv_b_proj", std::make_shared<Linear>(cfg.kv_lora_rank, h * (dn + dv), false, gen));
  o_proj_ = register_module("o_proj", std::make_shared<Linear>(h * dv, c, false, gen));
  pos_ = std::make_shared<AttentionPositions>(*this, pos, h, dq, dr, dv, gen);
}

Tensor MultiheadLatentAttention::queries(const Tensor& x) const {
  Tensor q = q_proj_ ? q_proj_->forward(x) : q_b_proj_->forward(q_a_norm_->forward(q_a_proj_->forward(x)));
  return q.view({x.size(0), x.size(1), cfg_.n_heads, cfg_.qk_nope_head_dim + cfg_.qk_rope_head_dim}).transpose(1, 2);
}

AttentionResult MultiheadLatentAttention::attend(const Tensor& x, const AttentionArgs& a) {
  ModuleScope scope(*this);
  QS_CHECK(x.dim() == 3 && x.size(2) == cfg_.d_model, "MultiheadLatentAttention: expected x [B, T, {}], got {}",
           cfg_.d_model, shape_str(x.shape()));
  QS_CHECK(!a.memory.defined(), "MultiheadLatentAttention: self-attention only (no memory)");
  const int64_t b = x.size(0), n = x.size(1), r = cfg_.kv_lora_rank;
  const int64_t dn = cfg_.qk_nope_head_dim, dr = cfg_.qk_rope_head_dim;
  const int64_t start = a.cache ? a.cache->length() : 0;
  Tensor q = queries(x);  // [B, H, T, dn + dr]
  Tensor q_nope = q.narrow(3, 0, dn), q_rope = pos_->rotate(q.narrow(3, dn, dr), start);
  Tensor ckv = kv_a_proj_->forward(x);  // [B, T, r + dr]
  Tensor c = kv_a_norm_->forward(ckv.narrow(2, 0, r));
  Tensor k_rope = pos_->rotate(ckv.narrow(2, r, dr).unsqueeze(1), start).squeeze(1);  // one shared head
  if (a.cache) {
    a.cache->append(c, k_rope);
    c = a.cache->k, k_rope = a.cache->v;
  }
  AttentionOptions o;
  o.scale = pos_->logit_scale() / std::sqrt(double(dn + dr));
  o.causal = a.causal;
  o.key_padding_mask = a.key_padding_mask;
  o.need_weights = wants_weights(a);
  // Only Shaw's key term reads the full query.
  const bool shaw = pos_->config().kind == PositionEncoding::shaw;
  pos_->add_to(o, shaw && dr > 0 ? cat({q_nope, q_rope}, 3) : q_nope, o.scale);
  const bool absorbed = mode_ == Mode::absorbed || (mode_ == Mode::automatic && a.cache != nullptr);
  AttentionResult res;
  Tensor out = combine(o, q_nope, q_rope, c, k_rope, absorbed, res);  // [B, H, T, dv]
  res.out = o_proj_->forward(out.transpose(1, 2).reshape({b, n, cfg_.n_heads * cfg_.v_head_dim}));
  deliver(a, res);
  return res;
}

// Runs the attention in either form and returns the per-head output [B, H, T, dv].
Tensor MultiheadLatentAttention::combine(AttentionOptions& o, const Tensor& q_nope,
                                         const Tensor& q_rope, const Tensor& c, const Tensor& k_rope, bool absorbed,
                                         AttentionResult& res) {
  const int64_t b = c.size(0), m = c.size(1), h = cfg_.n_heads;
  const int64_t dn = cfg_.qk_nope_head_dim, dr = cfg_.qk_rope_head_dim, dv = cfg_.v_head_dim;
  auto with_rope = [&](const Tensor& nope, const Tensor& rope_part) {
    return dr > 0 ? cat({nope, rope_part}, 3) : nope;
  };
  Tensor w = kv_b_proj_->weight().view({h, dn + dv, cfg_.kv_lora_rank});  // rows per head: W_UK then W_UV
  AttentionOutput r;
  Tensor out;
  if (!absorbed) {
    Tensor kv = kv_b_proj_->forward(c).view({b, m, h, dn + dv}).transpose(1, 2);  // [B, H, M, dn + dv]
    Tensor k = with_rope(kv.narrow(3, 0, dn), k_rope.unsqueeze(1).expand({b, h, m, dr}));
    r = run_attention(with_rope(q_nope, q_rope), k, kv.narrow(3, dn, dv), o);
    out = r.out;
  } else {
    // q_nope . (W_UK c) = (W_UK^T q_nope) . c: the queries move into the latent space, and
    // every head attends over the same latent keys (one kv head).
    Tensor q_lat = matmul(q_nope, w.narrow(1, 0, dn));  // [B, H, T, r]
    Tensor lat = c.unsqueeze(1);                         // [B, 1, M, r]
    r = run_attention(with_rope(q_lat, q_rope), with_rope(lat, k_rope.unsqueeze(1)), lat, o);
    out = matmul(r.out, w.narrow(1, dn, dv).transpose(1, 2));  // W_UV: [B, H, T, r] -> [B, H, T, dv]
  }
  res.weights = r.weights;
  return pos_->value_term(out, r.bucket_weights);
}

int64_t MultiheadLatentAttention::cache_bytes_per_token(DType dt) const {
  return (cfg_.kv_lora_rank + cfg_.qk_rope_head_dim) * int64_t(dtype_size(dt));
}

std::string MultiheadLatentAttention::extra_repr() const {
  return fmt::format("d_model={}, n_heads={}, q_lora_rank={}, kv_lora_rank={}, d_nope={}, d_rope={}, d_v={}, pos={}",
                     cfg_.d_model, cfg_.n_heads, cfg_.q_lora_rank, cfg_.kv_lora_rank, cfg_.qk_nope_head_dim,
                     cfg_.qk_rope_head_dim, cfg_.v_head_dim, position_encoding_name(pos_->config().kind));
}

}  // namespace qs::nn
