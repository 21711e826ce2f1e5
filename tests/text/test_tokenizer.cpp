// Byte and BPE tokenizers: the pre-tokenizer, lossless round trips, hand-derived merges.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <map>

#include "qiusuo/tensor.h"
#include "qiusuo/text/tokenizer.h"

using namespace qs;
using namespace qs::text;

namespace {

using Words = std::vector<std::string>;

Words words(std::string_view s) {
  Words out;
  for (std::string_view w : pretokenize(s)) out.emplace_back(w);
  return out;
}

std::string random_bytes(Generator& g, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = char(g.next_u64() & 0xFF);
  return s;
}

const std::vector<std::string>& multilingual() {
  static const std::vector<std::string> texts = {
      "In the beginning God created the heaven and the earth.",
      "Ἐν ἀρχῇ ἦν ὁ λόγος, καὶ ὁ λόγος ἦν πρὸς τὸν θεόν.",
      "Γειά σου κόσμε! Καλημέρα.",
      "В начале было Слово, и Слово было у Бога.",
      "太初有道，道与神同在，道就是神。",
      "日本語のテキストとカタカナ。",
      "emoji: 🍕🍕 ❤️ 👩‍👩‍👧 ok",
      "tabs\tand\nnew lines\r\n  indented   spaces  ",
      "numbers 1234 ٣٤ ５６ ½ and café naïve Zürich",
  };
  return texts;
}

std::string training_text() {
  std::string t;
  for (int rep = 0; rep < 20; ++rep)
    for (const auto& s : multilingual()) t += s + "\n";
  return t;
}

}  // namespace

TEST(Pretokenize, Gpt2Pattern) {
  EXPECT_EQ(words("Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(words("I'm here's they're we've I'll he'd 'T"),
            (Words{"I", "'m", " here", "'s", " they", "'re", " we", "'ve", " I", "'ll", " he", "'d", " '", "T"}));
  EXPECT_EQ(words("a  b"), (Words{"a", " ", " b"}));
  EXPECT_EQ(words("a \n\nb"), (Words{"a", " \n", "\n", "b"}));
  EXPECT_EQ(words("x  "), (Words{"x", "  "}));
  EXPECT_EQ(words(" x"), (Words{" x"}));
  EXPECT_EQ(words("abc123 456def"), (Words{"abc", "123", " 456", "def"}));
  EXPECT_EQ(words("hi!? ...ok"), (Words{"hi", "!?", " ...", "ok"}));
  EXPECT_EQ(words("Ge1:1 In"), (Words{"Ge", "1", ":", "1", " In"}));
  EXPECT_EQ(words(""), Words{});
}

TEST(Pretokenize, Scripts) {
  EXPECT_EQ(words("Γειά σου κόσμε"), (Words{"Γειά", " σου", " κόσμε"}));
  EXPECT_EQ(words("Привет, мир"), (Words{"Привет", ",", " мир"}));
  EXPECT_EQ(words("你好，世界"), (Words{"你好", "，", "世界"}));
  EXPECT_EQ(words("ひらがなカタカナ漢字"), (Words{"ひらがなカタカナ漢字"}));
  EXPECT_EQ(words("x ５６½"), (Words{"x", " ５６½"}));
  EXPECT_EQ(words("I ❤️ 🍕"), (Words{"I", " ❤️", " 🍕"}));
  EXPECT_EQ(words("a\u00A0b"), (Words{"a", "\u00A0", "b"}));  // no-break space is \s
}

TEST(Pretokenize, CoversAnyBytes) {
  Generator g(3);
  for (int i = 0; i < 200; ++i) {
    std::string s = random_bytes(g, 1 + g.next_u64() % 64);
    std::string joined;
    for (std::string_view w : pretokenize(s)) {
      EXPECT_FALSE(w.empty());
      joined += w;
    }
    EXPECT_EQ(joined, s);
  }
}

TEST(BytesToUnicode, Gpt2Map) {
  const auto& m = bytes_to_unicode();
  EXPECT_EQ(m['A'], U'A');
  EXPECT_EQ(m[' '], U'\u0120');  // "Ġ"
  EXPECT_EQ(m['\n'], U'\u010A');  // "Ċ"
  EXPECT_EQ(m[0], U'\u0100');
  EXPECT_EQ(m[0xAD], U'\u0143');  // the last non-printable byte
  std::vector<char32_t> sorted(m.begin(), m.end());
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
}

TEST(ByteTokenizer, RoundTripAndIds) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 256);
  EXPECT_EQ(tok.encode("A\xff"), (std::vector<int32_t>{65, 255}));
  Generator g(1);
  for (int i = 0; i < 50; ++i) {
    std::string s = random_bytes(g, g.next_u64() % 100);
    EXPECT_EQ(tok.decode(tok.encode(s)), s);
  }
  EXPECT_EQ(tok.decode({0xC3}), "\xC3");  // half of "é": returned as it is
  EXPECT_THROW(tok.decode({256}), Error);
  EXPECT_THROW(tok.decode({-1}), Error);
}

