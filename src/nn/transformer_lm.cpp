// The decoder-only language model: embeddings, absolute positions, blocks, final norm,
// head; cached forward and generation.
#include <cmath>
#include <limits>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/init.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

namespace qs::nn {

namespace {

std::shared_ptr<AttentionLayer> make_attention(const LMConfig& c, Generator& gen) {
  const int64_t dh = c.d_model / c.n_heads;
  if (c.attention == "mha")
    return std::make_shared<MultiheadAttention>(c.d_model, c.n_heads, c.n_kv_heads, c.pos, c.bias, gen, c.head_dim);
  MlaConfig m;
  m.d_model = c.d_model, m.n_heads = c.n_heads, m.q_lora_rank = c.q_lora_rank, m.kv_lora_rank = c.kv_lora_rank;
  m.qk_nope_head_dim = c.qk_nope_head_dim > 0 ? c.qk_nope_head_dim : dh;
  m.qk_rope_head_dim = c.qk_rope_head_dim;
  m.v_head_dim = c.v_head_dim > 0 ? c.v_head_dim : dh;
  m.norm_eps = c.norm_eps;
  return std::make_shared<MultiheadLatentAttention>(m, c.pos, gen);
}

int64_t swiglu_hidden(const LMConfig& c) { return c.ffn_hidden > 0 ? c.ffn_hidden : (8 * c.d_model / 3 + 7) / 8 * 8; }

bool is_moe_layer(const LMConfig& c, int64_t layer) {
  return c.block == "deepseek" && c.ffn == "moe" && layer >= c.moe_first_dense;
}

std::shared_ptr<Module> make_ffn(const LMConfig& c, int64_t layer, const FfnFactory& factory, Generator& gen) {
  if (c.block == "gpt") return std::make_shared<GeluMLP>(c.d_model, c.ffn_hidden > 0 ? c.ffn_hidden : 4 * c.d_model,
                                                         c.bias, gen);
  if (!is_moe_layer(c, layer)) return std::make_shared<SwiGLU>(c.d_model, swiglu_hidden(c), false, gen);
  if (factory) {
    std::shared_ptr<Module> m = factory(layer, c.d_model);
    QS_CHECK(m != nullptr, "TransformerLM: the FfnFactory returned no module for layer {}", layer);
    return m;
  }
  MoEConfig m;
  m.d_model = c.d_model;
  m.d_expert = c.moe_d_expert > 0 ? c.moe_d_expert
                                  : (swiglu_hidden(c) / (c.moe_top_k + c.moe_n_shared) + 7) / 8 * 8;
  m.n_routed = c.moe_n_routed, m.n_shared = c.moe_n_shared, m.top_k = c.moe_top_k, m.score = c.moe_score;
  m.routed_scaling = c.moe_routed_scaling, m.bias_update_speed = c.moe_bias_update_speed;
  m.aux_loss_alpha = c.moe_aux_loss_alpha;
  return std::make_shared<MoE>(m, gen);
}

}  // namespace

TransformerLM::TransformerLM(const LMConfig& cfg, FfnFactory ffn_factory, Generator& gen)
    : Module("TransformerLM"), cfg_(cfg) {
  cfg_.pos.max_len = cfg_.max_seq_len;
  cfg_.validate();
  const int64_t c = cfg_.d_model;
  wte_ = register_module("wte", std::make_shared<Embedding>(cfg_.vocab_size, c, -1, gen));
  // With the fixed sinusoidal table (values in [-1, 1]) the token embeddings are scaled as
  // in Vaswani et al. and fairseq: N(0, 1/d) times sqrt(d), so both terms have a standard
  // deviation near 1. GPT-2's N(0, 0.02) alone would leave the token signal 50x weaker than
  // the position signal, and the model learns far more slowly.
  init::normal_(wte_->weight(), 0.0, sinusoidal_embed_scale() > 1 ? 1.0 / std::sqrt(double(c)) : 0.02, gen);
  if (cfg_.pos.kind == PositionEncoding::learned) {
    wpe_ = register_module("wpe", std::make_shared<Embedding>(cfg_.max_seq_len, c, -1, gen));
    init::normal_(wpe_->weight(), 0.0, 0.02, gen);
  }
  auto list = register_module("blocks", std::make_shared<Module>("ModuleList"));
  const bool deepseek = cfg_.block == "deepseek";
  std::vector<std::string> keep;  // factory-built FFNs keep their own initialisation
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    if (ffn_factory && is_moe_layer(cfg_, i)) keep.push_back(fmt::format("blocks.{}.mlp.", i));
    auto attn = make_attention(cfg_, gen);
    attn->set_capture_name(fmt::format("blocks.{}.attn", i));
    auto block = std::make_shared<TransformerBlock>(deepseek, c, cfg_.norm_eps, attn, make_ffn(cfg_, i, ffn_factory, gen));
    blocks_.push_back(list->register_module(std::to_string(i), block));
  }
  if (deepseek)
    ln_f_ = register_module("ln_f", std::make_shared<RMSNorm>(Shape{c}, cfg_.norm_eps));
  else
    ln_f_ = register_module("ln_f", std::make_shared<LayerNorm>(Shape{c}, cfg_.norm_eps));
  if (!cfg_.tie_weights) lm_head_ = register_module("lm_head", std::make_shared<Linear>(c, cfg_.vocab_size, false, gen));
  init_weights(gen, keep);
}

