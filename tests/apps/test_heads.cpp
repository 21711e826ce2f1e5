// Head metrics on hand-built attention where the answer is known, and the head mask.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include "qiusuo/apps/heads.h"
#include "qiusuo/apps/mt.h"
#include "qiusuo/nn/head_mask.h"
#include "qiusuo/ops.h"
#include "test_util.h"

namespace qs::apps {
namespace {

using Pick = std::function<int64_t(int64_t head, int64_t query)>;

// [H, tq, tk] weights: 0.7 on pick(h, q) (clamped to the visible keys), the rest spread evenly.
AttentionMap make_map(const std::string& name, const std::string& kind, int64_t layer, int64_t heads, int64_t tq,
                      int64_t tk, const Pick& pick) {
  std::vector<double> w(size_t(heads * tq * tk), 0.0);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t q = 0; q < tq; ++q) {
      const int64_t visible = kind == "causal" ? q + 1 : tk;
      const int64_t k = std::clamp<int64_t>(pick(h, q), 0, visible - 1);
      for (int64_t j = 0; j < visible; ++j)
        w[size_t((h * tq + q) * tk + j)] = visible == 1 ? 1.0 : (j == k ? 0.7 : 0.3 / double(visible - 1));
    }
  return {name, kind, layer, from_vector(w, {heads, tq, tk})};
}

// Encoder side of a sentence: words + <eos>, with a parse.
HeadSentence encoder_sentence(std::vector<int32_t> head, std::vector<std::string> rel, const Pick& pick,
                              int64_t heads = 2) {
  HeadSentence s;
  const int64_t n = int64_t(head.size()) + 1;
  for (int64_t i = 0; i < n; ++i) s.snap.source_ids.push_back(int32_t(i)), s.snap.source_tokens.push_back("w");
  s.snap.ids = {0}, s.snap.tokens = {"<bos>"};
  s.source.head = std::move(head), s.source.rel = std::move(rel), s.source.eos = n - 1;
  s.snap.maps.push_back(make_map("encoder.blocks.0.self_attn", "self", 0, heads, n, n, pick));
  return s;
}

// Sentences whose nsubj offsets differ (so a fixed offset cannot explain the relation).
std::vector<HeadSentence> parsed_corpus(const Pick& pick) {
  std::vector<HeadSentence> out;
  for (int rep = 0; rep < 5; ++rep) {
    // the dog chases a cat quietly
    out.push_back(encoder_sentence({1, 2, -1, 4, 2, 2}, {"det", "nsubj", "root", "det", "dobj", "advmod"}, pick));
    // the big old dog sleeps
    out.push_back(encoder_sentence({3, 3, 3, 4, -1}, {"det", "amod", "amod", "nsubj", "root"}, pick));
    // he sleeps
    out.push_back(encoder_sentence({1, -1}, {"nsubj", "root"}, pick));
    // the dog that chases cats sleeps
    out.push_back(encoder_sentence({1, 5, 3, 1, 3, -1}, {"det", "nsubj", "nsubj", "relcl", "dobj", "root"}, pick));
  }
  return out;
}

const RelationScore& relation(const HeadMetrics& m, const std::string& rel, const std::string& dir) {
  for (const RelationScore& r : m.relations)
    if (r.relation == rel && r.direction == dir) return r;
  throw std::runtime_error("no relation " + rel + " " + dir);
}

double max_diff(const Tensor& a, const Tensor& b) {
  auto x = a.contiguous().to_vector_as<double>(), y = b.contiguous().to_vector_as<double>();
  double d = x.size() == y.size() ? 0.0 : 1e30;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

bool has_role(const HeadMetrics& m, const std::string& role) {
  return std::find(m.roles.begin(), m.roles.end(), role) != m.roles.end();
}

TEST(Heads, OneLeftIsPositionalMinusOne) {
  // head 0: one left (row 0 looks at itself); head 1: uniform-ish on token 0 only for even rows.
  auto sents = parsed_corpus([](int64_t h, int64_t q) { return h == 0 ? q - 1 : (q % 2 ? q : 0); });
  auto heads = analyse_heads(sents);
  ASSERT_EQ(heads.size(), 2u);
  // Scored rows: every word row (eos excluded). Row 0 of each sentence has no previous token, so
  // it leaves the -1 share's denominator: 75 of the 75 rows where -1 exists, 75 of all 95 rows.
  EXPECT_EQ(heads[0].offset, -1);
  EXPECT_DOUBLE_EQ(heads[0].offset_share, 1.0);
  EXPECT_EQ(heads[0].offset_rows, 75);
  EXPECT_NEAR(heads[0].offset_share_all, 1.0 - 20.0 / 95.0, 1e-12);  // 20 sentences, 95 word rows
  EXPECT_TRUE(heads[0].positional);
  HeadAnalysisOptions strict;
  strict.positional_share = 1.0 + 1e-9;
  EXPECT_FALSE(analyse_heads(sents, strict)[0].positional);
  EXPECT_TRUE(has_role(heads[0], "positional -1"));
  EXPECT_TRUE(has_role(heads[0], "previous token"));
  EXPECT_FALSE(heads[1].positional);
  EXPECT_NEAR(heads[0].confidence, 0.7, 1e-6);
  EXPECT_EQ(heads[0].name, "encoder.blocks.0.self_attn");
  EXPECT_EQ(heads[1].head, 1);
}

TEST(Heads, AnOffsetMustExistInHalfTheRowsToBeTested) {
  // Head 0 looks four to the right where that key exists, else at itself. Sentences have 7, 6, 3
  // and 7 tokens (eos included): +4 exists in 3 + 2 + 0 + 3 of the 19 word rows per repetition.
  auto sents = parsed_corpus([](int64_t h, int64_t q) { return h == 0 ? q + 4 : q; });
  for (HeadSentence& s : sents) {
    const int64_t n = int64_t(s.snap.source_ids.size());
    s.snap.maps[0] = make_map("encoder.blocks.0.self_attn", "self", 0, 2, n, n,
                              [n](int64_t h, int64_t q) { return h == 0 && q + 4 < n ? q + 4 : q; });
  }
  auto heads = analyse_heads(sents);
  // +4 exists in 40 of 95 rows (< half): not a candidate, so the head's offset is 0 (55 of 95).
  EXPECT_EQ(heads[0].offset, 0);
  EXPECT_NEAR(heads[0].offset_share, 55.0 / 95.0, 1e-12);
  EXPECT_FALSE(heads[0].positional);
  HeadAnalysisOptions loose;
  loose.min_offset_coverage = 0.4;
  heads = analyse_heads(sents, loose);
  EXPECT_EQ(heads[0].offset, 4);
  EXPECT_DOUBLE_EQ(heads[0].offset_share, 1.0);
  EXPECT_EQ(heads[0].offset_rows, 40);
  EXPECT_TRUE(heads[0].positional);
  EXPECT_TRUE(heads[1].positional);  // the self head: offset 0 exists in every row
  EXPECT_EQ(heads[1].offset, 0);
}

TEST(Heads, PointingAtTheGoldHeadIsSyntactic) {
  // Head 0 looks at each word's gold head (the root at itself); head 1 one to the right.
  std::vector<HeadSentence> sents;
  auto probe = parsed_corpus([](int64_t, int64_t) { return 0; });
  for (HeadSentence s : probe) {
    const std::vector<int32_t> gold = s.source.head;
    s.snap.maps[0] = make_map("encoder.blocks.0.self_attn", "self", 0, 2, int64_t(gold.size()) + 1,
                              int64_t(gold.size()) + 1, [&](int64_t h, int64_t q) {
                                if (h == 1) return q + 1;
                                return q < int64_t(gold.size()) && gold[size_t(q)] >= 0 ? int64_t(gold[size_t(q)]) : q;
                              });
    sents.push_back(std::move(s));
  }
  HeadAnalysisOptions opt;
  opt.min_instances = 5;
  auto heads = analyse_heads(sents, opt);
  const RelationScore& ns = relation(heads[0], "nsubj", "dep->head");
  EXPECT_EQ(ns.instances, 25);  // 5 x (1 + 1 + 1 + 2): the relative clause's "that" counts too
  EXPECT_DOUBLE_EQ(ns.accuracy, 1.0);
  // Offsets of nsubj dep->head: +1, +1, +1, +4 (dog -> sleeps), +1 ("that" -> chases): 20 of 25 at +1.
  EXPECT_EQ(ns.baseline_offset, 1);
  EXPECT_DOUBLE_EQ(ns.baseline, 20.0 / 25.0);
  EXPECT_TRUE(ns.syntactic);
  EXPECT_TRUE(has_role(heads[0], "syntactic nsubj dep->head"));
  // The one-right head equals the baseline: not syntactic even though its accuracy is 0.8.
  const RelationScore& ns1 = relation(heads[1], "nsubj", "dep->head");
  EXPECT_DOUBLE_EQ(ns1.accuracy, 20.0 / 25.0);
  EXPECT_FALSE(ns1.syntactic);
  // head -> dep of amod: "dog" has two amod dependents; either counts, one instance per head word.
  const RelationScore& am = relation(heads[0], "amod", "head->dep");
  EXPECT_EQ(am.instances, 5);
  EXPECT_DOUBLE_EQ(am.accuracy, 0.0);  // head 0 looks from "dog" to "sleeps"
  EXPECT_DOUBLE_EQ(am.baseline, 1.0);  // offsets -1 and -2 both hit
  // Too few instances: no verdict.
  opt.min_instances = 1000;
  EXPECT_FALSE(relation(analyse_heads(sents, opt)[0], "nsubj", "dep->head").syntactic);
}

TEST(Heads, RareWordHead) {
  auto sents = parsed_corpus([](int64_t h, int64_t q) { return h == 0 ? 2 : q; });
  for (HeadSentence& s : sents) {
    const int64_t n = int64_t(s.snap.source_tokens.size());
    s.source.freq.assign(size_t(n), 100.0);
    s.source.freq[2 % size_t(n - 1)] = 3.0;  // "he sleeps": token 0 is rarest
    s.source.freq[size_t(n - 1)] = std::numeric_limits<double>::infinity();
  }
  auto heads = analyse_heads(sents);
  // Head 0 always picks token 2: right except in "he sleeps", where token 2 is <eos> and the rarest is
  // token 0 (its 2 word rows miss, in each of 5 repetitions): 85 of 95 rows.
  EXPECT_NEAR(heads[0].rare, 85.0 / 95.0, 1e-12);
  EXPECT_NEAR(heads[0].eos, 10.0 / 95.0, 1e-12);  // those rows are on <eos>
  EXPECT_NEAR(heads[1].eos, 0.0, 1e-12);
  EXPECT_TRUE(has_role(heads[0], "rare words"));
  // Head 1 looks at itself: hits only on the rare token's own row.
  EXPECT_NEAR(heads[1].rare, 20.0 / 95.0, 1e-12);
  EXPECT_FALSE(has_role(heads[1], "rare words"));
  EXPECT_GT(heads[1].rare_chance, 0.1);
}

// A decoder side: <bos> + target words; cross attention onto source words + <eos>.
TEST(Heads, CrossAlignmentUsesTheProducingRow) {
  HeadSentence s;
  s.snap.source_tokens = {"a", "b", "c", "<eos>"}, s.snap.source_ids = {4, 5, 6, 3};
  s.snap.tokens = {"<bos>", "x", "y", "k", "z"}, s.snap.ids = {2, 7, 8, 9, 10};
  s.align = {2, 0, -1, 1};  // x <- c, y <- a, k (particle), z <- b
  s.source.eos = 3, s.target.first = 1;
  auto produce = [&](int64_t, int64_t q) { return q < 4 && s.align[size_t(q)] >= 0 ? s.align[size_t(q)] : 3; };
  auto read = [&](int64_t, int64_t q) { return q >= 1 && s.align[size_t(q - 1)] >= 0 ? s.align[size_t(q - 1)] : 3; };
  s.snap.maps.push_back(make_map("decoder.blocks.0.cross_attn", "cross", 0, 1, 5, 4, produce));
  s.snap.maps.push_back(make_map("decoder.blocks.1.cross_attn", "cross", 1, 1, 5, 4, read));
  s.snap.maps.push_back(make_map("decoder.blocks.1.self_attn", "causal", 1, 1, 5, 5,
                                 [](int64_t, int64_t q) { return q - 1; }));
  auto heads = analyse_heads({s});
  ASSERT_EQ(heads.size(), 3u);
  EXPECT_DOUBLE_EQ(heads[0].alignment, 1.0);
  EXPECT_DOUBLE_EQ(heads[0].alignment_reading, 0.0);
  EXPECT_TRUE(has_role(heads[0], "alignment"));
  EXPECT_DOUBLE_EQ(heads[1].alignment, 0.0);
  EXPECT_DOUBLE_EQ(heads[1].alignment_reading, 1.0);
  EXPECT_FALSE(heads[0].positional);  // cross maps have no positional test
  // Causal: row 0 (one key) is not scored; the other 4 rows look one left.
  EXPECT_EQ(heads[2].rows, 4);
  EXPECT_EQ(heads[2].offset, -1);
  EXPECT_TRUE(heads[2].positional);
  EXPECT_TRUE(std::isnan(heads[2].alignment));
  const auto j = heads_to_json(heads);
  EXPECT_EQ(j["heads"][0]["roles"][0], "alignment");
  EXPECT_TRUE(j["heads"][2]["alignment"].is_null());
}

TEST(Heads, LanguageModelSnapshot) {
  HeadSentence s;
  s.snap.ids = {1, 2, 3, 4, 5, 6};
  s.snap.tokens = {"a", "b", "c", "d", "e", "f"};
  s.target.freq = {50, 40, 1, 30, 20, 10};
  s.snap.maps.push_back(make_map("blocks.0.attn", "causal", 0, 3, 6, 6, [](int64_t h, int64_t q) {
    return h == 0 ? q - 1 : h == 1 ? (q >= 2 ? 2 : q) : 0;
  }));
  auto heads = analyse_heads({s});
  EXPECT_TRUE(has_role(heads[0], "previous token"));
  EXPECT_TRUE(heads[0].relations.empty());  // no parses
  EXPECT_DOUBLE_EQ(heads[1].rare, 1.0);     // rows 1..5: the rarest visible token each time
  EXPECT_TRUE(has_role(heads[1], "rare words"));
  EXPECT_DOUBLE_EQ(heads[0].first, 1.0 / 5.0);  // only row 1's left neighbour is token 0
  EXPECT_DOUBLE_EQ(heads[1].first, 0.0);
  EXPECT_DOUBLE_EQ(heads[2].first, 1.0);
  EXPECT_TRUE(has_role(heads[2], "first-token sink"));
  EXPECT_FALSE(has_role(heads[0], "first-token sink"));
}

TEST(Heads, Errors) {
  EXPECT_THROW(analyse_heads({}), Error);
  auto sents = parsed_corpus([](int64_t, int64_t q) { return q; });
  sents[1].snap.maps[0].name = "encoder.blocks.1.self_attn";
  EXPECT_THROW(analyse_heads(sents), Error);
  sents = parsed_corpus([](int64_t, int64_t q) { return q; });
  sents[0].source.head.push_back(0), sents[0].source.head.push_back(0);
  sents[0].source.rel.push_back("det"), sents[0].source.rel.push_back("det");
  EXPECT_THROW(analyse_heads(sents), Error);  // more words than tokens
  sents = parsed_corpus([](int64_t, int64_t q) { return q; });
  sents[0].source.freq = {1.0};
  EXPECT_THROW(analyse_heads(sents), Error);
}

// The layer's output from its definition, with head h's output scaled by mask[h] before the
// out projection: out = concat_h(mask[h] A_h V_h) W_o^T + b_o, V = x W_v^T + b_v.
std::vector<double> by_definition(nn::MultiheadAttention& attn, const Tensor& x, const Tensor& weights,
                                  const std::vector<double>& mask) {
  std::map<std::string, std::vector<double>> p;
  for (auto& [name, t] : attn.named_parameters()) p[name] = t.contiguous().to_vector_as<double>();
  const auto xs = x.contiguous().to_vector_as<double>(), a = weights.contiguous().to_vector_as<double>();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = attn.n_heads(), dh = C / H;
  std::vector<double> v(size_t(B * T * C)), z(size_t(B * T * C), 0.0), out(size_t(B * T * C));
  for (int64_t i = 0; i < B * T; ++i)
    for (int64_t c = 0; c < C; ++c) {
      double s = p["in_proj.bias"][size_t(2 * C + c)];
      for (int64_t k = 0; k < C; ++k) s += xs[size_t(i * C + k)] * p["in_proj.weight"][size_t((2 * C + c) * C + k)];
      v[size_t(i * C + c)] = s;
    }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t s = 0; s < T; ++s)
          for (int64_t d = 0; d < dh; ++d)
            z[size_t((b * T + t) * C + h * dh + d)] +=
                mask[size_t(h)] * a[size_t(((b * H + h) * T + t) * T + s)] * v[size_t((b * T + s) * C + h * dh + d)];
  for (int64_t i = 0; i < B * T; ++i)
    for (int64_t c = 0; c < C; ++c) {
      double s = p["out_proj.bias"][size_t(c)];
      for (int64_t k = 0; k < C; ++k) s += z[size_t(i * C + k)] * p["out_proj.weight"][size_t(c * C + k)];
      out[size_t(i * C + c)] = s;
    }
  return out;
}

double max_diff(const std::vector<double>& x, const Tensor& b) { return max_diff(from_vector(x, b.shape()), b); }

TEST(Heads, MaskingAHeadEqualsZeroingItsSlice) {
  Generator gen(5);
  nn::MultiheadAttention attn(16, 4, 0, {}, true, gen);
  Tensor x = randn({2, 5, 16}, DType::f32, &gen);
  nn::AttentionArgs args;
  args.causal = true;
  args.need_weights = true;
  nn::AttentionResult full = attn.attend(x, args);
  EXPECT_LT(max_diff(by_definition(attn, x, full.weights, {1, 1, 1, 1}), full.out), 1e-4);  // the formula is right
  Tensor masked, half;
  {
    nn::HeadMask m(attn, {1, 1, 0, 1});
    masked = attn.attend(x, args).out;
  }
  {
    nn::HeadMask m(attn, {1, 0.5, 1, 1});
    half = attn.attend(x, args).out;
  }
  EXPECT_EQ(max_diff(attn.attend(x, args).out, full.out), 0.0);  // restored bit for bit
  // The weights themselves do not depend on the mask, so the unmasked run's weights serve.
  EXPECT_LT(max_diff(by_definition(attn, x, full.weights, {1, 1, 0, 1}), masked), 1e-4);
  EXPECT_LT(max_diff(by_definition(attn, x, full.weights, {1, 0.5, 1, 1}), half), 1e-4);
  EXPECT_GT(max_diff(masked, full.out), 1e-3);
  EXPECT_THROW(nn::HeadMask(attn, {1, 1}), Error);
}

}  // namespace
}  // namespace qs::apps

