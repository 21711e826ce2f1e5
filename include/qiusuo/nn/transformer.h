// Transformer modules: multi-head attention (self and cross, GQA, KV cache, weight
// capture), DeepSeek-V2 multi-head latent attention (MLA) with a compressed cache, GPT and
// DeepSeek blocks and the decoder-only language model with KV-cache generation.
//
// Shapes: B batch, T (n) new tokens, M keys, C = d_model, H query heads, G key/value heads.
// Activations are [B, T, C] of the parameters' dtype (f32, or f64 after to_dtype_).
//
// Parameter names (state_dict keys), chosen to read like PyTorch / Hugging Face:
//   MultiheadAttention   in_proj.{weight,bias} [(H + 2G) d_head, C] (rows: q, k, v, as torch's
//                        in_proj_weight), out_proj.{weight,bias}; t5: relative_attention_bias
//                        [H, buckets]; shaw: rel_k [2K+1, d_head], rel_v [2K+1, d_head]
//   MLA (DeepSeek-V2)    q_proj or q_a_proj, q_a_layernorm, q_b_proj; kv_a_proj_with_mqa
//                        [kv_lora_rank + d_rope, C], kv_a_layernorm, kv_b_proj
//                        [H (d_nope + d_v), kv_lora_rank], o_proj (no biases)
//   blocks               ln_1, attn, ln_2, mlp (GPT: mlp.c_fc, mlp.c_proj; SwiGLU:
//                        mlp.gate_proj, mlp.up_proj, mlp.down_proj; MoE: mlp.gate.weight,
//                        mlp.experts.<i>.*, mlp.shared_experts.*, as nn::MoE)
//   TransformerLM        wte, wpe (learned only), blocks.<i>, ln_f, lm_head (untied only)
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "qiusuo/attention.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/module.h"
#include "qiusuo/nn/moe.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/nn/positional.h"
#include "qiusuo/nn/sampling.h"

namespace qs::nn {

// ---- KV cache
// One attention layer's cache; the sequence is dim -2 of k and v.
//   MultiheadAttention: k, v [B, G, len, d_head] (k after RoPE)
//   MLA (compressed):   k = c_kv [B, len, kv_lora_rank] (after its RMSNorm), v = k_rope
//                       [B, len, d_rope] (after RoPE): the only per-token state MLA needs.
// k and v are views of buffers that grow by doubling, so a generation step copies only
// its new rows; under autograd (new rows requiring grad) append concatenates instead, so
// gradients flow into earlier steps.
// `store`: the dtype the held rows are kept in: f32, or f16 for a MultiheadAttention layer
// (half the bytes a decoding step reads; attention reads them as f16, inference only, while
// rows appended under autograd stay f32). TransformerLM::make_cache(DType::f16) sets it.
struct LayerKVCache {
  Tensor k, v;
  DType store = DType::f32;
  int64_t length() const;  // tokens held (0 when empty)
  int64_t bytes() const;   // of the held tokens (the buffers may be up to twice that)
  // Appends k_new, v_new (the same shapes as k, v except along the sequence dim).
  void append(const Tensor& k_new, const Tensor& v_new);

 private:
  Tensor kbuf_, vbuf_;
};
struct KVCacheSet {
  std::vector<LayerKVCache> layers;
  int64_t length() const;  // tokens held (layer 0)
  int64_t bytes() const;
  void clear();
};

// ---- attention capture
struct CapturedAttention {
  std::string name;  // the layer's capture name, e.g. "blocks.3.attn"
  Tensor weights;    // [B, H, T, M], detached
};
// While alive, every attention forward on this thread stores its softmax weights here
// under the layer's name (one record per call, in call order), for heatmaps and head
// analysis. With no capture alive, attention computes no weights it was not asked for.
// Scopes nest: the innermost one records, the outer one is restored at destruction.
class AttentionCapture {
 public:
  AttentionCapture();
  ~AttentionCapture();
  AttentionCapture(const AttentionCapture&) = delete;
  AttentionCapture& operator=(const AttentionCapture&) = delete;
  const std::vector<CapturedAttention>& records() const { return records_; }
  // The latest weights recorded under `name`; an error listing the recorded names if none.
  Tensor weights(const std::string& name) const;
  void clear() { records_.clear(); }
  static AttentionCapture* active();  // this thread's innermost capture, or nullptr
  void add(const std::string& name, const Tensor& weights);

