// capture_attention and token_labels: what every attention view draws from.
#include <gtest/gtest.h>

#include "qiusuo/apps/attention_view.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/text/tokenizer.h"
#include "test_util.h"

namespace qs::apps {
namespace {

nn::LMConfig small_config(nn::PositionEncoding pe) {
  nn::LMConfig c;
  c.vocab_size = 256, c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.max_seq_len = 64;
  c.pos.kind = pe;
  return c;
}

TEST(AttentionView, LabelsAreReadable) {
  text::ByteTokenizer tok;
  const std::string s = "a b\n\xC3\xA9\x01";  // 'é' split over two byte tokens
  auto labels = token_labels(tok, tok.encode(s));
  ASSERT_EQ(labels.size(), 7u);
  EXPECT_EQ(labels[0], "a");
  EXPECT_EQ(labels[1], "\u2423");
  EXPECT_EQ(labels[3], "\u23CE");
  EXPECT_EQ(labels[4], "\\xC3");
  EXPECT_EQ(labels[5], "\\xA9");
  EXPECT_EQ(labels[6], "\\x01");
  // A whole character in one token stays itself.
  auto bpe = text::BpeTokenizer::train("\xC3\xA9\xC3\xA9\xC3\xA9 \xC3\xA9\xC3\xA9", 258, 1);
  auto ids = bpe.encode("\xC3\xA9");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(token_labels(bpe, ids)[0], "\xC3\xA9");
}

TEST(AttentionView, CapturesEveryLayerAsProbabilities) {
  for (auto pe : {nn::PositionEncoding::rope, nn::PositionEncoding::alibi, nn::PositionEncoding::learned}) {
    Generator gen(3);
    nn::TransformerLM lm(small_config(pe), {}, gen);
    text::ByteTokenizer tok;
    AttentionSnapshot s = capture_attention(lm, tok, "In the beginning");
    ASSERT_EQ(s.tokens.size(), 16u);
    ASSERT_EQ(s.maps.size(), 2u);
    EXPECT_TRUE(lm.is_training());  // the mode is restored
    for (size_t l = 0; l < 2; ++l) {
      const AttentionMap& m = s.maps[l];
      EXPECT_EQ(m.name, "blocks." + std::to_string(l) + ".attn");
      EXPECT_EQ(m.kind, "causal");
      EXPECT_EQ(m.layer, int64_t(l));
      ASSERT_EQ(m.weights.shape(), (Shape{4, 16, 16}));
      const std::vector<double> w = m.weights.to_vector();
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t i = 0; i < 16; ++i) {
          double sum = 0;
          for (int64_t j = 0; j < 16; ++j) {
            const double v = w[(h * 16 + i) * 16 + j];
            if (j > i) EXPECT_EQ(v, 0.0);
            sum += v;
          }
          EXPECT_NEAR(sum, 1.0, 1e-5);
        }
    }
  }
}

TEST(AttentionView, TruncatesAndRejectsBadText) {
  Generator gen(3);
  nn::TransformerLM lm(small_config(nn::PositionEncoding::learned), {}, gen);
  text::ByteTokenizer tok;
  EXPECT_EQ(capture_attention(lm, tok, std::string(100, 'x'), 10).tokens.size(), 10u);
  EXPECT_NE(testing::error_of([&] { capture_attention(lm, tok, ""); }).find("empty"), std::string::npos);
  EXPECT_NE(testing::error_of([&] { capture_attention(lm, tok, std::string(100, 'x')); }).find("at most 64"),
            std::string::npos);
}

}  // namespace
}  // namespace qs::apps
