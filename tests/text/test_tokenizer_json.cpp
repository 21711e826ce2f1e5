// tokenizer.json: the Hugging Face layout written and read back, a hand-written GPT-2
// fixture, and malformed files.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "qiusuo/text/tokenizer.h"

using namespace qs;
using namespace qs::text;
using nlohmann::json;

namespace {

const std::string kFixture = std::string(QS_SOURCE_DIR) + "/tests/text/data/gpt2_tiny_tokenizer.json";

std::string fixture_text() { return qs::testing::read_bytes(kFixture); }

// The error message of loading `j`, or "" when it loads.
std::string load_error(const json& j) {
  try {
    load_tokenizer(j.dump());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

// The fixture: GPT-2's 256 byte tokens (in GPT-2's order, "!" = 0, "Ġ" = 220) and its
// first 35 merges, so ids agree with GPT-2's (" the" = 262, " and" = 290). The expected
// ids below are derived by hand from the merge ranks.
TEST(TokenizerJson, HandWrittenGpt2Fixture) {
  auto tok = load_tokenizer_file(kFixture);
  ASSERT_EQ(tok->name(), "bpe");
  EXPECT_EQ(tok->vocab_size(), 291);
  using Ids = std::vector<int32_t>;
  EXPECT_EQ(tok->encode(" the and of in to"), (Ids{262, 290, 286, 287, 284}));
  EXPECT_EQ(tok->encode(" "), (Ids{220}));
  EXPECT_EQ(tok->encode("!"), (Ids{0}));
  EXPECT_EQ(tok->encode("\n"), (Ids{198}));  // "Ċ": byte 10 is the 11th non-printable byte
  // "Hello": no merge applies (GPT-2's first merges are lower case).
  // " world": "Ġ w" (rank 10) then "o r" (rank 17): Ġw or l d.
  EXPECT_EQ(tok->encode("Hello world"), (Ids{39, 68, 75, 75, 78, 266, 273, 75, 67}));
  // " beginning": "i n" (rank 3) twice, "Ġ b" (19), "in g" (22): Ġb e g in n ing.
  EXPECT_EQ(tok->encode("In the beginning"), (Ids{40, 77, 262, 275, 68, 70, 259, 77, 278}));
  // "the" without the space: "h e" (rank 2) only; "Ġt he" needs the space.
  EXPECT_EQ(tok->encode("the"), (Ids{83, 258}));
  EXPECT_EQ(tok->decode({262, 290}), " the and");
}

TEST(TokenizerJson, MergesAsPairs) {
  json j = json::parse(fixture_text());
  json pairs = json::array();
  for (const auto& m : j["model"]["merges"]) {
    std::string s = m.get<std::string>();
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  auto a = load_tokenizer(j.dump());
  auto b = load_tokenizer_file(kFixture);
  for (std::string s : {"In the beginning God created the heaven", "the end is near, is it?"})
    EXPECT_EQ(a->encode(s), b->encode(s));
}

TEST(TokenizerJson, SaveLoadRoundTrip) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "Ἐν ἀρχῇ ἦν ὁ λόγος; 太初有道. In the beginning was the Word 🍕.\n";
  BpeTokenizer tok = BpeTokenizer::train(text, 400);
  std::string path = qs::testing::temp_dir("tokenizer_json") + "/tokenizer.json";
  tok.save(path);
  auto back = load_tokenizer_file(path);
  ASSERT_EQ(back->name(), "bpe");
  EXPECT_EQ(back->vocab_size(), tok.vocab_size());
  EXPECT_EQ(back->to_json(), tok.to_json());
  EXPECT_EQ(back->encode(text), tok.encode(text));
  EXPECT_EQ(back->decode(tok.encode(text)), text);

  json j = json::parse(tok.to_json());  // the Hugging Face fields, in their places
  EXPECT_EQ(j["version"], "1.0");
  EXPECT_TRUE(j["added_tokens"].is_array() && j["added_tokens"].empty());
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["vocab"]["Ġ"], 32);  // our base ids are the byte values
  EXPECT_EQ(j["model"]["merges"].size(), tok.merges().size());
  EXPECT_TRUE(j["model"]["merges"][0].is_string());

  ByteTokenizer bytes;
  bytes.save(path);
  auto b2 = load_tokenizer_file(path);
  EXPECT_EQ(b2->name(), "byte");
  EXPECT_EQ(b2->encode("\xff\x00"), bytes.encode("\xff\x00"));
}

TEST(TokenizerJson, BadFilesGiveClearErrors) {
  const json good = json::parse(fixture_text());
  EXPECT_EQ(load_error(good), "");
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = good;
    edit(j);
    return load_error(j);
  };
  EXPECT_TRUE(has(with([](json& j) { j["model"]["type"] = "WordPiece"; }), "expected \"BPE\" or \"Byte\""));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["merges"].push_back("Ġ zz"); }), "\"zz\" is not in model.vocab"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["merges"].push_back("Ġthe"); }), "merges[35]"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["merges"].push_back(json::array({"a"})); }), "merges[35]"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["merges"].push_back("a b"); }), "\"ab\" is not in model.vocab"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["vocab"]["Ġthe"] = 999; }), "found 999"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["vocab"]["Ġthe"] = 0; }), "id 0 is given to both"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["vocab"]["Ġthe"] = "x"; }), "expected an integer id"));
  EXPECT_TRUE(has(with([](json& j) {
    j["model"]["vocab"].erase("Ġthe");
    j["model"]["vocab"]["a b"] = 262;  // a literal space is not in the byte-level alphabet
  }), "U+0020"));
  EXPECT_TRUE(has(with([](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }), "pre_tokenizer"));
  EXPECT_TRUE(has(with([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }), "decoder"));
  EXPECT_TRUE(has(with([](json& j) { j["normalizer"] = {{"type", "NFC"}}; }), "normalizer"));
  EXPECT_TRUE(has(with([](json& j) { j["added_tokens"].push_back({{"id", 0}}); }), "added_tokens"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["dropout"] = 0.1; }), "dropout"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["unk_token"] = "<unk>"; }), "unk_token"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["byte_fallback"] = true; }), "byte_fallback"));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["end_of_word_suffix"] = "</w>"; }), "end_of_word_suffix"));
  EXPECT_TRUE(has(with([](json& j) { j["version"] = "2.0"; }), "version"));
  EXPECT_TRUE(has(with([](json& j) { j["pre_tokeniser"] = nullptr; }), "unknown field \"pre_tokeniser\""));
  EXPECT_TRUE(has(with([](json& j) { j["model"]["merge"] = json::array(); }), "model: unknown field \"merge\""));
  EXPECT_TRUE(has(with([](json& j) { j["pre_tokenizer"]["prefix_space"] = true; }), "\"prefix_space\""));
  EXPECT_TRUE(has(with([](json& j) { j.erase("model"); }), "model"));
  EXPECT_TRUE(has(with([](json& j) { j["model"] = {{"type", "Byte"}, {"vocab_size", 300}}; }), "256"));
  EXPECT_TRUE(has(with([](json& j) { j = json::array(); }), "expected an object"));
  EXPECT_EQ(with([](json& j) { j["model"]["merges"] = json::array(); }), "");  // no merges: bytes only
  EXPECT_EQ(with([](json& j) { j["post_processor"] = {{"type", "ByteLevel"}, {"trim_offsets", false}}; }), "");

  // Nesting in any field (even one the loader ignores) is bounded while parsing.
  std::string deep = "{\"ignored\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_NE(qs::testing::error_of([&] { load_tokenizer(deep); }).find("nested deeper than 128"), std::string::npos);
  EXPECT_THROW(load_tokenizer("{\"model\": "), Error);
  try {
    load_tokenizer("{\"model\": ");
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "not valid JSON")) << e.what();
  }
  std::string dir = qs::testing::temp_dir("tokenizer_json_bad");
  qs::testing::write_bytes(dir + "/bad.json", "[1, 2]");
  try {
    load_tokenizer_file(dir + "/bad.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), dir + "/bad.json")) << e.what();
  }
  EXPECT_THROW(load_tokenizer_file(dir + "/missing.json"), IOError);
}