// GPT-2's initialisation (Radford et al. 2019): linear weights N(0, 0.02), biases zero, and
// the projections that write into the residual stream scaled by 1 / sqrt(2 n_layers) so the
// stream's variance does not grow with depth (MoE experts' down_proj included).
void TransformerLM::init_weights(Generator& gen, const std::vector<std::string>& keep_prefixes) {
  const double std = 0.02, residual_std = 0.02 / std::sqrt(2.0 * double(cfg_.n_layers));
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (auto& [name, p] : named_parameters()) {
    bool keep = false;
    for (auto& k : keep_prefixes) keep |= name.rfind(k, 0) == 0;
    if (keep) continue;
    if (name.rfind("blocks.", 0) != 0 && name != "lm_head.weight") continue;  // embeddings, final norm
    if (ends_with(name, "proj.bias") || ends_with(name, "c_fc.bias")) init::zeros_(p);
    if (p.dim() != 2 || !ends_with(name, ".weight")) continue;
    bool residual = ends_with(name, "out_proj.weight") || ends_with(name, "c_proj.weight") ||
                    ends_with(name, "o_proj.weight") || ends_with(name, "down_proj.weight");
    init::normal_(p, 0.0, residual ? residual_std : std, gen);
  }
}

double TransformerLM::sinusoidal_embed_scale() const {
  return cfg_.pos.kind == PositionEncoding::sinusoidal ? std::sqrt(double(cfg_.d_model)) : 1.0;
}

Tensor TransformerLM::run(const Tensor& idx, KVCacheSet* cache) {
  ModuleScope scope(*this);
  QS_CHECK(idx.dim() == 2 && idx.dtype() == DType::i64, "TransformerLM: expected idx i64 [B, T], got {} {}",
           dtype_name(idx.dtype()), shape_str(idx.shape()));
  const int64_t n = idx.size(1), start = cache ? cache->length() : 0;
  if (cache && cache->layers.empty()) cache->layers.resize(size_t(cfg_.n_layers));
  QS_CHECK(!cache || int64_t(cache->layers.size()) == cfg_.n_layers,
           "TransformerLM: the cache has {} layers, the model {}; hint: use make_cache()", cache->layers.size(),
           cfg_.n_layers);
  Tensor x = wte_->forward(idx);
  if (cfg_.pos.kind == PositionEncoding::sinusoidal)
    x = x * sinusoidal_embed_scale() + sinusoidal_table(start, n, cfg_.d_model, x.dtype());
  if (wpe_) {
    QS_CHECK(start + n <= cfg_.max_seq_len,
             "TransformerLM: positions up to {} exceed the learned position table of {} (the trained length)",
             start + n, cfg_.max_seq_len);
    x = x + wpe_->forward(arange(double(start), double(start + n), 1.0, DType::i64));
  }
  AttentionArgs args;
  args.causal = true;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    args.cache = cache ? &cache->layers[i] : nullptr;
    x = blocks_[i]->forward(x, args);
  }
  x = ln_f_->forward(x);
  return lm_head_ ? lm_head_->forward(x) : linear(x, wte_->weight());
}

