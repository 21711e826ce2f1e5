// The encoder-decoder Transformer: configuration, the decoder block, encode / decode.
#include "qiusuo/nn/seq2seq.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "config_json.h"
#include "qiusuo/nn/init.h"
#include "qiusuo/ops.h"

namespace qs::nn {

// ---- config
void Seq2SeqConfig::validate() const {
  QS_CHECK(src_vocab > 0 && tgt_vocab > 0 && d_model > 0 && n_heads > 0 && enc_layers > 0 && dec_layers > 0 &&
               max_len > 0 && ffn_hidden >= 0,
           "Seq2SeqConfig: src_vocab, tgt_vocab, d_model, n_heads, enc_layers, dec_layers, max_len must be positive "
           "(ffn_hidden >= 0), got {}, {}, {}, {}, {}, {}, {} ({})",
           src_vocab, tgt_vocab, d_model, n_heads, enc_layers, dec_layers, max_len, ffn_hidden);
  QS_CHECK(d_model % n_heads == 0, "Seq2SeqConfig: d_model {} is not divisible by n_heads {}", d_model, n_heads);
  QS_CHECK(pad_id >= 0 && pad_id < src_vocab && pad_id < tgt_vocab,
           "Seq2SeqConfig: pad_id {} must be an id of both vocabularies ({} and {})", pad_id, src_vocab, tgt_vocab);
  QS_CHECK(norm_eps > 0, "Seq2SeqConfig: norm_eps must be positive, got {}", norm_eps);
  QS_CHECK(pos.kind != PositionEncoding::rope || (d_model / n_heads) % 2 == 0,
           "Seq2SeqConfig: rope needs an even head dim, got d_model / n_heads = {}", d_model / n_heads);
  PositionConfig p = pos;
  p.max_len = max_len;
  p.validate();
}

nlohmann::json Seq2SeqConfig::to_json() const {
  nlohmann::json j = {{"src_vocab", src_vocab}, {"tgt_vocab", tgt_vocab}, {"d_model", d_model}, {"n_heads", n_heads},
                      {"enc_layers", enc_layers}, {"dec_layers", dec_layers}, {"ffn_hidden", ffn_hidden},
                      {"max_len", max_len}, {"pad_id", pad_id}, {"bias", bias}, {"tie_weights", tie_weights},
                      {"norm_eps", norm_eps}};
  detail::position_to_json(pos, j);
  return j;
}

Seq2SeqConfig Seq2SeqConfig::from_json(const nlohmann::json& j) {
  using detail::json_read;
  constexpr const char* what = "Seq2SeqConfig";
  Seq2SeqConfig c;
  detail::json_check_keys(j, c.to_json(), what);
  json_read(j, what, "src_vocab", c.src_vocab), json_read(j, what, "tgt_vocab", c.tgt_vocab);
  json_read(j, what, "d_model", c.d_model), json_read(j, what, "n_heads", c.n_heads);
  json_read(j, what, "enc_layers", c.enc_layers), json_read(j, what, "dec_layers", c.dec_layers);
  json_read(j, what, "ffn_hidden", c.ffn_hidden), json_read(j, what, "max_len", c.max_len);
  json_read(j, what, "pad_id", c.pad_id), json_read(j, what, "bias", c.bias);
  json_read(j, what, "tie_weights", c.tie_weights), json_read(j, what, "norm_eps", c.norm_eps);
  detail::position_from_json(j, what, c.pos);
  c.pos.max_len = c.max_len;
  return c;
}

// ---- decoder block
namespace {
int64_t ffn_width(const Seq2SeqConfig& c) { return c.ffn_hidden > 0 ? c.ffn_hidden : 4 * c.d_model; }
PositionConfig positions(const Seq2SeqConfig& c, bool bidirectional) {
  PositionConfig p = c.pos;
  p.max_len = c.max_len;
  p.t5_bidirectional = bidirectional;
  return p;
}
}  // namespace

DecoderBlock::DecoderBlock(const Seq2SeqConfig& c, int64_t layer, Generator& gen) : Module("DecoderBlock") {
  const int64_t d = c.d_model;
  ln_1_ = register_module("ln_1", std::make_shared<LayerNorm>(Shape{d}, c.norm_eps));
  self_attn_ = register_module("self_attn",
                               std::make_shared<MultiheadAttention>(d, c.n_heads, 0, positions(c, false), c.bias, gen));
  ln_2_ = register_module("ln_2", std::make_shared<LayerNorm>(Shape{d}, c.norm_eps));
  PositionConfig none;
  none.kind = PositionEncoding::none;
  cross_attn_ = register_module("cross_attn", std::make_shared<MultiheadAttention>(d, c.n_heads, 0, none, c.bias, gen));
  ln_3_ = register_module("ln_3", std::make_shared<LayerNorm>(Shape{d}, c.norm_eps));
  mlp_ = register_module("mlp", std::make_shared<GeluMLP>(d, ffn_width(c), c.bias, gen));
  self_attn_->set_capture_name(fmt::format("decoder.blocks.{}.self_attn", layer));
  cross_attn_->set_capture_name(fmt::format("decoder.blocks.{}.cross_attn", layer));
}

Tensor DecoderBlock::forward(const Tensor& x, const Tensor& memory, const Tensor& src_mask, LayerKVCache* cache) {
  ModuleScope scope(*this);
  AttentionArgs self;
  self.causal = true;
  self.cache = cache;
  Tensor h = x + self_attn_->attend(ln_1_->forward(x), self).out;
  AttentionArgs cross;
  cross.memory = memory;
  cross.key_padding_mask = src_mask;
  h = h + cross_attn_->attend(ln_2_->forward(h), cross).out;
  return h + mlp_->forward(ln_3_->forward(h));
}

Tensor DecoderBlock::forward(const Tensor&) {
  QS_FAIL("DecoderBlock: forward needs the encoder memory; call forward(x, memory, src_mask, cache)");
}

// ---- the model
Seq2SeqTransformer::Seq2SeqTransformer(const Seq2SeqConfig& cfg, Generator& gen)
    : Module("Seq2SeqTransformer"), cfg_(cfg) {
  cfg_.pos.max_len = cfg_.max_len;
  cfg_.validate();
  const int64_t d = cfg_.d_model;
  const bool learned = cfg_.pos.kind == PositionEncoding::learned;
  auto enc = register_module("encoder", std::make_shared<Module>("Encoder"));
  src_embed_ = enc->register_module("embed", std::make_shared<Embedding>(cfg_.src_vocab, d, -1, gen));
  if (learned) enc_wpe_ = enc->register_module("wpe", std::make_shared<Embedding>(cfg_.max_len, d, -1, gen));
  auto enc_list = enc->register_module("blocks", std::make_shared<Module>("ModuleList"));
  for (int64_t i = 0; i < cfg_.enc_layers; ++i) {
    auto attn = std::make_shared<MultiheadAttention>(d, cfg_.n_heads, 0, positions(cfg_, true), cfg_.bias, gen);
    attn->set_capture_name(fmt::format("encoder.blocks.{}.self_attn", i));
    auto mlp = std::make_shared<GeluMLP>(d, ffn_width(cfg_), cfg_.bias, gen);
    enc_blocks_.push_back(enc_list->register_module(
        std::to_string(i), std::make_shared<TransformerBlock>(false, d, cfg_.norm_eps, attn, mlp)));
  }
  enc_ln_ = enc->register_module("ln_f", std::make_shared<LayerNorm>(Shape{d}, cfg_.norm_eps));

  auto dec = register_module("decoder", std::make_shared<Module>("Decoder"));
  tgt_embed_ = dec->register_module("embed", std::make_shared<Embedding>(cfg_.tgt_vocab, d, -1, gen));
  if (learned) dec_wpe_ = dec->register_module("wpe", std::make_shared<Embedding>(cfg_.max_len, d, -1, gen));
  auto dec_list = dec->register_module("blocks", std::make_shared<Module>("ModuleList"));
  for (int64_t i = 0; i < cfg_.dec_layers; ++i)
    dec_blocks_.push_back(dec_list->register_module(std::to_string(i), std::make_shared<DecoderBlock>(cfg_, i, gen)));
  dec_ln_ = dec->register_module("ln_f", std::make_shared<LayerNorm>(Shape{d}, cfg_.norm_eps));
  if (!cfg_.tie_weights) lm_head_ = register_module("lm_head", std::make_shared<Linear>(d, cfg_.tgt_vocab, false, gen));
  init_weights(gen);
}

// GPT-2's initialisation: the residual projections scaled by 1 / sqrt(2 layers) keep the
// residual stream's variance from growing with depth.
void Seq2SeqTransformer::init_weights(Generator& gen) {
  const double std = 0.02, residual_std = 0.02 / std::sqrt(2.0 * double(cfg_.enc_layers + cfg_.dec_layers));
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (auto& [name, p] : named_parameters()) {
    if (ends_with(name, "embed.weight") || ends_with(name, "wpe.weight")) {
      init::normal_(p, 0.0, std, gen);
      continue;
    }
    if (name.find("blocks.") == std::string::npos && name != "lm_head.weight") continue;  // final norms
    if (ends_with(name, "proj.bias") || ends_with(name, "c_fc.bias")) init::zeros_(p);
    if (p.dim() != 2 || !ends_with(name, ".weight")) continue;
    const bool residual = ends_with(name, "out_proj.weight") || ends_with(name, "c_proj.weight");
    init::normal_(p, 0.0, residual ? residual_std : std, gen);
  }
}

Tensor Seq2SeqTransformer::padding_mask(const Tensor& src) const {
  return eq(src, scalar_tensor(double(cfg_.pad_id), DType::i64));
}

Tensor Seq2SeqTransformer::embed(Embedding& table, Embedding* wpe, const Tensor& ids, int64_t start) const {
  QS_CHECK(ids.dim() == 2 && ids.dtype() == DType::i64 && ids.size(1) > 0,
           "Seq2SeqTransformer: expected token ids i64 [B, T] with T > 0, got {} {}", dtype_name(ids.dtype()),
           shape_str(ids.shape()));
  const int64_t n = ids.size(1);
  QS_CHECK(start + n <= cfg_.max_len || (cfg_.pos.kind != PositionEncoding::learned &&
                                          cfg_.pos.kind != PositionEncoding::rope),
           "Seq2SeqTransformer: positions up to {} exceed max_len {} of the {} encoding", start + n, cfg_.max_len,
           position_encoding_name(cfg_.pos.kind));
  Tensor x = table.forward(ids);
  if (cfg_.pos.kind == PositionEncoding::sinusoidal) x = x + sinusoidal_table(start, n, cfg_.d_model, x.dtype());
  if (wpe) x = x + wpe->forward(arange(double(start), double(start + n), 1.0, DType::i64));
  return x;
}

Tensor Seq2SeqTransformer::encode(const Tensor& src) {
  ModuleScope scope(*this);
  Tensor x = embed(*src_embed_, enc_wpe_.get(), src, 0);
  AttentionArgs args;
  args.key_padding_mask = padding_mask(src);
  for (auto& b : enc_blocks_) x = b->forward(x, args);
  return enc_ln_->forward(x);
}

Tensor Seq2SeqTransformer::decode(const Tensor& tgt, const Tensor& memory, const Tensor& src_mask, KVCacheSet* cache) {
  ModuleScope scope(*this);
  const int64_t start = cache ? cache->length() : 0;
  if (cache && cache->layers.empty()) cache->layers.resize(dec_blocks_.size());
  QS_CHECK(!cache || cache->layers.size() == dec_blocks_.size(),
           "Seq2SeqTransformer: the cache has {} layers, the decoder {}; hint: use make_cache()", cache->layers.size(),
           dec_blocks_.size());
  Tensor x = embed(*tgt_embed_, dec_wpe_.get(), tgt, start);
  for (size_t i = 0; i < dec_blocks_.size(); ++i)
    x = dec_blocks_[i]->forward(x, memory, src_mask, cache ? &cache->layers[i] : nullptr);
  x = dec_ln_->forward(x);
  return lm_head_ ? lm_head_->forward(x) : linear(x, tgt_embed_->weight());
}

Tensor Seq2SeqTransformer::forward(const Tensor& src, const Tensor& tgt) {
  QS_CHECK(src.dim() == 2 && tgt.dim() == 2 && src.size(0) == tgt.size(0),
           "Seq2SeqTransformer: expected src [B, S] and tgt [B, T] with the same B, got {} and {}",
           shape_str(src.shape()), shape_str(tgt.shape()));
  Tensor memory = encode(src);
  return decode(tgt, memory, padding_mask(src));
}

Tensor Seq2SeqTransformer::forward(const Tensor&) {
  QS_FAIL("Seq2SeqTransformer: forward needs source and target ids; call forward(src, tgt)");
}

KVCacheSet Seq2SeqTransformer::make_cache() const {
  KVCacheSet c;
  c.layers.resize(dec_blocks_.size());
  return c;
}

}  // namespace qs::nn
