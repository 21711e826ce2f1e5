// The encoder-decoder Transformer: cached decoding against full recomputation for every
// position encoding, padding that leaves real rows alone, gradcheck in f64, beam search,
// capture names and the config's JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ops/harness.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/seq2seq.h"
#include "qiusuo/ops.h"
#include "test_util.h"

namespace qs::nn {
namespace {

const PositionEncoding kAll[] = {PositionEncoding::none, PositionEncoding::sinusoidal, PositionEncoding::learned,
                                 PositionEncoding::shaw, PositionEncoding::t5,         PositionEncoding::alibi,
                                 PositionEncoding::rope};

Seq2SeqConfig tiny(PositionEncoding kind) {
  Seq2SeqConfig c;
  c.src_vocab = 13, c.tgt_vocab = 11, c.d_model = 16, c.n_heads = 4, c.enc_layers = 2, c.dec_layers = 2;
  c.max_len = 24;
  c.pos.kind = kind;
  c.pos.shaw_max_distance = 3;
  c.pos.t5_num_buckets = 8, c.pos.t5_max_distance = 12;
  c.tie_weights = kind != PositionEncoding::learned;  // both output variants get exercised
  return c;
}

double max_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector(), y = b.to_vector();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

Tensor ids(const std::vector<double>& v, int64_t b) { return from_vector(v, {b, int64_t(v.size()) / b}, DType::i64); }

}  // namespace

TEST(Seq2Seq, CachedDecodingAndGreedyEqualFullRecomputation) {
  for (PositionEncoding kind : kAll) {
    const std::string what = position_encoding_name(kind);
    Generator g(5);
    Seq2SeqTransformer m(tiny(kind), g);
    NoGrad ng;
    Tensor src = ids({4, 5, 6, 7, 8, 3, 9, 0, 0}, 1);  // one padded source
    Tensor tgt = randint(1, 11, {1, 8}, DType::i64, &g);
    Tensor full = m.forward(src, tgt);
    ASSERT_EQ(full.shape(), (Shape{1, 8, 11})) << what;
    Tensor memory = m.encode(src), mask = m.padding_mask(src);
    KVCacheSet cache = m.make_cache();
    std::vector<Tensor> parts = {m.decode(tgt.narrow(1, 0, 3), memory, mask, &cache)};
    for (int64_t t = 3; t < 8; ++t) parts.push_back(m.decode(tgt.narrow(1, t, 1), memory, mask, &cache));
    EXPECT_LT(max_diff(cat(parts, 1), full), 1e-5) << what;
    EXPECT_EQ(cache.length(), 8) << what;

    // Greedy with the cache equals argmax over a full forward of the growing prefix.
    const std::vector<int64_t> source = {4, 5, 6, 7, 8, 3, 9};
    std::vector<int64_t> got = m.greedy({source}, 1, 2, 6)[0];
    std::vector<double> prefix = {1};
    std::vector<int64_t> want;
    Tensor s = ids(std::vector<double>(source.begin(), source.end()), 1);
    for (int step = 0; step < 6; ++step) {
      Tensor logits = m.forward(s, ids(prefix, 1));
      int64_t next = int64_t(argmax(logits.select(0, 0).select(0, int64_t(prefix.size()) - 1)).item());
      if (next == 2) break;
      want.push_back(next);
      prefix.push_back(double(next));
    }
    EXPECT_EQ(got, want) << what;
    EXPECT_EQ(m.beam_search(source, 1, 1, 2, 6), want) << what << ": beam width 1 is greedy";
  }
}

TEST(Seq2Seq, PaddingDoesNotChangeUnpaddedRows) {
  for (PositionEncoding kind : {PositionEncoding::rope, PositionEncoding::learned, PositionEncoding::t5}) {
    Generator g(6);
    Seq2SeqTransformer m(tiny(kind), g);
    NoGrad ng;
    // Row 0 is short (padded on both sides), row 1 is long.
    Tensor src = ids({4, 5, 6, 0, 0, 0, 7, 8, 9, 10, 11, 12}, 2);
    Tensor tgt = ids({1, 3, 4, 0, 0, 1, 5, 6, 7, 8}, 2);
    Tensor both = m.forward(src, tgt);
    Tensor alone = m.forward(ids({4, 5, 6}, 1), ids({1, 3, 4}, 1));
    EXPECT_LT(max_diff(both.narrow(0, 0, 1).narrow(1, 0, 3), alone), 1e-5) << position_encoding_name(kind);
    Tensor alone1 = m.forward(ids({7, 8, 9, 10, 11, 12}, 1), ids({1, 5, 6, 7, 8}, 1));
    EXPECT_LT(max_diff(both.narrow(0, 1, 1), alone1), 1e-5);
    // Batched greedy decodes each sentence as it would alone.
    auto batch = m.greedy({{4, 5, 6}, {7, 8, 9, 10, 11, 12}}, 1, 2, 5);
    EXPECT_EQ(batch[0], m.greedy({{4, 5, 6}}, 1, 2, 5)[0]);
    EXPECT_EQ(batch[1], m.greedy({{7, 8, 9, 10, 11, 12}}, 1, 2, 5)[0]);
  }
}

TEST(Seq2Seq, GradcheckEndToEndInF64) {
  for (PositionEncoding kind : {PositionEncoding::sinusoidal, PositionEncoding::rope, PositionEncoding::t5,
                                PositionEncoding::learned}) {
    Generator g(7);
    Seq2SeqConfig c = tiny(kind);
    c.d_model = 8, c.n_heads = 2, c.enc_layers = 1, c.dec_layers = 1, c.src_vocab = 7, c.tgt_vocab = 6;
    Seq2SeqTransformer m(c, g);
    to_dtype_(m, DType::f64);
    std::vector<Tensor> params = m.parameters();
    Tensor src = ids({3, 4, 5, 0}, 1), tgt = ids({1, 2, 3}, 1);
    auto f = [&](const std::vector<Tensor>& xs) {
      std::vector<std::pair<size_t, Tensor>> saved;
      for (size_t i = 0; i < xs.size(); ++i)
        if (!xs[i].same(params[i])) saved.emplace_back(i, params[i].clone()), params[i].copy_(xs[i]);
      Tensor out = m.forward(src, tgt);
      for (auto& [i, t] : saved) params[i].copy_(t);
      return std::vector<Tensor>{out};
    };
    EXPECT_EQ(ops::gradcheck(f, params, 3, 6), "") << position_encoding_name(kind);
  }
}

TEST(Seq2Seq, BeamSearchFindsAtLeastAsLikelyATranslation) {
  Generator g(8);
  Seq2SeqTransformer m(tiny(PositionEncoding::rope), g);
  NoGrad ng;
  const std::vector<int64_t> source = {4, 5, 6, 7};
  // Length-normalised log-probability of a hypothesis (ending in eos = 2).
  auto score = [&](std::vector<int64_t> hyp) {
    hyp.push_back(2);
    std::vector<double> in = {1};
    for (size_t i = 0; i + 1 < hyp.size(); ++i) in.push_back(double(hyp[i]));
    Tensor lp = log_softmax(m.forward(ids({4, 5, 6, 7}, 1), ids(in, 1)).to(DType::f64), -1);
    double s = 0;
    for (size_t i = 0; i < hyp.size(); ++i) s += lp.select(0, 0).select(0, int64_t(i)).select(0, hyp[i]).item();
    return s / double(hyp.size());
  };
  std::vector<int64_t> greedy = m.greedy({source}, 1, 2, 20)[0], beam = m.beam_search(source, 4, 1, 2, 20);
  for (int64_t t : beam) EXPECT_TRUE(t >= 0 && t < 11);
  if (greedy.size() < 20 && beam.size() < 20) EXPECT_GE(score(beam) + 1e-9, score(greedy));
}

TEST(Seq2Seq, NamesCaptureAndConfig) {
  Generator g(9);
  Seq2SeqTransformer m(tiny(PositionEncoding::rope), g);
  std::set<std::string> names;
  for (auto& [n, p] : m.named_parameters()) names.insert(n);
  for (const char* n : {"encoder.embed.weight", "encoder.blocks.1.attn.in_proj.weight", "encoder.ln_f.weight",
                        "decoder.embed.weight", "decoder.blocks.0.cross_attn.in_proj.weight",
                        "decoder.blocks.1.self_attn.out_proj.bias", "decoder.blocks.0.ln_3.weight"})
    EXPECT_EQ(names.count(n), 1u) << n;
  EXPECT_EQ(names.count("lm_head.weight"), 0u) << "tied";
  NoGrad ng;
  AttentionCapture cap;
  m.forward(ids({4, 5, 6}, 1), ids({1, 3}, 1));
  std::vector<std::string> got;
  for (auto& r : cap.records()) got.push_back(r.name);
  EXPECT_EQ(got, (std::vector<std::string>{"encoder.blocks.0.self_attn", "encoder.blocks.1.self_attn",
                                           "decoder.blocks.0.self_attn", "decoder.blocks.0.cross_attn",
                                           "decoder.blocks.1.self_attn", "decoder.blocks.1.cross_attn"}));
  EXPECT_EQ(cap.weights("decoder.blocks.1.cross_attn").shape(), (Shape{1, 4, 2, 3}));

  Seq2SeqConfig c = tiny(PositionEncoding::t5);
  Seq2SeqConfig back = Seq2SeqConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  c.pos.kind = PositionEncoding::rope, c.pos.rope_scaling = RopeScaling::ntk, c.pos.rope_factor = 2.5;
  back = Seq2SeqConfig::from_json(c.to_json());  // the rope scaling fields travel with the checkpoint too
  EXPECT_EQ(back.pos.rope_scaling, RopeScaling::ntk);
  EXPECT_EQ(back.pos.rope_factor, 2.5);
  EXPECT_NE(qs::testing::error_of([] { Seq2SeqConfig::from_json({{"d_model", "8"}}); }).find("key 'd_model' has the wrong type"),
            std::string::npos);
  EXPECT_NE(qs::testing::error_of([] { Seq2SeqConfig::from_json({{"d_modle", 8}}); }).find("unknown key 'd_modle'"),
            std::string::npos);
  c.d_model = 10;
  EXPECT_NE(qs::testing::error_of([&] { c.validate(); }).find("not divisible"), std::string::npos);
  EXPECT_NE(qs::testing::error_of([&] { m.forward(ids({4}, 1)); }).find("needs source and target"), std::string::npos);
}

}  // namespace qs::nn