TEST(BpeTokenizer, RoundTripRandomBytesAndMultilingual) {
  BpeTokenizer tok = BpeTokenizer::train(training_text(), 1200);
  EXPECT_GT(tok.vocab_size(), 400);
  Generator g(7);
  for (int i = 0; i < 200; ++i) {
    std::string s = random_bytes(g, g.next_u64() % 80);
    EXPECT_EQ(tok.decode(tok.encode(s)), s);
  }
  for (const auto& s : multilingual()) {
    std::vector<int32_t> ids = tok.encode(s);
    EXPECT_EQ(tok.decode(ids), s);
    EXPECT_LT(ids.size(), s.size() / 2) << s;  // seen 20 times in training: merged well
    for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < tok.vocab_size());
  }
  // Unseen text mixing scripts and fresh emoji still round-trips.
  std::string unseen = "Ελληνικά и русский 中文 😀🎉 \x01\x02";
  EXPECT_EQ(tok.decode(tok.encode(unseen)), unseen);
}

TEST(BpeTokenizer, DecodePartialUtf8) {
  BpeTokenizer tok = BpeTokenizer::train("αβγ αβγ αβγ", 300, 1);
  std::vector<int32_t> ids = tok.encode("γ");
  std::string half = tok.token_bytes(int32_t(uint8_t("γ"[0])));  // the lead byte alone
  EXPECT_EQ(tok.decode({uint8_t("γ"[0])}), half);
  EXPECT_EQ(half, "\xCE");
  EXPECT_EQ(tok.decode(ids), "γ");
  EXPECT_THROW(tok.decode({tok.vocab_size()}), Error);
}

TEST(BpeTokenizer, ExpectedMergesOnTinyCorpus) {
  // Words: "ab" x1, " ab" x2, " abc" x1. Pair counts: (a,b) 4, (' ',a) 3, (b,c) 1.
  BpeTokenizer tok = BpeTokenizer::train("ab ab ab abc", 1000, 2);
  ASSERT_EQ(tok.merges().size(), 2u);  // then " ab"+"c" occurs once < min_frequency
  EXPECT_EQ(tok.token_bytes(256), "ab");
  EXPECT_EQ(tok.token_bytes(257), " ab");
  EXPECT_EQ(tok.merges()[0], (std::pair<int32_t, int32_t>{'a', 'b'}));
  EXPECT_EQ(tok.merges()[1], (std::pair<int32_t, int32_t>{' ', 256}));
  EXPECT_EQ(tok.vocab_size(), 258);
  EXPECT_EQ(tok.encode(" ab"), (std::vector<int32_t>{257}));
  EXPECT_EQ(tok.encode("abc ab"), (std::vector<int32_t>{256, 'c', 257}));

  BpeTokenizer all = BpeTokenizer::train("ab ab ab abc", 1000, 1);
  EXPECT_EQ(all.vocab_size(), 259);
  EXPECT_EQ(all.token_bytes(258), " abc");
  EXPECT_EQ(BpeTokenizer::train("ab ab ab abc", 257, 1).vocab_size(), 257);  // the size limit
}

TEST(BpeTokenizer, TiesBrokenLexicographically) {
  // Every pair occurs once: (" ", "a") < ("a", "b") < ("x", "y") byte-wise.
  BpeTokenizer tok = BpeTokenizer::train("xy ab", 1000, 1);
  ASSERT_EQ(tok.merges().size(), 3u);
  EXPECT_EQ(tok.token_bytes(256), " a");
  EXPECT_EQ(tok.token_bytes(257), " ab");
  EXPECT_EQ(tok.token_bytes(258), "xy");
}

TEST(BpeTokenizer, TrainingIsDeterministic) {
  std::string text = training_text();
  BpeTokenizer a = BpeTokenizer::train(text, 500);
  BpeTokenizer b = BpeTokenizer::train(text, 500);
  EXPECT_EQ(a.merges(), b.merges());
  EXPECT_EQ(a.to_json(), b.to_json());
}