TEST(TokenizerJson, AddedTokens) {
  using Ids = std::vector<int32_t>;
  const json fixture = json::parse(fixture_text());
  json eot = {{"id", 291}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false},
              {"rstrip", false}, {"normalized", true}, {"special", true}};
  json after = fixture;  // an id after the vocabulary
  after["added_tokens"].push_back(eot);
  json inside = after;  // as GPT-2's file has it: in the vocabulary too
  inside["model"]["vocab"]["<|endoftext|>"] = 291;
  for (const json& j : {after, inside}) {
    auto tok = load_tokenizer(j.dump());
    EXPECT_EQ(tok->vocab_size(), 292);
    EXPECT_EQ(tok->encode("a<|endoftext|> the<|endoftext|>"), (Ids{64, 291, 262, 291}));
    EXPECT_EQ(tok->decode({64, 291, 262}), "a<|endoftext|> the");
    auto back = load_tokenizer(tok->to_json());
    EXPECT_EQ(back->encode("x<|endoftext|>y"), tok->encode("x<|endoftext|>y"));
    EXPECT_EQ(json::parse(back->to_json())["added_tokens"][0]["content"], "<|endoftext|>");
  }
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = after;
    edit(j);
    return load_error(j);
  };
  EXPECT_TRUE(has(with([](json& j) { j["added_tokens"][0]["id"] = 293; }), "expected id 291")) ;
  EXPECT_TRUE(has(with([](json& j) { j["added_tokens"][0]["id"] = 5; }), "expected the same bytes"));
  EXPECT_TRUE(has(with([](json& j) { j["added_tokens"][0]["lstrip"] = true; }), "lstrip"));
  EXPECT_TRUE(has(with([](json& j) { j["added_tokens"][0]["colour"] = 1; }), "unknown field \"colour\""));
  EXPECT_TRUE(has(with([](json& j) { j["added_tokens"].push_back(j["added_tokens"][0]); }), "appears twice"));
  EXPECT_TRUE(has(with([](json& j) { j["added_tokens"][0].erase("content"); }), "added_tokens[0]"));
}