 private:
  AttentionCapture* prev_;
  std::vector<CapturedAttention> records_;
};

// ---- attention layers
struct AttentionArgs {
  Tensor memory;            // cross-attention source [B, M, C]; undefined = self-attention
  Tensor key_padding_mask;  // bool [B, M_total] (cached + new keys), true = padding; or undefined
  bool causal = false;      // query at position p sees keys at positions <= p
  LayerKVCache* cache = nullptr;  // self-attention only: keys of earlier steps; appended to
  bool need_weights = false;
};
struct AttentionResult {
  Tensor out;      // [B, T, C]
  Tensor weights;  // [B, H, T, M] when need_weights (or a capture is active), else undefined
};

// What every attention layer of a block offers.
class AttentionLayer : public Module {
 public:
  using Module::Module;
  virtual AttentionResult attend(const Tensor& x, const AttentionArgs& args) = 0;
  Tensor forward(const Tensor& x) override { return attend(x, {}).out; }
  // Bytes one token adds to this layer's KV cache in dtype dt.
  virtual int64_t cache_bytes_per_token(DType dt = DType::f32) const = 0;
  // The query heads, and how their outputs meet the output projection: head h's output
  // [.., head_output_dim()] is the input columns [h d, (h + 1) d) of output_projection()
  // (head masking and head pruning rely on it).
  virtual int64_t n_heads() const = 0;
  virtual int64_t head_output_dim() const = 0;
  virtual Linear& output_projection() const = 0;
  // The name captured weights are stored under (the LM sets "blocks.<i>.attn").
  void set_capture_name(std::string name) { capture_name_ = std::move(name); }
  const std::string& capture_name() const { return capture_name_; }
  // Routes this layer through qs::attention_explicit instead of the fused qs::attention
  // (to compare the two paths; they agree to rounding).
  void set_explicit_attention(bool on) { explicit_ = on; }

 protected:
  // The explicit path multiplies in one dtype: an f16 cache's keys and values are widened for it.
  AttentionOutput run_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) const {
    if (!explicit_) return attention(q, k, v, o);
    return k.dtype() == q.dtype() ? attention_explicit(q, k, v, o)
                                  : attention_explicit(q, k.to(q.dtype()), v.to(q.dtype()), o);
  }
  static bool wants_weights(const AttentionArgs& a) { return a.need_weights || AttentionCapture::active(); }
  // Records into the active capture (if any) and keeps the weights only when asked for.
  void deliver(const AttentionArgs& a, AttentionResult& r) const;
  std::string capture_name_ = "attn";
  bool explicit_ = false;
};

// Multi-head attention with grouped-query heads (n_kv_heads divides n_heads; 0 means
// n_heads). d_model % n_heads == 0; RoPE needs an even d_head. Relative encodings (rope,
// alibi, t5, shaw) act in self-attention; cross-attention is position-free, as in T5 and
// the original Transformer. Absolute encodings (sinusoidal, learned) are the LM's job and
// ignored here.
class MultiheadAttention : public AttentionLayer {
 public:
  // head_dim 0: d_model / n_heads (d_model must divide); a pruned model's layers keep their
  // head dim with fewer heads (prune --method heads), so n_heads * head_dim may differ from d_model.
  MultiheadAttention(int64_t d_model, int64_t n_heads, int64_t n_kv_heads = 0, const PositionConfig& pos = {},
                     bool bias = true, Generator& gen = default_generator(), int64_t head_dim = 0);
  AttentionResult attend(const Tensor& x, const AttentionArgs& args) override;
  Tensor forward(const Tensor& x) override { return attend(x, {}).out; }
  Tensor forward(const Tensor& x, const Tensor& memory);  // cross-attention, no mask
  int64_t cache_bytes_per_token(DType dt = DType::f32) const override;
  std::string extra_repr() const override;
  int64_t n_heads() const override { return h_; }
  int64_t head_output_dim() const override { return dh_; }
  Linear& output_projection() const override { return *out_proj_; }
  int64_t n_kv_heads() const { return g_; }
  int64_t head_dim() const { return dh_; }