namespace qs::apps {
namespace {

// A tiny translation model trained for a few steps: the whole pipeline runs and writes its files.
TEST(HeadsCheckpoint, TranslationEndToEnd) {
  const std::string dir = qs::testing::temp_dir("heads_mt");
  TrainMtOptions o;
  text::SyntheticMtOptions& s = o.data.synthetic;
  s.n_train = 300, s.n_valid = 10, s.n_test = 20;
  s.n_nouns = 40, s.n_verbs_tr = 15, s.n_verbs_intr = 10, s.n_adjectives = 20, s.n_adverbs = 8;
  o.model.d_model = 16, o.model.n_heads = 2, o.model.enc_layers = 1, o.model.dec_layers = 2, o.model.max_len = 64;
  o.batch = 8, o.steps = 6, o.lr = 3e-3, o.eval_every = 0, o.eval_sentences = 4, o.test_sentences = 4;
  o.quiet = true, o.out_dir = dir + "/run";
  train_mt(o);
  HeadsOptions h;
  h.sentences = 12, h.importance_sentences = 5, h.quiet = true;
  const std::string ckpt = dir + "/run/last.safetensors";
  HeadsReport r = analyse_checkpoint_heads(ckpt, h);
  ASSERT_EQ(r.heads.size(), 10u);  // encoder 1 x 2, decoder 2 x (self 2 + cross 2)
  EXPECT_EQ(r.model_kind, "mt");
  EXPECT_EQ(r.sentences, 12);
  EXPECT_TRUE(r.has_importance);
  for (const HeadMetrics& m : r.heads) {
    EXPECT_TRUE(std::isfinite(m.delta_loss)) << m.name;
    EXPECT_EQ(std::isfinite(m.alignment), m.kind == "cross") << m.name;
    EXPECT_EQ(m.relations.empty(), m.kind == "cross") << m.name;
  }
  // The masks are gone afterwards: a second analysis gives the same numbers.
  HeadsReport again = analyse_checkpoint_heads(ckpt, h);
  for (size_t i = 0; i < r.heads.size(); ++i) {
    EXPECT_EQ(r.heads[i].confidence, again.heads[i].confidence);
    EXPECT_EQ(r.heads[i].delta_loss, again.heads[i].delta_loss);
  }
  const auto files = write_heads_report(r, dir + "/out", "qiusuo heads test");
  ASSERT_EQ(files.size(), 3u);
  const auto j = nlohmann::json::parse(qs::testing::read_bytes(dir + "/out/heads.json"));
  EXPECT_EQ(j["heads"].size(), 10u);
  EXPECT_EQ(j["heads"][0]["name"], "encoder.blocks.0.self_attn");
  EXPECT_TRUE(j["heads"][0]["roles"].is_array());
  const std::string md = qs::testing::read_bytes(dir + "/out/heads.md");
  EXPECT_NE(md.find("qiusuo heads test"), std::string::npos);
  EXPECT_NE(md.find("## Cross-attention"), std::string::npos);
  EXPECT_NE(md.find("heads 0-2 capture syntax"), std::string::npos);
  EXPECT_EQ(qs::testing::read_bytes(dir + "/out/heads.svg").rfind("<svg", 0), 0u);
  h.sentences = 0;
  EXPECT_THROW(analyse_checkpoint_heads(ckpt, h), Error);
}

}  // namespace
}  // namespace qs::apps
