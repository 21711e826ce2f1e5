// The synthetic translation corpus: agreement, well-formed parses, alignments that match
// the lexicon, determinism, a long tail of rare words, and the file formats.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "qiusuo/error.h"
#include "qiusuo/text/synthetic_mt.h"
#include "test_util.h"

using namespace qs;
using namespace qs::text;

namespace {

SyntheticMtOptions small() {
  SyntheticMtOptions o;
  o.n_train = 3000, o.n_valid = 100, o.n_test = 100;
  return o;
}

std::string feat(const std::string& tag) { return tag.substr(tag.find(':') + 1); }

// Every word reaches the root by following heads, in at most n steps (a tree: no cycles).
bool is_tree(const std::vector<int32_t>& head) {
  int roots = 0;
  for (size_t i = 0; i < head.size(); ++i) {
    roots += head[i] == -1;
    int32_t at = int32_t(i);
    for (size_t steps = 0; at != -1; ++steps) {
      if (steps > head.size()) return false;
      at = head[size_t(at)];
    }
  }
  return roots == 1;
}

}  // namespace

TEST(SyntheticMt, SubjectVerbAgreementInBothLanguages) {
  auto pairs = generate_synthetic_mt(small(), 2000);
  int checked = 0, relcl = 0;
  std::map<std::string, std::string> agr = {{"1sg", "mu"}, {"3sg", "su"}, {"1pl", "mira"}, {"3pl", "sura"}};
  for (const auto& p : pairs) {
    for (size_t i = 0; i < p.src.size(); ++i) {
      if (p.src_rel[i] == "nsubj" && p.src_tag[i] != "PRON:rel") {
        const size_t v = size_t(p.src_head[i]);
        std::string f = feat(p.src_tag[i]);
        std::string want = f == "sg" ? "3sg" : f == "pl" ? "3pl" : f;
        ASSERT_EQ(feat(p.src_tag[v]), want) << p.src[i] << " " << p.src[v];
        // English: only a 3rd person singular subject puts -s on the verb.
        EXPECT_EQ(p.src[v].back() == 's', want == "3sg") << p.src[i] << " " << p.src[v];
        ++checked;
      }
      if (p.src_rel[i] == "relcl") {  // the relative verb agrees with the noun it modifies
        const std::string noun = feat(p.src_tag[size_t(p.src_head[i])]);
        EXPECT_EQ(feat(p.src_tag[i]), noun == "sg" ? "3sg" : "3pl");
        ++relcl;
      }
    }
    // The target's agreement particle follows the main verb and matches its features.
    for (size_t j = 0; j < p.tgt.size(); ++j)
      if (p.tgt_rel[j] == "agr") {
        const size_t v = size_t(p.tgt_head[j]);
        EXPECT_EQ(v + 1, j);
        EXPECT_EQ(p.tgt[j], agr[feat(p.tgt_tag[v])]);
        EXPECT_EQ(p.tgt_rel[v], "root");
        EXPECT_EQ(j + 1, p.tgt.size()) << "SOV: the verb and its agreement end the sentence";
      }
  }
  EXPECT_GT(checked, 1500);
  EXPECT_GT(relcl, 100);
}

TEST(SyntheticMt, ParsesAreTreesAndAlignmentsMatchTheLexicon) {
  SyntheticMtOptions o = small();
  SyntheticMtLanguage lang(o);
  auto pairs = generate_synthetic_mt(o, 2000);
  std::map<std::string, int> rels;
  for (const auto& p : pairs) {
    check_parallel_example(p, "pair");
    ASSERT_TRUE(is_tree(p.src_head));
    ASSERT_TRUE(is_tree(p.tgt_head));
    std::vector<int> aligned_to(p.src.size(), 0);
    for (size_t j = 0; j < p.tgt.size(); ++j) {
      if (p.align[j] < 0) {
        EXPECT_EQ(p.tgt_tag[j], "PRT") << "only particles are unaligned: " << p.tgt[j];
        continue;
      }
      const size_t i = size_t(p.align[j]);
      ++aligned_to[i];
      EXPECT_EQ(lang.translate_word(p.src[i]), p.tgt[j]);
      EXPECT_EQ(p.src_rel[i] == "nsubj" ? std::string("nsubj") : p.src_rel[i],
                p.tgt_rel[j] == "mark" ? std::string("nsubj") : p.tgt_rel[j]);
      // The same tree: an aligned word's head is aligned to the source word's head.
      if (p.src_head[i] >= 0) {
        ASSERT_GE(p.tgt_head[j], 0);
        EXPECT_EQ(p.align[size_t(p.tgt_head[j])], p.src_head[i]);
      }
    }
    for (size_t i = 0; i < p.src.size(); ++i) {
      EXPECT_EQ(aligned_to[i], p.src[i] == "a" ? 0 : 1) << p.src[i];
      ++rels[p.src_rel[i]];
    }
    // SOV: the target's root is its second-to-last word; the source's follows the subject.
    EXPECT_EQ(p.tgt_rel[p.tgt.size() - 2], "root");
  }
  for (const char* r : {"nsubj", "dobj", "det", "amod", "advmod", "prep", "pobj", "relcl", "root"})
    EXPECT_GT(rels[r], 50) << r;
}