 private:
  int64_t d_, h_, g_, dh_;
  std::shared_ptr<Linear> in_proj_, out_proj_;
  std::shared_ptr<AttentionPositions> pos_;
};

struct MlaConfig {
  int64_t d_model = 64, n_heads = 4;
  int64_t q_lora_rank = 0;  // 0: q = q_proj(x) (DeepSeek-V2-Lite); > 0: q_b_proj(norm(q_a_proj(x)))
  int64_t kv_lora_rank = 32;
  int64_t qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16;
  double norm_eps = 1e-6;
};
// DeepSeek-V2 multi-head latent attention. Keys and values come from a shared latent
// c_kv = RMSNorm(W_DKV x) [kv_lora_rank]: k_nope = W_UK c_kv, v = W_UV c_kv per head; the
// decoupled RoPE key k_rope = W_KR x is one head shared by all. Logits use
// [q_nope, q_rope] . [k_nope, k_rope] / sqrt(d_nope + d_rope). The cache holds only c_kv and
// k_rope. Two equal forms:
//   uncompressed: expand k_nope, v for every head, attention with H kv heads;
//   absorbed:     q_nope W_UK (per head) attends over [c_kv, k_rope] as one kv head, and
//                 the latent output is up-projected by W_UV (the generation form).
// Mode auto (default) uses absorbed when a cache is given, else uncompressed. RoPE acts on
// the d_rope dims only; other encodings leave them unrotated (and shaw's a_K spans
// d_nope + d_rope, a_V d_v).
class MultiheadLatentAttention : public AttentionLayer {
 public:
  enum class Mode { automatic, uncompressed, absorbed };
  MultiheadLatentAttention(const MlaConfig& cfg, const PositionConfig& pos = {},
                           Generator& gen = default_generator());
  AttentionResult attend(const Tensor& x, const AttentionArgs& args) override;
  int64_t cache_bytes_per_token(DType dt = DType::f32) const override;
  std::string extra_repr() const override;
  void set_mode(Mode m) { mode_ = m; }
  const MlaConfig& config() const { return cfg_; }
  int64_t n_heads() const override { return cfg_.n_heads; }
  int64_t head_output_dim() const override { return cfg_.v_head_dim; }
  Linear& output_projection() const override { return *o_proj_; }

 private:
  Tensor queries(const Tensor& x) const;  // [B, H, T, d_nope + d_rope], before RoPE
  Tensor combine(AttentionOptions& o, const Tensor& q_nope, const Tensor& q_rope,
                 const Tensor& c, const Tensor& k_rope, bool absorbed, AttentionResult& res);
  MlaConfig cfg_;
  Mode mode_ = Mode::automatic;
  std::shared_ptr<Linear> q_proj_, q_a_proj_, q_b_proj_, kv_a_proj_, kv_b_proj_, o_proj_;
  std::shared_ptr<RMSNorm> q_a_norm_, kv_a_norm_;
  std::shared_ptr<AttentionPositions> pos_;
};

// ---- blocks
// A custom feed-forward child of a DeepSeek block, built per layer; it maps [B, T, C] ->
// [B, T, C] through its single-tensor forward.
using FfnFactory = std::function<std::shared_ptr<Module>(int64_t layer, int64_t d_model)>;

