// The viewer's API over a translation model: encoder, decoder and cross-attention maps, each
// labelled with the right tokens, and the same refusals as for a language model.
#include <gtest/gtest.h>

#include "qiusuo/apps/viewer.h"
#include "test_util.h"

namespace qs::apps {
namespace {

LoadedMt tiny_mt() {
  LoadedMt mt;
  mt.src_vocab = WordVocab::build({{"the", "dog", "sees", "a", "cat"}});
  mt.tgt_vocab = WordVocab::build({{"saro", "el", "ka", "wihepi", "ro", "su"}});
  nn::Seq2SeqConfig c;
  c.src_vocab = mt.src_vocab.size(), c.tgt_vocab = mt.tgt_vocab.size();
  c.d_model = 16, c.n_heads = 2, c.enc_layers = 1, c.dec_layers = 1, c.max_len = 16;
  Generator gen(11);
  mt.model = std::make_unique<nn::Seq2SeqTransformer>(c, gen);
  mt.step = 7;
  return mt;
}

nlohmann::json ask(ViewerApi& api, const nlohmann::json& body) { return api.attention(body.dump()); }

TEST(ViewerMt, MapsAndLabels) {
  ViewerOptions o;
  o.max_tokens = 6;
  ViewerApi api(tiny_mt(), o);
  const auto& info = api.model_info();
  ASSERT_EQ(info["layers"], 3);  // encoder self, decoder causal, cross
  EXPECT_EQ(info["maps"][0]["kind"], "self");
  EXPECT_EQ(info["maps"][1]["kind"], "causal");
  EXPECT_EQ(info["maps"][2]["kind"], "cross");
  EXPECT_EQ(info["max_tokens"], 6);
  EXPECT_EQ(info["step"], 7);
  const std::vector<std::string> source = {"the", "dog", "sees", "a", "cat", "<eos>"};
  auto enc = ask(api, {{"text", "the dog sees a cat"}, {"layer", 0}, {"head", 1}});
  EXPECT_EQ(enc["tokens"], source);
  EXPECT_EQ(enc["key_tokens"], source);
  EXPECT_EQ(enc["rows"], 6);
  EXPECT_EQ(enc["text_tokens"], 5);
  auto cross = ask(api, {{"text", "the dog sees a cat"}, {"layer", 2}, {"head", 0}});
  EXPECT_EQ(cross["key_tokens"], source);
  EXPECT_EQ(cross["tokens"][0], "<bos>");
  EXPECT_EQ(cross["rows"], cross["tokens"].size());
  auto dec = ask(api, {{"text", "the dog sees a cat"}, {"layer", 1}, {"head", 0}});
  EXPECT_EQ(dec["key_tokens"], dec["tokens"]);
  auto thumbs = ask(api, {{"text", "the dog sees a cat"}});
  EXPECT_EQ(thumbs["maps"].size(), 3u);
  // Refusals: whitespace only, over the limit (unless cut), a head out of range.
  EXPECT_THROW(ask(api, {{"text", "   "}}), ApiError);
  EXPECT_THROW(ask(api, {{"text", "a a a a a a a"}}), ApiError);
  auto cut = ask(api, {{"text", "a a a a a a a"}, {"max_tokens", 3}, {"layer", 0}, {"head", 0}});
  EXPECT_EQ(cut["rows"], 4);  // 3 words + <eos>
  EXPECT_THROW(ask(api, {{"text", "the dog"}, {"layer", 0}, {"head", 2}}), ApiError);
}

}  // namespace
}  // namespace qs::apps