TEST(SyntheticMt, SameSeedSameCorpusAndHeldOutSplitsAreUnseen) {
  SyntheticMtOptions o = small();
  MtSplits a = synthetic_mt_splits(o), b = synthetic_mt_splits(o);
  ASSERT_EQ(a.train.size(), 3000u);
  ASSERT_EQ(a.test.size(), 100u);
  for (size_t i = 0; i < a.train.size(); i += 97) {
    EXPECT_EQ(a.train[i].src, b.train[i].src);
    EXPECT_EQ(a.train[i].tgt_head, b.train[i].tgt_head);
  }
  EXPECT_EQ(a.test[5].tgt, b.test[5].tgt);
  o.seed = 2;
  MtSplits c = synthetic_mt_splits(o);
  int same = 0;
  for (size_t i = 0; i < 100; ++i) same += a.train[i].src == c.train[i].src;
  EXPECT_LT(same, 10);
  std::set<std::vector<std::string>> train;
  for (auto& p : a.train) train.insert(p.src);
  for (auto& p : a.test) EXPECT_EQ(train.count(p.src), 0u);
}

TEST(SyntheticMt, RareWordsAreRare) {
  SyntheticMtOptions o;
  auto pairs = generate_synthetic_mt(o, 20000);
  std::map<std::string, int64_t> count;
  int64_t total = 0;
  for (auto& p : pairs)
    for (auto& w : p.src) ++count[w], ++total;
  std::vector<int64_t> c;
  for (auto& [w, n] : count) c.push_back(n);
  std::sort(c.rbegin(), c.rend());
  // A long tail: hundreds of word types, the 50 most frequent cover over half the tokens, and many
  // types occur fewer than 5 times in 20000 sentences.
  EXPECT_GT(c.size(), 1000u);
  int64_t top = 0;
  for (size_t i = 0; i < 50; ++i) top += c[i];
  EXPECT_GT(double(top) / double(total), 0.5);
  EXPECT_GT(std::count_if(c.begin(), c.end(), [](int64_t n) { return n < 5; }), 200);
  EXPECT_GT(SyntheticMtLanguage(o).lexicon_size(), 2000);
}

TEST(SyntheticMt, FilesRoundTripAndBadLinesAreRejected) {
  const std::string dir = qs::testing::temp_dir("mt_files");
  auto pairs = generate_synthetic_mt(small(), 50);
  write_parallel_jsonl(dir + "/a.jsonl", pairs);
  write_parallel_tsv(dir + "/a.tsv", pairs);
  auto j = read_parallel_jsonl(dir + "/a.jsonl"), t = read_parallel_tsv(dir + "/a.tsv");
  ASSERT_EQ(j.size(), 50u);
  ASSERT_EQ(t.size(), 50u);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_EQ(j[i].tgt, pairs[i].tgt);
    EXPECT_EQ(t[i].align, pairs[i].align);
    EXPECT_EQ(t[i].src_rel, pairs[i].src_rel);
    EXPECT_EQ(j[i].tgt_tag, pairs[i].tgt_tag);
  }
  qs::testing::write_bytes(dir + "/bad.jsonl", R"({"src":["a","b"],"tgt":["x"],"src_head":[1,5],)"
                                               R"("src_rel":["det","root"],"tgt_head":[-1],"tgt_rel":["root"],"align":[0]})" "\n");
  EXPECT_NE(qs::testing::error_of([&] { read_parallel_jsonl(dir + "/bad.jsonl"); }).find("bad.jsonl:1"),
            std::string::npos);
  qs::testing::write_bytes(dir + "/cyc.jsonl", R"({"src":["a","b"],"tgt":["x"],"src_head":[1,0],)"
                                               R"("src_rel":["det","root"],"tgt_head":[-1],"tgt_rel":["root"],"align":[0]})" "\n");
  EXPECT_NE(qs::testing::error_of([&] { read_parallel_jsonl(dir + "/cyc.jsonl"); }).find("0 roots"),
            std::string::npos);
  qs::testing::write_bytes(dir + "/cyc3.tsv", "header\n" "a b c\tx\t-1 2 1\troot det det\t-1\troot\t0\t\t\n");
  EXPECT_NE(qs::testing::error_of([&] { read_parallel_tsv(dir + "/cyc3.tsv"); }).find("cyc3.tsv:2: the source parse "
                                                                                       "has a cycle through word 1"),
            std::string::npos);
}

TEST(SyntheticMt, RealParallelTextFiles) {
  const std::string dir = qs::testing::temp_dir("mt_text");
  qs::testing::write_bytes(dir + "/s.txt", "a b c\nd e\n");
  qs::testing::write_bytes(dir + "/t.txt", "x y\nz\n");
  auto p = read_parallel_text(dir + "/s.txt", dir + "/t.txt");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[1].src, (std::vector<std::string>{"d", "e"}));
  EXPECT_FALSE(p[0].has_syntax());
  using qs::testing::error_of;
  qs::testing::write_bytes(dir + "/t2.txt", "x y\n");
  EXPECT_NE(error_of([&] { read_parallel_text(dir + "/s.txt", dir + "/t2.txt"); }).find("has 2 lines but"),
            std::string::npos);
  qs::testing::write_bytes(dir + "/t3.txt", "x y\n  \n");
  EXPECT_NE(error_of([&] { read_parallel_text(dir + "/s.txt", dir + "/t3.txt"); }).find("t3.txt:2: empty line"),
            std::string::npos);
  qs::testing::write_bytes(dir + "/t4.txt", "x y\nz\xff\n");
  EXPECT_NE(error_of([&] { read_parallel_text(dir + "/s.txt", dir + "/t4.txt"); }).find("t4.txt:2: invalid UTF-8"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_parallel_text(dir + "/none.txt", dir + "/t.txt"); }).find("cannot open"),
            std::string::npos);
}
