// The decoder-only LM: cached logits and greedy generation against full recomputation
// for every position encoding and block type (and MLA), gradcheck end to end in f64,
// the config (JSON, validation, supported lengths) and the MoE / sampler hooks.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "ops/harness.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

namespace qs::nn {
namespace {

const PositionEncoding kAll[] = {PositionEncoding::none, PositionEncoding::sinusoidal, PositionEncoding::learned,
                                 PositionEncoding::shaw, PositionEncoding::t5,         PositionEncoding::alibi,
                                 PositionEncoding::rope};

LMConfig tiny(const std::string& block, const std::string& attn, PositionEncoding kind,
             const std::string& ffn = "swiglu") {
  LMConfig c;
  c.ffn = ffn, c.moe_n_routed = 4, c.moe_top_k = 2, c.moe_n_shared = 1;
  c.vocab_size = 11, c.d_model = 16, c.n_layers = 2, c.n_heads = 4, c.max_seq_len = 16;
  c.n_kv_heads = attn == "mha" ? 2 : 0;
  c.block = block, c.attention = attn;
  c.pos.kind = kind;
  c.pos.shaw_max_distance = 3;
  c.pos.t5_num_buckets = 8, c.pos.t5_max_distance = 12;
  c.q_lora_rank = 6, c.kv_lora_rank = 8, c.qk_rope_head_dim = 4;
  c.tie_weights = kind != PositionEncoding::learned;  // both head variants get exercised
  return c;
}

double max_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

struct Variant {
  const char* block;
  const char* attn;
  const char* ffn = "swiglu";
};
const Variant kVariants[] = {{"gpt", "mha"}, {"deepseek", "mha"}, {"deepseek", "mla"}, {"deepseek", "mla", "moe"}};

TEST(TransformerLM, CachedLogitsAndGreedyGenerationEqualFullRecomputation) {
  for (const Variant& var : kVariants)
    for (PositionEncoding kind : kAll) {
      const std::string what = std::string(var.block) + "/" + var.attn + "/" + var.ffn + "/" + position_encoding_name(kind);
      Generator g(11);
      TransformerLM lm(tiny(var.block, var.attn, kind, var.ffn), {}, g);
      NoGrad ng;
      Tensor idx = randint(0, 11, {2, 9}, DType::i64, &g);
      Tensor full = lm.forward(idx);
      ASSERT_EQ(full.shape(), (Shape{2, 9, 11})) << what;
      KVCacheSet cache = lm.make_cache();
      std::vector<Tensor> parts = {lm.forward_cached(idx.narrow(1, 0, 4), cache)};
      for (int64_t t = 4; t < 9; ++t) parts.push_back(lm.forward_cached(idx.narrow(1, t, 1), cache));
      EXPECT_LT(max_diff(cat(parts, 1), full), 1e-5) << what;
      EXPECT_EQ(cache.length(), 9) << what;
      EXPECT_EQ(cache.bytes(), 2 * 9 * lm.kv_cache_bytes_per_token()) << what;
      // The fused and the textbook attention paths give the same model.
      lm.set_explicit_attention(true);
      EXPECT_LT(max_diff(lm.forward(idx), full), 1e-5) << what;
      KVCacheSet cache2 = lm.make_cache();
      lm.forward_cached(idx.narrow(1, 0, 8), cache2);
      EXPECT_LT(max_diff(lm.forward_cached(idx.narrow(1, 8, 1), cache2), full.narrow(1, 8, 1)), 1e-5) << what;
      lm.set_explicit_attention(false);

      std::vector<int64_t> prompt = {1, 2, 3};
      std::vector<int64_t> got = lm.generate(prompt, 7);
      std::vector<int64_t> want = prompt;
      for (int step = 0; step < 7; ++step) {
        std::vector<double> ids(want.begin(), want.end());
        Tensor logits = lm.forward(from_vector(ids, {1, int64_t(ids.size())}, DType::i64));
        want.push_back(int64_t(argmax(logits.select(0, 0).select(0, int64_t(ids.size()) - 1)).item()));
      }
      EXPECT_EQ(got, want) << what;
    }
}

// A half-precision KV cache: the attention layers' keys and values kept as f16 (MLA's
// compressed cache stays f32), logits within f16 rounding of the f32 recomputation through
// prefill (n > 4: widened) and single-token steps (read as f16), half the bytes, and the
// explicit attention path agreeing with the fused one.
TEST(TransformerLM, HalfPrecisionKvCacheStaysCloseAndHalvesTheBytes) {
  for (const Variant& var : kVariants)
    for (PositionEncoding kind : {PositionEncoding::rope, PositionEncoding::alibi, PositionEncoding::learned}) {
      const std::string what = std::string(var.block) + "/" + var.attn + "/" + position_encoding_name(kind);
      Generator g(12);
      TransformerLM lm(tiny(var.block, var.attn, kind, var.ffn), {}, g);
      NoGrad ng;
      Tensor idx = randint(0, 11, {1, 9}, DType::i64, &g);
      Tensor full = lm.forward(idx);
      KVCacheSet cache = lm.make_cache(DType::f16);
      std::vector<Tensor> parts = {lm.forward_cached(idx.narrow(1, 0, 6), cache)};
      for (int64_t t = 6; t < 9; ++t) parts.push_back(lm.forward_cached(idx.narrow(1, t, 1), cache));
      const double err = max_diff(cat(parts, 1), full);
      EXPECT_LT(err, 2e-2 * max_diff(full, zeros_like(full))) << what;
      const bool mha = std::string(var.attn) == "mha";
      if (mha) EXPECT_GT(err, 0.0) << what << ": the f16 rows must be the ones read";
      EXPECT_EQ(cache.layers[0].k.dtype(), mha ? DType::f16 : DType::f32) << what;
      EXPECT_EQ(cache.bytes(), 9 * lm.kv_cache_bytes_per_token(mha ? DType::f16 : DType::f32)) << what;
      lm.set_explicit_attention(true);
      KVCacheSet cache2 = lm.make_cache(DType::f16);
      lm.forward_cached(idx.narrow(1, 0, 8), cache2);
      EXPECT_LT(max_diff(lm.forward_cached(idx.narrow(1, 8, 1), cache2), parts.back()), 1e-4) << what;
      lm.set_explicit_attention(false);
      std::vector<int64_t> got = lm.generate({1, 2, 3}, 5, {}, 0, -1, DType::f16);
      EXPECT_EQ(got.size(), 8u) << what;
    }
  Generator g(13);
  TransformerLM lm(tiny("gpt", "mha", PositionEncoding::rope, "swiglu"), {}, g);
  EXPECT_THROW(lm.make_cache(DType::bf16), Error);
}

// qs::gradcheck over the model's parameters: the perturbed copies it passes are written
// into the parameters for the call and restored after it.
std::string lm_gradcheck(TransformerLM& lm, const Tensor& idx) {
  std::vector<Tensor> params = lm.parameters();
  auto f = [&](const std::vector<Tensor>& xs) {
    std::vector<std::pair<size_t, Tensor>> saved;
    for (size_t i = 0; i < xs.size(); ++i)
      if (!xs[i].same(params[i])) saved.emplace_back(i, params[i].clone()), params[i].copy_(xs[i]);
    Tensor out = lm.forward(idx);
    for (auto& [i, t] : saved) params[i].copy_(t);
    return std::vector<Tensor>{out};
  };
  return ops::gradcheck(f, params, 3, 6);
}

TEST(TransformerLM, GradcheckEndToEndInF64ForEveryEncoding) {
  for (const Variant& var : kVariants)
    for (PositionEncoding kind : kAll) {
      if (std::string(var.block) == "deepseek" && kind != PositionEncoding::rope && kind != PositionEncoding::shaw)
        continue;  // the block/attention variants once each with rope and shaw; every encoding with gpt
      Generator g(12);
      LMConfig c = tiny(var.block, var.attn, kind, var.ffn);
      c.n_layers = 1, c.d_model = 8, c.n_heads = 2, c.vocab_size = 7;
      c.n_kv_heads = std::string(var.attn) == "mha" ? 1 : 0;
      c.q_lora_rank = 0, c.kv_lora_rank = 4, c.qk_rope_head_dim = 2;
      TransformerLM lm(c, {}, g);
      to_dtype_(lm, DType::f64);
      for (auto& p : lm.parameters()) ASSERT_EQ(p.dtype(), DType::f64);
      Tensor idx = randint(0, 7, {1, 5}, DType::i64, &g);
      EXPECT_EQ(lm_gradcheck(lm, idx), "") << var.block << "/" << var.attn << "/" << var.ffn << "/"
                                     << position_encoding_name(kind);
    }
}

TEST(TransformerLM, ParameterNamesAndTiedHead) {
  Generator g(13);
  TransformerLM lm(tiny("gpt", "mha", PositionEncoding::learned), {}, g);
  auto sd = lm.state_dict();
  auto has = [&](const std::string& k) {
    for (auto& [n, t] : sd)
      if (n == k) return true;
    return false;
  };
  for (const char* k : {"wte.weight", "wpe.weight", "blocks.0.ln_1.weight", "blocks.1.attn.in_proj.weight",
                        "blocks.0.attn.out_proj.bias", "blocks.0.mlp.c_fc.weight", "ln_f.bias", "lm_head.weight"})
    EXPECT_TRUE(has(k)) << k;
  TransformerLM tied(tiny("deepseek", "mla", PositionEncoding::rope), {}, g);
  sd = tied.state_dict();
  EXPECT_FALSE(has("lm_head.weight"));
  for (const char* k : {"blocks.0.attn.q_a_proj.weight", "blocks.0.attn.kv_a_proj_with_mqa.weight",
                        "blocks.0.attn.kv_b_proj.weight", "blocks.0.mlp.gate_proj.weight"})
    EXPECT_TRUE(has(k)) << k;
}

TEST(TransformerLM, Gpt2Initialisation) {
  LMConfig c;
  c.d_model = 64, c.n_layers = 2;
  Generator g(17);
  TransformerLM lm(c, {}, g);
  auto stddev = [](const Tensor& t) { return std::sqrt(var(t, {}, 0.0).item()); };
  for (auto& [name, p] : lm.named_parameters()) {
    double want = -1;  // expected standard deviation
    if (name == "blocks.0.attn.out_proj.weight" || name == "blocks.1.mlp.c_proj.weight") want = 0.01;  // 0.02/sqrt(4)
    if (name == "blocks.0.mlp.c_fc.weight" || name == "wte.weight") want = 0.02;
    if (want > 0) {
      EXPECT_NEAR(stddev(p), want, 0.001) << name;
    }
    if (name == "blocks.0.attn.in_proj.bias" || name == "blocks.0.ln_1.bias") {
      EXPECT_EQ(sum(abs(p)).item(), 0.0) << name;
    }
  }
}

TEST(LMConfig, JsonRoundTripAndErrors) {
  LMConfig c = tiny("deepseek", "mla", PositionEncoding::rope);
  c.pos.rope_scaling = RopeScaling::yarn, c.pos.rope_factor = 4.0;
  nlohmann::json j = c.to_json();
  EXPECT_EQ(LMConfig::from_json(j).to_json(), j);
  EXPECT_EQ(j["position"], "rope");
  EXPECT_EQ(LMConfig::from_json({{"d_model", 32}}).d_model, 32);
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto contains = [](const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; };
  EXPECT_TRUE(contains(message([] { LMConfig::from_json({{"d_modle", 32}}); }), "unknown key 'd_modle'"));
  EXPECT_TRUE(contains(message([] { LMConfig::from_json({{"position", "rotary"}}); }), "unknown position encoding"));
  EXPECT_TRUE(contains(message([] { LMConfig::from_json({{"d_model", "big"}}); }), "wrong type"));
  auto bad = [&](auto edit) {
    LMConfig b;
    edit(b);
    return message([&] { b.validate(); });
  };
  EXPECT_TRUE(contains(bad([](LMConfig& b) { b.d_model = 30; }), "not divisible by n_heads"));
  EXPECT_TRUE(contains(bad([](LMConfig& b) { b.n_kv_heads = 3; }), "not a multiple of n_kv_heads"));
  EXPECT_TRUE(contains(bad([](LMConfig& b) { b.d_model = 12; }), "even head dim"));
  EXPECT_TRUE(contains(bad([](LMConfig& b) { b.block = "llama"; }), "unknown block 'llama'"));
  EXPECT_TRUE(contains(bad([](LMConfig& b) { b.attention = "mla"; }), "needs block deepseek"));
  EXPECT_TRUE(contains(bad([](LMConfig& b) { b.ffn = "moe"; }), "no error"));  // gpt blocks ignore it
  EXPECT_TRUE(contains(bad([](LMConfig& b) { b.block = "deepseek", b.ffn = "moe", b.moe_top_k = 9; }), "top_k"));
  EXPECT_TRUE(contains(bad([](LMConfig& b) { b.block = "deepseek", b.ffn = "moe", b.moe_score = "relu"; }),
                       "unknown moe_score 'relu'"));
}

TEST(LMConfig, SupportedLengths) {
  LMConfig c;
  c.max_seq_len = 64;
  EXPECT_EQ(c.max_supported_length(), 64);  // rope without scaling
  EXPECT_NE(std::string([&] {
              try {
                c.check_length(65);
              } catch (const Error& e) {
                return std::string(e.what());
              }
              return std::string();
            }()).find("hint: set rope_scaling"),
            std::string::npos);
  c.pos.rope_scaling = RopeScaling::ntk, c.pos.rope_factor = 2.0;
  EXPECT_EQ(c.max_supported_length(), 128);
  c.pos.kind = PositionEncoding::sinusoidal;
  EXPECT_NO_THROW(c.check_length(100000));
  c.pos.kind = PositionEncoding::learned;
  EXPECT_THROW(c.check_length(65), Error);
  Generator g(14);
  TransformerLM lm(tiny("gpt", "mha", PositionEncoding::learned), {}, g);
  EXPECT_THROW(lm.forward(zeros({1, 17}, DType::i64)), Error);  // beyond the learned table of 16
  EXPECT_THROW(lm.generate({1, 2}, 15), Error);
  EXPECT_EQ(lm.generate({1, 2}, 14).size(), 16u);
}

// Token embeddings and the sinusoidal table enter with comparable magnitudes (std ~1),
// as in Vaswani et al.; other encodings keep GPT-2's N(0, 0.02) embeddings unscaled.
TEST(TransformerLM, SinusoidalScalesTokenEmbeddings) {
  auto wte_std = [](const TransformerLM& lm) {
    for (auto& [name, t] : lm.state_dict())
      if (name == "wte.weight") return std::sqrt(mean(pow(t, 2.0)).item());
    return -1.0;
  };
  LMConfig c;
  c.vocab_size = 256, c.d_model = 64, c.n_layers = 1, c.n_heads = 4, c.max_seq_len = 32;
  c.pos.kind = PositionEncoding::sinusoidal;
  Generator g(21);
  TransformerLM sin_lm(c, {}, g);
  EXPECT_DOUBLE_EQ(sin_lm.sinusoidal_embed_scale(), 8.0);
  EXPECT_NEAR(wte_std(sin_lm) * sin_lm.sinusoidal_embed_scale(), 1.0, 0.05);
  c.pos.kind = PositionEncoding::rope;
  TransformerLM rope_lm(c, {}, g);
  EXPECT_DOUBLE_EQ(rope_lm.sinusoidal_embed_scale(), 1.0);
  EXPECT_NEAR(wte_std(rope_lm), 0.02, 0.002);
}

TEST(TransformerLM, MoeLayersLoadAndBalanceLoss) {
  Generator g(15);
  LMConfig c = tiny("deepseek", "mha", PositionEncoding::rope, "moe");
  c.moe_first_dense = 1, c.moe_aux_loss_alpha = 0.01;
  TransformerLM lm(c, {}, g);
  auto moe = lm.moe_layers();
  ASSERT_EQ(moe.size(), 1u);  // layer 0 stays dense
  EXPECT_EQ(moe[0], &lm.blocks()[1]->mlp());
  EXPECT_EQ(lm.blocks()[0]->mlp().type_name(), "SwiGLU");
  EXPECT_EQ(moe[0]->config().d_expert, 16);  // swiglu width 48 / (top_k 2 + shared 1)
  Tensor logits = lm.forward(randint(0, 11, {2, 5}, DType::i64, &g));
  Tensor aux = lm.aux_loss();
  ASSERT_TRUE(aux.defined());
  (cross_entropy(logits.reshape({10, 11}), randint(0, 11, {10}, DType::i64, &g)) + aux).backward();
  EXPECT_EQ(moe[0]->load_stats().total, 10 * 2);  // tokens * top_k
  moe[0]->update_bias();
  lm.eval();
  lm.forward(zeros({1, 3}, DType::i64));
  EXPECT_FALSE(lm.aux_loss().defined());
  EXPECT_TRUE(TransformerLM(tiny("deepseek", "mha", PositionEncoding::rope)).moe_layers().empty());
}

TEST(TransformerLM, FfnFactoryAndSamplers) {
  Generator g(15);
  LMConfig c = tiny("deepseek", "mha", PositionEncoding::rope, "moe");
  std::vector<int64_t> layers;
  FfnFactory factory = [&](int64_t layer, int64_t d) -> std::shared_ptr<Module> {
    layers.push_back(layer);
    return std::make_shared<GeluMLP>(d, 2 * d, false, g);
  };
  TransformerLM lm(c, factory, g);
  EXPECT_EQ(layers, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(lm.blocks()[1]->mlp().type_name(), "GeluMLP");
  EXPECT_TRUE(lm.moe_layers().empty());  // not nn::MoE

  // A sampler drawing from the generator: the same seed gives the same tokens.
  Sampler draw = [](const Tensor& logits, Generator& gen) { return int64_t(gen.next_u64() % uint64_t(logits.numel())); };
  EXPECT_EQ(lm.generate({4}, 6, draw, 9), lm.generate({4}, 6, draw, 9));
  EXPECT_EQ(lm.generate({4}, 6, make_sampler({.temperature = 0.0})), lm.generate({4}, 6));
  EXPECT_EQ(lm.generate({4}, 6, make_sampler({.temperature = 1.0, .top_k = 3}), 5),
            lm.generate({4}, 6, make_sampler({.temperature = 1.0, .top_k = 3}), 5));
  Sampler three = [](const Tensor&, Generator&) { return int64_t(3); };
  EXPECT_EQ(lm.generate({4}, 5, three, 0, /*eos_id=*/3), (std::vector<int64_t>{4, 3}));
  Sampler bad = [](const Tensor&, Generator&) { return int64_t(99); };
  EXPECT_THROW(lm.generate({4}, 2, bad), Error);
}

// bf16 autocast (the trainer's mixed precision): every encoding runs forward and backward,
// near the f32 logits.
TEST(TransformerLM, RunsUnderAutocast) {
  for (const Variant& var : kVariants)
    for (PositionEncoding kind : {PositionEncoding::rope, PositionEncoding::shaw, PositionEncoding::sinusoidal}) {
      Generator g(18);
      TransformerLM lm(tiny(var.block, var.attn, kind, var.ffn), {}, g);
      Tensor idx = randint(0, 11, {2, 6}, DType::i64, &g);
      Tensor want = lm.forward(idx);
      Tensor got;
      {
        Autocast ac;
        got = lm.forward(idx);
        sum(got * got).backward();
      }
      EXPECT_EQ(got.dtype(), DType::f32);
      EXPECT_LT(max_diff(got, want), 2e-2) << var.block << "/" << var.attn << "/" << position_encoding_name(kind);
      EXPECT_TRUE(lm.named_parameters()[0].second.grad().defined());
    }
}

TEST(TransformerLM, CaptureNamesEveryLayer) {
  Generator g(16);
  TransformerLM lm(tiny("gpt", "mha", PositionEncoding::t5), {}, g);
  AttentionCapture cap;
  lm.forward(zeros({1, 5}, DType::i64));
  ASSERT_EQ(cap.records().size(), 2u);
  EXPECT_EQ(cap.records()[1].name, "blocks.1.attn");
  EXPECT_EQ(cap.weights("blocks.0.attn").shape(), (Shape{1, 4, 5, 5}));
}

}  // namespace
}  // namespace qs::nn