Tensor TransformerLM::forward(const Tensor& idx) { return run(idx, nullptr); }
Tensor TransformerLM::forward_cached(const Tensor& idx, KVCacheSet& cache) { return run(idx, &cache); }

KVCacheSet TransformerLM::make_cache(DType kv) const {
  QS_CHECK(kv == DType::f32 || kv == DType::f16, "TransformerLM::make_cache: the KV cache is f32 or f16, not {}",
           dtype_name(kv));
  KVCacheSet c;
  c.layers.resize(size_t(cfg_.n_layers));
  for (size_t i = 0; i < blocks_.size(); ++i)
    if (dynamic_cast<const MultiheadAttention*>(&blocks_[i]->attention())) c.layers[i].store = kv;
  return c;
}

std::vector<int64_t> TransformerLM::generate(const std::vector<int64_t>& prompt, int64_t max_tokens,
                                             const Sampler& sampler, uint64_t seed, int64_t eos_id, DType kv) {
  QS_CHECK(!prompt.empty(), "TransformerLM::generate: the prompt is empty");
  QS_CHECK(max_tokens >= 0, "TransformerLM::generate: max_tokens must be >= 0, got {}", max_tokens);
  const int64_t n = int64_t(prompt.size());
  cfg_.check_length(max_tokens > std::numeric_limits<int64_t>::max() - n ? std::numeric_limits<int64_t>::max()
                                                                          : n + max_tokens);
  NoGrad ng;
  Generator gen(seed);
  KVCacheSet cache = make_cache(kv);
  std::vector<int64_t> out = prompt;
  std::vector<double> ids(prompt.begin(), prompt.end());
  Tensor logits = forward_cached(from_vector(ids, {1, int64_t(ids.size())}, DType::i64), cache);
  for (int64_t t = 0; t < max_tokens; ++t) {
    Tensor last = logits.select(0, 0).select(0, logits.size(1) - 1);  // [V]
    int64_t next = sampler ? sampler(last, gen) : int64_t(argmax(last).item());
    QS_CHECK(next >= 0 && next < cfg_.vocab_size, "TransformerLM::generate: the sampler returned {} outside [0, {})",
             next, cfg_.vocab_size);
    out.push_back(next);
    if (next == eos_id || t + 1 == max_tokens) break;
    logits = forward_cached(from_vector({double(next)}, {1, 1}, DType::i64), cache);
  }
  return out;
}

std::vector<MoE*> TransformerLM::moe_layers() const {
  std::vector<MoE*> out;
  for (auto& b : blocks_)
    if (auto* m = dynamic_cast<MoE*>(&b->mlp())) out.push_back(m);
  return out;
}

Tensor TransformerLM::aux_loss() const {
  Tensor total;
  for (MoE* m : moe_layers())
    if (Tensor l = m->aux_loss(); l.defined()) total = total.defined() ? total + l : l;
  return total;
}

Sampler make_sampler(const SamplingOptions& opts) {
  return [opts](const Tensor& logits, Generator& gen) { return sample_token(logits, opts, gen); };
}

void TransformerLM::set_explicit_attention(bool on) {
  for (auto& b : blocks_) b->attention().set_explicit_attention(on);
}

int64_t TransformerLM::kv_cache_bytes_per_token(DType dt) const {
  int64_t n = 0;
  for (auto& b : blocks_) n += b->attention().cache_bytes_per_token(dt);
  return n;
}

}  // namespace qs::nn