TEST(BpeTokenizer, RepeatedPairsMergeLeftToRight) {
  BpeTokenizer tok = BpeTokenizer::train("aaaa aaaa aaaa aaaa", 300, 1);
  std::vector<int32_t> ids = tok.encode("aaaaa");
  EXPECT_EQ(tok.decode(ids), "aaaaa");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(tok.token_bytes(ids[0]), "aaaa");
  EXPECT_EQ(ids[1], 'a');
}

namespace {
// GPT-2's bpe() as written: rescan the word for its lowest-ranked pair, merge all of its
// occurrences left to right, repeat. The tokenizer's heap must give the same ids.
std::vector<int32_t> rescanning_bpe(const BpeTokenizer& tok, std::string_view word) {
  std::map<std::pair<int32_t, int32_t>, int32_t> rank;
  const auto& merges = tok.merges();
  for (size_t r = 0; r < merges.size(); ++r) rank.emplace(merges[r], int32_t(r));
  std::vector<int32_t> sym;
  for (char c : word) sym.push_back(tok.token_id(std::string(1, c)));
  while (sym.size() > 1) {
    int32_t best = INT32_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = rank.find({sym[i], sym[i + 1]});
      if (it != rank.end() && it->second < best) best = it->second, at = i;
    }
    if (best == INT32_MAX) break;
    const int32_t l = sym[at], r = sym[at + 1];
    const int32_t id = tok.token_id(tok.token_bytes(l) + tok.token_bytes(r));
    std::vector<int32_t> next;
    for (size_t i = 0; i < sym.size();)
      if (i + 1 < sym.size() && sym[i] == l && sym[i + 1] == r) next.push_back(id), i += 2;
      else next.push_back(sym[i++]);
    sym = next;
  }
  return sym;
}
}  // namespace

