// Corpus BLEU against hand-computed values: a perfect match, the worked examples of
// Papineni et al. 2002, the brevity penalty, smoothing, and the 13a tokenizer.
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/text/bleu.h"
#include "test_util.h"

using namespace qs::text;

TEST(Bleu, PerfectMatchIsHundredAndEmptyIsZero) {
  std::vector<std::string> h = {"the cat sat on the mat .", "a dog barks loudly at the moon"};
  BleuScore b = corpus_bleu(h, {h});
  EXPECT_NEAR(b.score, 100.0, 1e-9);
  EXPECT_DOUBLE_EQ(b.bp, 1.0);
  EXPECT_EQ(corpus_bleu({""}, {{"a b c d e"}}).score, 0.0);
  EXPECT_EQ(corpus_bleu({"x y z w"}, {{"a b c d e"}}).score, 0.0);
}

TEST(Bleu, HandComputedPrecisionsAndBrevityPenalty) {
  // 1-grams 5/6, 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; equal lengths.
  BleuScore b = corpus_bleu({"the cat sat on the mat"}, {{"the cat sat on a mat"}});
  EXPECT_EQ(b.correct, (std::array<int64_t, 4>{5, 3, 2, 1}));
  EXPECT_EQ(b.total, (std::array<int64_t, 4>{6, 5, 4, 3}));
  const double want = 100 * std::exp((std::log(5.0 / 6) + std::log(3.0 / 5) + std::log(0.5) + std::log(1.0 / 3)) / 4);
  EXPECT_NEAR(b.score, want, 1e-9);
  // A short hypothesis: c = 4, r = 6, BP = exp(1 - 6/4), all precisions 1.
  BleuScore s = corpus_bleu({"the cat sat on"}, {{"the cat sat on a mat"}});
  EXPECT_NEAR(s.bp, std::exp(1 - 6.0 / 4), 1e-12);
  EXPECT_NEAR(s.score, 100 * std::exp(1 - 6.0 / 4), 1e-9);
  // Corpus level: counts are summed before dividing (not an average of sentence scores).
  BleuScore c = corpus_bleu({"the cat sat on the mat", "a b c d"}, {{"the cat sat on a mat", "a b c d"}});
  EXPECT_EQ(c.correct, (std::array<int64_t, 4>{9, 6, 4, 2}));
  EXPECT_EQ(c.total, (std::array<int64_t, 4>{10, 8, 6, 4}));
}

TEST(Bleu, PapineniWorkedExamples) {
  // Section 2.1.1: the candidate "the the the ..." has modified unigram precision 2/7.
  std::vector<std::vector<std::string>> refs = {{"the cat is on the mat"}, {"there is a cat on the mat"}};
  BleuScore b = corpus_bleu({"the the the the the the the"}, refs);
  EXPECT_EQ(b.correct[0], 2);
  EXPECT_EQ(b.total[0], 7);
  EXPECT_EQ(b.ref_len, 7) << "the closest reference length";
  EXPECT_EQ(b.score, 0.0) << "no matching bigram, no smoothing";
  BleuScore e = corpus_bleu({"the the the the the the the"}, refs, "exp");
  const double p1 = 100 * 2.0 / 7, p2 = 100 / (2.0 * 6), p3 = 100 / (4.0 * 5), p4 = 100 / (8.0 * 4);
  EXPECT_NEAR(e.score, std::exp((std::log(p1) + std::log(p2) + std::log(p3) + std::log(p4)) / 4), 1e-9);
  // Section 2.1: Candidate 1 against its three references: 17 of 18 words match ("obeys" does
  // not), 18 of 19 tokens once 13a splits off the final period; the closest reference is
  // reference 2 with 19 tokens.
  std::vector<std::vector<std::string>> refs3 = {
      {"It is a guide to action that ensures that the military will forever heed Party commands."},
      {"It is the guiding principle which guarantees the military forces always being under the command of the "
       "Party."},
      {"It is the practical guide for the army always to heed the directions of the party."}};
  BleuScore c = corpus_bleu({"It is a guide to action which ensures that the military always obeys the commands of "
                             "the party."},
                            refs3);
  EXPECT_EQ(c.total[0], 19);
  EXPECT_EQ(c.correct[0], 18);
  EXPECT_EQ(c.ref_len, 19);
  EXPECT_DOUBLE_EQ(c.bp, 1.0);
  EXPECT_GT(c.score, 30.0);
}

TEST(Bleu, Tokenizer13aAndErrors) {
  EXPECT_EQ(tokenize_13a("Hello, world! It's 3.14 and 1,000-2."),
            (std::vector<std::string>{"Hello", ",", "world", "!", "It's", "3.14", "and", "1,000", "-", "2", "."}));
  EXPECT_EQ(tokenize_13a("a &amp; b (c) \"d\""), (std::vector<std::string>{"a", "&", "b", "(", "c", ")", "\"", "d", "\""}));
  EXPECT_EQ(tokenize_13a("Größe: 5.\n"), (std::vector<std::string>{"Größe", ":", "5", "."}));
  using qs::testing::error_of;
  EXPECT_NE(error_of([] { corpus_bleu({"a"}, {{"a", "b"}}); }).find("has 2 sentences"), std::string::npos);
  EXPECT_NE(error_of([] { corpus_bleu({"a"}, {{"a"}}, "floor"); }).find("unknown smoothing"), std::string::npos);
  EXPECT_NE(error_of([] { corpus_bleu({"a"}, {}); }).find("no reference"), std::string::npos);
}
