// The BPE tokenizer against GPT-2's own encoder (openai/gpt-2 encoder.py with the Python
// `regex` module): the pre-tokenizer's words and the token ids, on fixed multilingual
// texts and random strings drawn from the scripts the hand-written classifier covers.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "oracle_util.h"
#include "qiusuo/text/tokenizer.h"

using namespace qs;
using namespace qs::text;
using nlohmann::json;

namespace {

std::vector<std::string> oracle_texts() {
  std::vector<std::string> texts = {
      "In the beginning God created the heaven and the earth.",
      "Ge1:1 In the beginning\nGe1:2 And the earth was without form, and void;\n",
      "Ἐν ἀρχῇ ἦν ὁ λόγος, καὶ ὁ λόγος ἦν πρὸς τὸν θεόν.",
      "В начале было Слово, и Слово было у Бога.",
      "太初有道，道与神同在，道就是神。 日本語のテキスト、カタカナ。한국어",
      "emoji: 🍕🍕 ❤️ 👩‍👩‍👧 ok — “quotes” and café naïve",
      "It's they'll we're I'd you've I'm don't 'tis  CAN'T",
      "tabs\tand\nnew lines\r\n  indented   spaces  \n\n\n  ",
      "numbers 1234 ٣٤ ５６ ½ ² Ⅻ 3.14159",
  };
  // Pieces from every class: letters of each covered script, numbers, whitespace (often,
  // to exercise the \s+(?!\S) rule), punctuation, symbols, emoji, combining marks.
  const std::vector<std::string> palette = {
      "a", "b", "Z", "é", "ß", "ñ", "ǅ", "Ω", "α", "ά", "ἀ", "ῇ", "ж", "Ё", "щ", "中", "文", "𠀀", "ひ", "カ", "ー",
      "한", "ש", "ع", "0", "7", "٣", "５", "½", "²", "Ⅻ", " ", " ", " ", " ", "\t", "\n", "\r", "\u00A0",
      "\u3000", "\u2003", ".", ",", "!", "?", "'", "\"", "-", "，", "。", "€", "©", "😀", "🍕", "❤", "\uFE0F",
      "\u200D", "\u0301", "「", "'s", "'ll", "'re", "'t", "'d", "'m", "'ve", "the", " the", "and"};
  Generator g(11);
  for (int i = 0; i < 400; ++i) {
    std::string s;
    for (uint64_t n = 1 + g.next_u64() % 24; n > 0; --n) s += palette[g.next_u64() % palette.size()];
    texts.push_back(s);
  }
  return texts;
}

void compare_with_gpt2(const Tokenizer& tok, const std::string& tok_path, const std::vector<std::string>& texts,
                       const std::string& tag) {
  std::string dir = qs::testing::temp_dir("text_oracle_" + tag);
  qs::testing::write_bytes(dir + "/texts.json", json(texts).dump());
  qs::testing::run_oracle("gpt2_bpe_oracle.py", tok_path + " " + dir + "/texts.json " + dir + "/out.json");
  json out = json::parse(qs::testing::read_bytes(dir + "/out.json"));
  ASSERT_EQ(out["ids"].size(), texts.size());
  int word_mismatches = 0, id_mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<std::string> ours;
    for (std::string_view w : pretokenize(texts[i])) ours.emplace_back(w);
    auto want_words = out["words"][i].get<std::vector<std::string>>();
    auto want_ids = out["ids"][i].get<std::vector<int32_t>>();
    if (ours != want_words && ++word_mismatches <= 3) ADD_FAILURE() << "words differ for " << json(texts[i]).dump();
    if (tok.encode(texts[i]) != want_ids && ++id_mismatches <= 3)
      ADD_FAILURE() << "ids differ for " << json(texts[i]).dump();
  }
  EXPECT_EQ(word_mismatches, 0);
  EXPECT_EQ(id_mismatches, 0);
}

bool have_python_regex() { return std::system("/usr/bin/python3 -c 'import regex' >/dev/null 2>&1") == 0; }

}  // namespace

TEST(Gpt2Oracle, TrainedTokenizer) {
  if (!have_python_regex()) GTEST_SKIP() << "python3-regex is not installed (scripts/install-deps.sh)";
  std::vector<std::string> texts = oracle_texts();
  std::string corpus;
  for (int rep = 0; rep < 5; ++rep)
    for (const auto& t : texts) corpus += t + "\n";
  BpeTokenizer tok = BpeTokenizer::train(corpus, 1500);
  std::string path = qs::testing::temp_dir("text_oracle_tok") + "/tokenizer.json";
  tok.save(path);
  compare_with_gpt2(tok, path, texts, "trained");
}

TEST(Gpt2Oracle, HandWrittenFixture) {
  if (!have_python_regex()) GTEST_SKIP() << "python3-regex is not installed (scripts/install-deps.sh)";
  std::string path = std::string(QS_SOURCE_DIR) + "/tests/text/data/gpt2_tiny_tokenizer.json";
  compare_with_gpt2(*load_tokenizer_file(path), path, oracle_texts(), "fixture");
}