// GPT-2's MLP: c_proj(gelu(c_fc(x))), hidden = 4 C unless given.
class GeluMLP : public Module {
 public:
  GeluMLP(int64_t d_model, int64_t hidden, bool bias = true, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Linear> c_fc_, c_proj_;
};

// Pre-norm residual block: x + attn(ln_1(x)), then + mlp(ln_2(x)).
//   gpt:      LayerNorm, MultiheadAttention, GeluMLP
//   deepseek: RMSNorm, MLA or MultiheadAttention, nn::SwiGLU or nn::MoE (or a factory's FFN)
class TransformerBlock : public Module {
 public:
  TransformerBlock(bool rms_norm, int64_t d_model, double norm_eps, std::shared_ptr<AttentionLayer> attn,
                   std::shared_ptr<Module> mlp);
  Tensor forward(const Tensor& x) override { return forward(x, AttentionArgs{}); }
  Tensor forward(const Tensor& x, const AttentionArgs& args);
  AttentionLayer& attention() const { return *attn_; }
  Module& mlp() const { return *mlp_; }

 private:
  std::shared_ptr<Module> ln_1_, ln_2_;
  std::shared_ptr<AttentionLayer> attn_;
  std::shared_ptr<Module> mlp_;
};

// ---- the language model
struct LMConfig {
  int64_t vocab_size = 256, d_model = 64, n_layers = 2, n_heads = 4;
  int64_t n_kv_heads = 0;     // 0: n_heads
  int64_t head_dim = 0;       // mha: 0 is d_model / n_heads; set when heads were pruned away
  int64_t max_seq_len = 256;  // the trained length (the position encodings' max_len)
  std::string block = "gpt";  // "gpt" | "deepseek"
  std::string attention = "mha";  // "mha" | "mla" (mla: deepseek blocks only)
  std::string ffn = "swiglu";     // deepseek: "swiglu" (dense nn::SwiGLU) | "moe" (nn::MoE)
  int64_t ffn_hidden = 0;         // 0: 4 C (gpt), 8/3 C rounded up to a multiple of 8 (swiglu)
  bool bias = true;               // gpt linears and MHA projections
  bool tie_weights = true;        // lm_head shares wte.weight
  double norm_eps = 1e-5;
  PositionConfig pos;             // pos.max_len is kept equal to max_seq_len
  // MLA (0 head dims mean d_model / n_heads)
  int64_t q_lora_rank = 0, kv_lora_rank = 32, qk_nope_head_dim = 0, qk_rope_head_dim = 8, v_head_dim = 0;
  // MoE (ffn "moe"; see nn::MoEConfig). moe_d_expert 0: the SwiGLU width divided by
  // (moe_top_k + moe_n_shared), rounded up to a multiple of 8, so a token's active FFN
  // compute matches the dense block. The first moe_first_dense layers stay dense
  // (DeepSeek-V3's first_k_dense_replace).
  int64_t moe_n_routed = 8, moe_n_shared = 1, moe_top_k = 2, moe_d_expert = 0, moe_first_dense = 0;
  std::string moe_score = "sigmoid";  // "sigmoid" (V3) | "softmax" (V2)
  double moe_routed_scaling = 1.0, moe_bias_update_speed = 1e-3, moe_aux_loss_alpha = 0.0;

