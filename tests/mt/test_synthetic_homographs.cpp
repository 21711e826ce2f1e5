// Noun/verb homographs in the synthetic source language: one source form, two target words,
// and the previous word decides which; parses and alignments stay valid; the option travels
// in the run's JSON, and JSON written before the option reads back as a corpus without them.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "qiusuo/apps/mt.h"
#include "qiusuo/text/synthetic_mt.h"
#include "test_util.h"

using namespace qs;
using namespace qs::text;

namespace {

SyntheticMtOptions with_homographs(int64_t n) {
  SyntheticMtOptions o;
  o.n_train = 2000, o.n_valid = 50, o.n_test = 50;
  o.n_homographs = n;
  return o;
}

bool is_noun(const std::string& tag) { return tag.rfind("NOUN", 0) == 0; }

}  // namespace

TEST(SyntheticMtHomographs, OneSourceFormTwoTranslationsDecidedByThePreviousWord) {
  const SyntheticMtOptions o = with_homographs(20);
  SyntheticMtLanguage lang(o);
  const std::vector<std::string> forms = lang.homograph_forms();
  ASSERT_EQ(forms.size(), 40u);  // 20 roots and their -s forms ("watch", "watches")
  const std::set<std::string> homograph(forms.begin(), forms.end());
  EXPECT_TRUE(homograph.count("watches") && homograph.count("run") && homograph.count("help"));
  EXPECT_EQ(lang.translate_word("watch"), "") << "ambiguous without its tag";
  EXPECT_NE(lang.translate_word("watch", "NOUN:sg"), lang.translate_word("watch", "VERB:1sg"));
  EXPECT_FALSE(lang.translate_word("watch", "NOUN:sg").empty());
  EXPECT_FALSE(lang.translate_word("watch", "VERB:1sg").empty());

  // form -> reading (noun?) -> target words seen
  std::map<std::string, std::map<bool, std::set<std::string>>> seen;
  int64_t tokens = 0, ambiguous = 0;
  for (const ParallelExample& p : generate_synthetic_mt(o, 3000)) {
    check_parallel_example(p, "pair");
    tokens += int64_t(p.src.size());
    for (size_t j = 0; j < p.tgt.size(); ++j) {
      if (p.align[j] < 0) continue;
      const size_t i = size_t(p.align[j]);
      EXPECT_EQ(lang.translate_word(p.src[i], p.src_tag[i]), p.tgt[j]) << p.src[i] << " " << p.src_tag[i];
      if (!homograph.count(p.src[i])) continue;
      ++ambiguous;
      const bool noun = is_noun(p.src_tag[i]);
      seen[p.src[i]][noun].insert(p.tgt[j]);
      // The word before decides: a determiner or adjective before the noun; before the verb its
      // subject (a noun, a pronoun, "that"), or the verb of a relative clause that ends there.
      ASSERT_GT(i, 0u) << "a sentence never starts with a noun or a verb";
      const std::string& prev = p.src_tag[i - 1];
      if (noun)
        EXPECT_TRUE(prev == "DET" || prev == "ADJ") << p.src[i - 1] << " " << p.src[i];
      else
        EXPECT_TRUE(is_noun(prev) || prev.rfind("PRON", 0) == 0 || prev.rfind("VERB", 0) == 0)
            << p.src[i - 1] << " " << p.src[i];
    }
  }
  // Frequent: over a tenth of all source tokens is a homograph.
  EXPECT_GT(double(ambiguous), 0.1 * double(tokens));
  int both = 0;
  for (auto& [form, readings] : seen) {
    if (readings.size() < 2) continue;
    ++both;
    ASSERT_EQ(readings[true].size(), 1u) << form;
    ASSERT_EQ(readings[false].size(), 1u) << form;
    EXPECT_NE(*readings[true].begin(), *readings[false].begin()) << form << ": two different target words";
  }
  EXPECT_GE(both, 20) << "most homographs occur in both readings";
}

TEST(SyntheticMtHomographs, NoneByDefaultAndSmallVerbClassesMakeFewer) {
  SyntheticMtOptions o;
  EXPECT_EQ(o.n_homographs, 0);
  EXPECT_TRUE(SyntheticMtLanguage(o).homograph_forms().empty());
  EXPECT_EQ(SyntheticMtLanguage(o).translate_word("watch"), SyntheticMtLanguage(o).translate_word("watch", "VERB:1sg"));
  // Only verbs inside the classes become homographs: with 4 intransitive and 4 transitive
  // verbs, "sleep" "run" "walk" (intransitive ranks 1-3) and "help" (transitive rank 4) qualify.
  o.n_homographs = 20, o.n_verbs_tr = 4, o.n_verbs_intr = 4;
  EXPECT_EQ(SyntheticMtLanguage(o).homograph_forms(),
            (std::vector<std::string>{"help", "helps", "run", "runs", "sleep", "sleeps", "walk", "walks"}));
  o.n_homographs = 21;
  EXPECT_NE(qs::testing::error_of([&] { SyntheticMtLanguage{o}; }).find("n_homographs must be in [0, 20], got 21"),
            std::string::npos);
}

TEST(SyntheticMtHomographs, OptionRoundTripsThroughTheRunJsonAndOldJsonHasNone) {
  apps::MtDataOptions d;
  d.synthetic.n_homographs = 12;
  const nlohmann::json j = d.to_json();
  EXPECT_EQ(j["synthetic"]["n_homographs"], 12);
  EXPECT_EQ(apps::MtDataOptions::from_json(j).synthetic.n_homographs, 12);
  nlohmann::json old = j;
  old["synthetic"].erase("n_homographs");  // a checkpoint written before the option
  EXPECT_EQ(apps::MtDataOptions::from_json(old).synthetic.n_homographs, 0);
  // The corpus generated from the restored options is the one the run trained on.
  d.synthetic.n_train = 30, d.synthetic.n_valid = 5, d.synthetic.n_test = 5;
  const MtSplits a = apps::load_mt_data(d), b = apps::load_mt_data(apps::MtDataOptions::from_json(d.to_json()));
  for (size_t i = 0; i < a.train.size(); ++i) EXPECT_EQ(a.train[i].tgt, b.train[i].tgt);
}
