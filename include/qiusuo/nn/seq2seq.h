// The encoder-decoder Transformer (Vaswani et al. 2017), pre-norm, for translation.
//
//   encoder: embed(src) [+ absolute positions] -> n x (x + self_attn(ln_1 x), + mlp(ln_2 x)) -> ln_f
//            non-causal self-attention with the source key padding mask
//   decoder: embed(tgt) [+ absolute positions] -> n x (x + causal self_attn(ln_1 x),
//            + cross_attn(ln_2 x, memory, source padding mask), + mlp(ln_3 x)) -> ln_f -> logits
//
// Shapes: B batch, S source length, T target length, C = d_model, V target vocabulary.
// Token ids are i64; pad_id marks padding (sequences are right-padded). Relative position
// encodings act in the self-attentions (t5 bidirectional in the encoder); cross-attention is
// position-free.
//
// Parameter names: encoder.embed.weight, encoder.wpe.weight (learned), encoder.blocks.<i>.{ln_1,
// attn, ln_2, mlp}, encoder.ln_f; decoder.embed.weight, decoder.wpe.weight, decoder.blocks.<i>.
// {ln_1, self_attn, ln_2, cross_attn, ln_3, mlp}, decoder.ln_f, lm_head (untied only).
// Capture names (nn::AttentionCapture): "encoder.blocks.<i>.self_attn",
// "decoder.blocks.<i>.self_attn", "decoder.blocks.<i>.cross_attn".
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "qiusuo/nn/transformer.h"

namespace qs::nn {

struct Seq2SeqConfig {
  int64_t src_vocab = 64, tgt_vocab = 64;
  int64_t d_model = 128, n_heads = 8, enc_layers = 3, dec_layers = 3;
  int64_t ffn_hidden = 0;     // 0: 4 C
  int64_t max_len = 256;      // longest source or target sequence (learned positions' table size)
  int64_t pad_id = 0;         // padding id in both vocabularies
  bool bias = true;
  bool tie_weights = true;    // the output layer shares decoder.embed.weight
  double norm_eps = 1e-5;
  PositionConfig pos;         // pos.max_len is kept equal to max_len

  // Errors name the field and value: non-positive sizes, d_model not divisible by n_heads,
  // pad_id outside a vocabulary, an odd RoPE head dim, bad position settings.
  void validate() const;
  nlohmann::json to_json() const;
  static Seq2SeqConfig from_json(const nlohmann::json& j);  // unknown keys are errors
};

// A pre-norm decoder block: causal self-attention, cross-attention on the encoder memory,
// then the MLP, each with its residual.
class DecoderBlock : public Module {
 public:
  DecoderBlock(const Seq2SeqConfig& c, int64_t layer, Generator& gen);
  // x [B, T, C], memory [B, S, C], src_mask bool [B, S] (true = padding) or undefined;
  // cache: this layer's self-attention cache (appended to) or nullptr.
  Tensor forward(const Tensor& x, const Tensor& memory, const Tensor& src_mask, LayerKVCache* cache);
  Tensor forward(const Tensor& x) override;  // error: a decoder block needs the memory
  MultiheadAttention& self_attn() const { return *self_attn_; }
  MultiheadAttention& cross_attn() const { return *cross_attn_; }

 private:
  std::shared_ptr<LayerNorm> ln_1_, ln_2_, ln_3_;
  std::shared_ptr<MultiheadAttention> self_attn_, cross_attn_;
  std::shared_ptr<GeluMLP> mlp_;
};

// Initialised as GPT-2 (embeddings and linear weights N(0, 0.02), biases 0, residual
// projections N(0, 0.02 / sqrt(2 (enc_layers + dec_layers))), norms 1).
class Seq2SeqTransformer : public Module {
 public:
  explicit Seq2SeqTransformer(const Seq2SeqConfig& cfg, Generator& gen = default_generator());

  // src i64 [B, S] -> bool [B, S], true where src == pad_id.
  Tensor padding_mask(const Tensor& src) const;
  // src i64 [B, S] -> memory [B, S, C] (after the encoder's final norm).
  Tensor encode(const Tensor& src);
  // tgt i64 [B, T] (decoder input: <bos> y_1 ... ) at positions [start, start + T), where
  // start = cache->length() (0 without a cache) -> logits [B, T, V]. src_mask as padding_mask.
  Tensor decode(const Tensor& tgt, const Tensor& memory, const Tensor& src_mask, KVCacheSet* cache = nullptr);
  // Teacher forcing: encode(src), then decode(tgt) -> logits [B, T, V].
  Tensor forward(const Tensor& src, const Tensor& tgt);
  Tensor forward(const Tensor& x) override;  // error: needs source and target
  KVCacheSet make_cache() const;

  // Greedy decoding with the KV cache, under NoGrad: each source (ids without padding) is
  // encoded once; all sentences decode in lockstep. Returns the generated ids per source,
  // without bos and eos, stopping at eos or after max_new tokens (0: 2 S + 10, capped by
  // max_len). Errors on an empty source or one longer than max_len.
  std::vector<std::vector<int64_t>> greedy(const std::vector<std::vector<int64_t>>& sources, int64_t bos, int64_t eos,
                                           int64_t max_new = 0);
  // Beam search of width k (k = 1 is greedy) with length normalisation (the score is the
  // sum of log-probabilities divided by the length, eos included). Batch 1.
  std::vector<int64_t> beam_search(const std::vector<int64_t>& source, int64_t k, int64_t bos, int64_t eos,
                                   int64_t max_new = 0);

  const Seq2SeqConfig& config() const { return cfg_; }
  const std::vector<std::shared_ptr<TransformerBlock>>& encoder_blocks() const { return enc_blocks_; }
  const std::vector<std::shared_ptr<DecoderBlock>>& decoder_blocks() const { return dec_blocks_; }

 private:
  Tensor embed(Embedding& table, Embedding* wpe, const Tensor& ids, int64_t start) const;
  void init_weights(Generator& gen);
  int64_t max_new_for(int64_t src_len, int64_t max_new) const;
  Seq2SeqConfig cfg_;
  std::shared_ptr<Embedding> src_embed_, tgt_embed_, enc_wpe_, dec_wpe_;
  std::vector<std::shared_ptr<TransformerBlock>> enc_blocks_;
  std::vector<std::shared_ptr<DecoderBlock>> dec_blocks_;
  std::shared_ptr<LayerNorm> enc_ln_, dec_ln_;
  std::shared_ptr<Linear> lm_head_;
};

}  // namespace qs::nn