// The heap-ordered merging equals the rescanning loop: trained merges on words and on
// random runs of few letters (many repeated and overlapping pairs), and a merge list out of
// order (a pair made by a merge ranked before that merge's own pair); one 1 MB word (the
// rescanning loop took 48 s for 10 MB) round-trips.
TEST(BpeTokenizer, HeapMergingEqualsRescanningAndScalesToLongWords) {
  BpeTokenizer::Options one_word;
  one_word.use_regex = false;
  BpeTokenizer trained = BpeTokenizer::train(training_text() + "aaaa abab aaab baba aabb " + training_text(), 1000);
  BpeTokenizer tok(std::vector<std::string>(), {}, {});
  {
    std::vector<std::string> vocab;
    for (int32_t i = 0; i < trained.vocab_size(); ++i) vocab.push_back(trained.token_bytes(i));
    tok = BpeTokenizer(vocab, trained.merges(), one_word);
  }
  Generator g(3);
  for (int i = 0; i < 300; ++i) {
    std::string w = i % 3 == 0 ? random_bytes(g, g.next_u64() % 60) : std::string(g.next_u64() % 90, 'a');
    if (i % 3 == 2)
      for (char& c : w) c = "ab e"[g.next_u64() % 4];
    EXPECT_EQ(tok.encode(w), rescanning_bpe(tok, w)) << i;
  }
  for (const auto& s : multilingual()) EXPECT_EQ(tok.encode(s), rescanning_bpe(tok, s)) << s;
  // out of order: "aa" (rank 1) exists before "aaa" = (aa, a) (rank 0) can be made
  std::vector<std::string> vocab;
  for (int b = 0; b < 256; ++b) vocab.push_back(std::string(1, char(b)));
  vocab.push_back("aa"), vocab.push_back("aaa");
  BpeTokenizer odd(vocab, {{256, 'a'}, {'a', 'a'}}, one_word);
  for (const char* w : {"aa", "aaa", "aaaa", "aaaaa", "aaaaaaa", "baaab"})
    EXPECT_EQ(odd.encode(w), rescanning_bpe(odd, w)) << w;
  std::string big(1 << 20, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = "the beginning "[g.next_u64() % 14];
  EXPECT_EQ(tok.decode(tok.encode(big)), big);
}

TEST(BpeTokenizer, ConstructorValidates) {
  std::vector<std::string> base;
  for (int b = 0; b < 256; ++b) base.push_back(std::string(1, char(b)));
  auto with = [&](std::vector<std::string> extra) {
    auto v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  EXPECT_NO_THROW(BpeTokenizer(with({"ab"}), {{'a', 'b'}}, {}));
  EXPECT_THROW(BpeTokenizer(with({"a"}), {}, {}), Error);           // duplicate token
  EXPECT_THROW(BpeTokenizer(with({""}), {}, {}), Error);            // empty token
  EXPECT_THROW(BpeTokenizer(with({"ab"}), {{'a', 300}}, {}), Error);  // id out of range
  EXPECT_THROW(BpeTokenizer(with({"ab"}), {{'b', 'a'}}, {}), Error);  // "ba" is not a token
  EXPECT_THROW(BpeTokenizer::train("abc", 100), Error);
  EXPECT_THROW(BpeTokenizer::train("abc", 300, 0), Error);
  // A vocabulary without every byte loads, and encode names the missing byte.
  BpeTokenizer partial({"a", "b"}, {}, {});
  EXPECT_EQ(partial.encode("ab"), (std::vector<int32_t>{0, 1}));
  try {
    partial.encode("abc");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte 0x63"), std::string::npos) << e.what();
  }
}

TEST(BpeTokenizer, Options) {
  BpeTokenizer base = BpeTokenizer::train("hello hello hello", 300, 1);
  std::vector<std::string> vocab;
  for (int32_t i = 0; i < base.vocab_size(); ++i) vocab.push_back(base.token_bytes(i));
  BpeTokenizer prefixed(vocab, base.merges(), {.add_prefix_space = true});
  EXPECT_EQ(prefixed.encode("hello"), base.encode(" hello"));
  EXPECT_EQ(prefixed.encode(" hello"), base.encode(" hello"));
  BpeTokenizer whole(vocab, base.merges(), {.use_regex = false});
  EXPECT_EQ(whole.decode(whole.encode("hello hello!")), "hello hello!");
}

TEST(BpeTokenizer, SpecialTokensInTraining) {
  // Segments "ab ab", "ab ab", "": words "ab" x2, " ab" x2; the special token is never split.
  BpeTokenizer tok = BpeTokenizer::train("ab ab<|eot|>ab ab<|eot|>", 300, 1, {"<|eot|>"});
  EXPECT_EQ(tok.vocab_size(), 259);
  ASSERT_EQ(tok.added_tokens().size(), 1u);
  EXPECT_EQ(tok.added_tokens()[0].id, 258);
  EXPECT_EQ(tok.token_bytes(258), "<|eot|>");
  EXPECT_EQ(tok.token_id("<|eot|>"), -1);  // not a vocabulary token: matched before pre-tokenizing
  std::vector<int32_t> ids = tok.encode("ab<|eot|> ab<|eot|><|eot|>");
  EXPECT_EQ(ids, (std::vector<int32_t>{256, 258, 257, 258, 258}));
  EXPECT_EQ(tok.decode(ids), "ab<|eot|> ab<|eot|><|eot|>");
  EXPECT_EQ(BpeTokenizer::train("ab ab<|eot|>ab ab", 258, 1, {"<|eot|>"}).vocab_size(), 258);  // counted in
  EXPECT_THROW(BpeTokenizer::train("x", 256, 1, {"<s>"}), Error);
  EXPECT_THROW(BpeTokenizer::train("x", 300, 1, {""}), Error);
  EXPECT_THROW(BpeTokenizer::train("x", 300, 1, {"<s>", "<s>"}), Error);
}

TEST(BpeTokenizer, AddedTokensLongestFirst) {
  BpeTokenizer base = BpeTokenizer::train("", 256, 1);
  std::vector<std::string> vocab;
  for (int32_t i = 0; i < 256; ++i) vocab.push_back(base.token_bytes(i));
  BpeTokenizer tok(vocab, {}, {}, {{"<a>", 256, true}, {"<a><b>", 257, true}, {"x", 'x', false}});
  EXPECT_EQ(tok.encode("<a><b><a>yx"), (std::vector<int32_t>{257, 256, 'y', 'x'}));
  EXPECT_THROW(BpeTokenizer(vocab, {}, {}, {{"<a>", 257, true}}), Error);  // skips id 256
  EXPECT_THROW(BpeTokenizer(vocab, {}, {}, {{"<a>", 'x', true}}), Error);  // id of "x", other bytes
  EXPECT_THROW(BpeTokenizer(vocab, {}, {}, {{"\xff", 256, true}}), Error);  // not UTF-8
}