  // Errors, each naming the field and the values found: sizes not positive, d_model not
  // divisible by n_heads, n_heads not a multiple of n_kv_heads, an odd RoPE head dim,
  // unknown block / attention / ffn names, mla with gpt blocks, bad position settings.
  void validate() const;
  // The longest sequence (prompt + generated) the position encoding supports:
  // pos.max_supported_length() (learned and unscaled RoPE: max_seq_len; scaled RoPE:
  // max_seq_len * factor; the others unlimited; sinusoidal runs past its trained length).
  int64_t max_supported_length() const;
  // Error (with a hint) when seq exceeds max_supported_length().
  void check_length(int64_t seq) const;
  nlohmann::json to_json() const;
  // Missing keys keep their defaults; unknown keys are errors (a typo must not pass).
  static LMConfig from_json(const nlohmann::json& j);
};

// A token sampler: logits [V] (f32 or f64) -> the next token id. Empty = greedy (argmax).
using Sampler = std::function<int64_t(const Tensor& logits, Generator& gen)>;
// nn::sample_token with these options (temperature, top-k, top-p) as a Sampler.
Sampler make_sampler(const SamplingOptions& opts);

// Initialised as GPT-2: embeddings and linear weights N(0, 0.02), biases 0, residual
// projections (out_proj, c_proj, o_proj, down_proj) N(0, 0.02 / sqrt(2 n_layers)), norms 1.
class TransformerLM : public Module {
 public:
  // ffn_factory, when given, builds the feed-forward of the deepseek blocks that would get
  // an nn::MoE (cfg.ffn == "moe", layer >= moe_first_dense) instead; it keeps its own init.
  explicit TransformerLM(const LMConfig& cfg, FfnFactory ffn_factory = {}, Generator& gen = default_generator());
  // idx i64 [B, T] with ids in [0, vocab) -> logits [B, T, V]; causal, positions 0..T-1.
  Tensor forward(const Tensor& idx) override;
  // The next T tokens after the cache's: positions [cache.length(), + T); appends to cache.
  Tensor forward_cached(const Tensor& idx, KVCacheSet& cache);
  // kv f16: the MultiheadAttention layers keep their keys and values in half precision (as
  // llama.cpp does by default); MLA's compressed cache stays f32.
  KVCacheSet make_cache(DType kv = DType::f32) const;
  // Greedy (or `sampler`) decoding with the KV cache, batch 1: returns prompt + up to
  // max_tokens new ids, stopping after eos_id (if >= 0). Errors on an empty prompt or when
  // prompt + max_tokens exceeds max_supported_length(). Runs under NoGrad. kv: make_cache's.
  std::vector<int64_t> generate(const std::vector<int64_t>& prompt, int64_t max_tokens, const Sampler& sampler = {},
                                uint64_t seed = 0, int64_t eos_id = -1, DType kv = DType::f32);
  // The MoE feed-forwards, in layer order, so the trainer can read expert load
  // (load_stats) and update the routing biases (update_bias) after each optimiser step.
  std::vector<MoE*> moe_layers() const;
  // Sum of the MoE balance losses of the last forward (add it to the training loss);
  // undefined when no layer has one (aux_loss_alpha 0, eval mode, no MoE).
  Tensor aux_loss() const;
  int64_t kv_cache_bytes_per_token(DType dt = DType::f32) const;
  void set_explicit_attention(bool on);  // every layer: see AttentionLayer
  const LMConfig& config() const { return cfg_; }
  const std::vector<std::shared_ptr<TransformerBlock>>& blocks() const { return blocks_; }
  // The factor on the token embeddings: sqrt(d_model) with the sinusoidal encoding
  // (Vaswani et al.; embeddings initialised N(0, 1/d_model)), 1 otherwise.
  double sinusoidal_embed_scale() const;

 private:
  Tensor run(const Tensor& idx, KVCacheSet* cache);
  void init_weights(Generator& gen, const std::vector<std::string>& keep_prefixes);
  LMConfig cfg_;
  std::shared_ptr<Embedding> wte_, wpe_;
  std::vector<std::shared_ptr<TransformerBlock>> blocks_;
  std::shared_ptr<Module> ln_f_;
  std::shared_ptr<Linear> lm_head_;
};

// Converts every parameter and buffer of m (recursively) to dt in place: the handles
// the modules and optimisers hold stay valid (PyTorch's module.to(dtype)). For gradcheck
// of whole models in f64. Gradients are dropped.
void to_dtype_(Module& m, DType dt);

}  // namespace qs::nn
