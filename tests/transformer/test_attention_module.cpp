// MultiheadAttention and MLA modules: against attention_explicit on the projections
// written out by hand, the capture scope, cross-attention, and MLA's absorbed form
// against its uncompressed form.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/harness.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

namespace qs::nn {
namespace {

double max_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// [B, T, H * dh] -> [B, H, T, dh]
Tensor heads(const Tensor& t, int64_t h) { return t.reshape({t.size(0), t.size(1), h, -1}).transpose(1, 2); }

TEST(MultiheadAttention, MatchesExplicitAttentionAndCaptureStoresItsWeights) {
  Generator g(1);
  PositionConfig pos;  // rope
  MultiheadAttention mha(16, 4, 2, pos, true, g);
  EXPECT_EQ(mha.named_parameters()[0].first, "in_proj.weight");
  EXPECT_EQ(mha.named_parameters()[0].second.shape(), (Shape{(4 + 2 * 2) * 4, 16}));
  to_dtype_(mha, DType::f64);
  Tensor x = randn({2, 5, 16}, DType::f64, &g);
  AttentionArgs args;
  args.causal = true;
  AttentionCapture cap;
  Tensor out = mha.attend(x, args).out;
  EXPECT_FALSE(mha.attend(x, args).weights.defined());  // captured, but not asked for

  Tensor w = mha.named_parameters()[0].second, b = mha.named_parameters()[1].second;
  Tensor qkv = linear(x, w, b);
  RotaryEmbedding rot(4, pos);
  Tensor q = rot.apply(heads(qkv.narrow(2, 0, 16), 4), 0), k = rot.apply(heads(qkv.narrow(2, 16, 8), 2), 0);
  AttentionOptions o;
  o.causal = true;
  o.need_weights = true;
  AttentionOutput want = attention_explicit(q, k, heads(qkv.narrow(2, 24, 8), 2), o);
  Tensor merged = want.out.transpose(1, 2).reshape({2, 5, 16});
  Tensor want_out = linear(merged, mha.named_parameters()[2].second, mha.named_parameters()[3].second);
  EXPECT_LT(max_diff(out, want_out), 1e-12);
  ASSERT_EQ(cap.records().size(), 2u);
  EXPECT_EQ(cap.records()[0].name, "attn");
  EXPECT_LT(max_diff(cap.weights("attn"), want.weights), 1e-6);
  EXPECT_THROW(cap.weights("blocks.0.attn"), Error);
}

TEST(MultiheadAttention, CaptureOffComputesNoWeightsAndScopesNest) {
  Generator g(2);
  MultiheadAttention mha(8, 2, 0, PositionConfig{.kind = PositionEncoding::alibi}, false, g);
  Tensor x = randn({1, 3, 8}, DType::f32, &g);
  EXPECT_EQ(AttentionCapture::active(), nullptr);
  AttentionArgs args;
  EXPECT_FALSE(mha.attend(x, args).weights.defined());
  args.need_weights = true;
  EXPECT_EQ(mha.attend(x, args).weights.shape(), (Shape{1, 2, 3, 3}));
  AttentionCapture outer;
  mha.set_capture_name("outer");
  mha.forward(x);
  {
    AttentionCapture inner;
    mha.set_capture_name("inner");
    mha.forward(x);
    EXPECT_EQ(inner.records().size(), 1u);
  }
  EXPECT_EQ(AttentionCapture::active(), &outer);
  ASSERT_EQ(outer.records().size(), 1u);
  EXPECT_EQ(outer.records()[0].name, "outer");
}

TEST(MultiheadAttention, CrossAttentionUsesTheKeyValueRowsOnMemory) {
  Generator g(3);
  MultiheadAttention mha(8, 2, 1, PositionConfig{.kind = PositionEncoding::rope}, true, g);
  to_dtype_(mha, DType::f64);
  Tensor x = randn({2, 3, 8}, DType::f64, &g), mem = randn({2, 7, 8}, DType::f64, &g);
  Tensor out = mha.forward(x, mem);
  EXPECT_EQ(out.shape(), (Shape{2, 3, 8}));
  auto p = mha.named_parameters();
  Tensor w = p[0].second, b = p[1].second;
  Tensor q = heads(linear(x, w.narrow(0, 0, 8), b.narrow(0, 0, 8)), 2);
  Tensor kv = linear(mem, w.narrow(0, 8, 8), b.narrow(0, 8, 8));
  Tensor o = attention_explicit(q, heads(kv.narrow(2, 0, 4), 1), heads(kv.narrow(2, 4, 4), 1)).out;
  EXPECT_LT(max_diff(out, linear(o.transpose(1, 2).reshape({2, 3, 8}), p[2].second, p[3].second)), 1e-12);
  for (auto kind : {PositionEncoding::shaw, PositionEncoding::t5, PositionEncoding::alibi}) {
    MultiheadAttention rel(8, 2, 1, PositionConfig{.kind = kind}, true, g);
    EXPECT_EQ(rel.forward(x.to(DType::f32), mem.to(DType::f32)).shape(), (Shape{2, 3, 8}));  // position-free
  }
  LayerKVCache cache;
  AttentionArgs a;
  a.memory = mem;
  a.cache = &cache;
  EXPECT_THROW(mha.attend(x, a), Error);
  EXPECT_THROW(MultiheadAttention(10, 4), Error);     // d_model not divisible
  EXPECT_THROW(MultiheadAttention(12, 4, 3), Error);  // heads not a multiple of kv heads
  EXPECT_THROW(MultiheadAttention(12, 4, 4, PositionConfig{}), Error);  // odd head dim 3 with rope
}

// Padded keys get zero weight; with a cache the mask spans cached and new keys.
TEST(MultiheadAttention, KeyPaddingMaskWithAndWithoutCache) {
  Generator g(6);
  MultiheadAttention mha(8, 2, 0, PositionConfig{.kind = PositionEncoding::shaw, .shaw_max_distance = 2}, true, g);
  to_dtype_(mha, DType::f64);
  Tensor x = randn({2, 4, 8}, DType::f64, &g);
  std::vector<double> pad(8, 0.0);
  pad[1] = 1, pad[4 + 3] = 1;  // batch 0 key 1, batch 1 key 3
  AttentionArgs a;
  a.causal = true;
  a.need_weights = true;
  a.key_padding_mask = from_vector(pad, {2, 4}, DType::b8);
  AttentionResult full = mha.attend(x, a);
  auto w = full.weights.to_vector();  // [2, 2, 4, 4]
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_EQ(w[size_t(((0 * 2 + h) * 4 + i) * 4 + 1)], 0.0);
      EXPECT_EQ(w[size_t(((1 * 2 + h) * 4 + i) * 4 + 3)], 0.0);
    }
  LayerKVCache cache;
  a.cache = &cache;
  a.key_padding_mask = from_vector(pad, {2, 4}, DType::b8).narrow(1, 0, 2);
  Tensor first = mha.attend(x.narrow(1, 0, 2), a).out;
  a.key_padding_mask = from_vector(pad, {2, 4}, DType::b8);
  Tensor rest = mha.attend(x.narrow(1, 2, 2), a).out;
  EXPECT_LT(max_diff(cat({first, rest}, 1), full.out), 1e-12);
}

MlaConfig small_mla(int64_t q_lora) {
  MlaConfig c;
  c.d_model = 24, c.n_heads = 3, c.q_lora_rank = q_lora, c.kv_lora_rank = 10;
  c.qk_nope_head_dim = 6, c.qk_rope_head_dim = 4, c.v_head_dim = 5;
  return c;
}

TEST(MultiheadLatentAttention, AbsorbedEqualsUncompressedForEveryEncoding) {
  for (auto kind : {PositionEncoding::rope, PositionEncoding::none, PositionEncoding::alibi, PositionEncoding::t5,
                    PositionEncoding::shaw}) {
    Generator g(4);
    PositionConfig pos;
    pos.kind = kind;
    pos.shaw_max_distance = 2;
    MultiheadLatentAttention mla(small_mla(kind == PositionEncoding::rope ? 8 : 0), pos, g);
    to_dtype_(mla, DType::f64);
    Tensor x = randn({2, 6, 24}, DType::f64, &g);
    AttentionArgs a;
    a.causal = true;
    a.need_weights = true;
    mla.set_mode(MultiheadLatentAttention::Mode::uncompressed);
    AttentionResult full = mla.attend(x, a);
    mla.set_mode(MultiheadLatentAttention::Mode::absorbed);
    AttentionResult abs = mla.attend(x, a);
    EXPECT_LT(max_diff(full.out, abs.out), 1e-12) << position_encoding_name(kind);
    EXPECT_LT(max_diff(full.weights, abs.weights), 1e-12) << position_encoding_name(kind);
    // Generation: the compressed cache, one token at a time (automatic mode absorbs).
    mla.set_mode(MultiheadLatentAttention::Mode::automatic);
    LayerKVCache cache;
    a.cache = &cache;
    std::vector<Tensor> steps;
    for (int64_t t = 0; t < 6; ++t) steps.push_back(mla.attend(x.narrow(1, t, 1), a).out);
    EXPECT_LT(max_diff(cat(steps, 1), full.out), 1e-12) << position_encoding_name(kind);
    EXPECT_EQ(cache.k.shape(), (Shape{2, 6, 10}));  // c_kv
    EXPECT_EQ(cache.v.shape(), (Shape{2, 6, 4}));   // k_rope
    EXPECT_EQ(cache.bytes(), 2 * 6 * mla.cache_bytes_per_token(DType::f64));
  }
}

TEST(MultiheadLatentAttention, CacheBytesPerTokenAgainstMha) {
  // DeepSeek-V2's sizes: 128 heads of 128, kv_lora_rank 512, d_rope 64.
  MlaConfig c;
  c.d_model = 128, c.n_heads = 128, c.kv_lora_rank = 512, c.qk_nope_head_dim = 1, c.qk_rope_head_dim = 64;
  c.v_head_dim = 1;
  EXPECT_EQ(MultiheadLatentAttention(c).cache_bytes_per_token(DType::bf16), (512 + 64) * 2);
  // MHA with the same heads: 2 * 128 * 128 values per token, 57x more.
  EXPECT_EQ(2 * 128 * 128 * 2, 65536);
  MultiheadAttention mha(64, 4, 2);
  EXPECT_EQ(mha.cache_bytes_per_token(DType::f32), 2 * 2 * 16 * 4);
}

// Both MLA forms and cross-attention, through qs::gradcheck on their inputs.
TEST(MultiheadLatentAttention, GradcheckBothFormsAndCrossAttention) {
  Generator g(5);
  MultiheadLatentAttention mla(small_mla(8), PositionConfig{}, g);
  to_dtype_(mla, DType::f64);
  AttentionArgs a;
  a.causal = true;
  for (auto mode : {MultiheadLatentAttention::Mode::uncompressed, MultiheadLatentAttention::Mode::absorbed}) {
    mla.set_mode(mode);
    auto f = [&](const std::vector<Tensor>& xs) { return std::vector<Tensor>{mla.attend(xs[0], a).out}; };
    EXPECT_EQ(ops::gradcheck(f, {randn({1, 3, 24}, DType::f64, &g).requires_grad_()}, 1, 40), "") << int(mode);
  }
  MultiheadAttention mha(8, 2, 1, PositionConfig{}, true, g);
  to_dtype_(mha, DType::f64);
  auto cross = [&](const std::vector<Tensor>& xs) { return std::vector<Tensor>{mha.forward(xs[0], xs[1])}; };
  EXPECT_EQ(ops::gradcheck(cross, {randn({2, 3, 8}, DType::f64, &g).requires_grad_(),
                                   randn({2, 5, 8}, DType::f64, &g).requires_grad_()}),
            "");
}

}  // namespace
}  // namespace qs::nn
