// A synthetic parallel corpus with gold syntax, for the translation model and the head
// analysis: an English-like SVO source language generated from a probabilistic grammar, and
// an SOV target language with its own lexicon and morphology. Every pair carries the gold
// dependency parse of both sides and the word alignment, so attention heads can be scored
// exactly. Deterministic: the same options give the same corpus on every machine (own RNG,
// no std distributions).
//
// Source (SVO):   [the big dog]_nsubj [that chases a cat]_relcl sleeps quietly [in the house]
//   NP  = Det Adj{0..2} Noun [RelCl] | Pronoun (subjects only: I he she it we they)
//   RelCl = "that" Verb [Det Adj{0..2} Noun]      (the verb agrees with the head noun)
//   VP  = Verb_intr | Verb_tr NP_obj, then [Adverb] [Prep Det Adj{0..2} Noun]
//   agreement: 3rd person singular subjects take "-s" on the verb; plural nouns end in "-s".
// Target (SOV):   [RelCl] Noun(+plural "-ni") Adj* Det CASE  [Noun Adj* Det POSTP]  [Obj... CASE] Adv Verb AGR
//   CASE: "ka" after subjects, "ro" after objects (pure morphology, aligned -1); AGR after the
//   main verb: "mu" 1sg, "su" 3sg, "mira" 1pl, "sura" 3pl (aligned -1); relative clauses
//   precede their noun and end in "ta" (aligned to "that"); "a" has no translation.
//
// Parses (Stanford basic dependencies): heads are word indices, -1 for the root (the main
// verb). Relations: root, nsubj, dobj, det, amod, advmod, prep, pobj, relcl, and on the
// target side also case (CASE -> its noun), agr (AGR -> its verb), mark ("ta" -> its verb).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qs::text {

struct ParallelExample {
  std::vector<std::string> src, tgt;
  std::vector<int32_t> src_head, tgt_head;     // per word: head index, -1 for the root
  std::vector<std::string> src_rel, tgt_rel;   // per word: relation to its head
  std::vector<int32_t> align;                  // per target word: source index, or -1 (morphology)
  // Per word: part of speech and features ("NOUN:sg", "VERB:3sg", "PRON:1pl", "DET", "ADJ",
  // "ADV", "ADP", "PRT" for morphology words). Empty for real corpora.
  std::vector<std::string> src_tag, tgt_tag;
  bool has_syntax() const { return !src_head.empty(); }
};

struct SyntheticMtOptions {
  uint64_t seed = 1;           // the sentences
  uint64_t lexicon_seed = 7;   // the two vocabularies (kept apart so corpora of many seeds share a language)
  int64_t n_train = 40000, n_valid = 500, n_test = 1000;
  // Lexicon sizes (roots); the first few of each class are English words, the rest pseudo-words.
  int64_t n_nouns = 700, n_verbs_tr = 250, n_verbs_intr = 120, n_adjectives = 350, n_adverbs = 100;
  double zipf = 1.0;           // word of rank r drawn with probability ~ 1 / r^zipf within its class
  double p_pronoun = 0.15, p_relcl = 0.15, p_transitive = 0.65, p_adverb = 0.3, p_pp = 0.3, p_adjective = 0.35,
         p_plural = 0.35;
  // Noun/verb homographs, as in English ("watch", "help", "run": both nouns and verbs, and
  // "watches" is both a plural noun and a 3sg verb). The first n_homographs words of a fixed
  // list of 20 such verbs (sleep help run call walk love wait visit laugh need swim paint work
  // answer dance watch smile catch rest push, commonest verbs first) also become nouns, placed at
  // the top of the noun ranks (noun ranks 1, 3, 5, ...), with their own target word: the source
  // form is ambiguous and only its context decides the translation (after a determiner or an
  // adjective it is the noun; after a subject or "that" it is the verb). 0 (no ambiguity) is the
  // corpus of the earlier checkpoints, which is what their JSON reads back as. At most 20; a
  // homograph whose verb is outside the verb classes (n_verbs_tr, n_verbs_intr) is not made.
  int64_t n_homographs = 0;
  // Errors name the field: negative counts, empty lexicon classes, probabilities outside [0, 1].
  void validate() const;
};

// The two languages' lexicons and the grammar that samples pairs.
class SyntheticMtLanguage {
 public:
  explicit SyntheticMtLanguage(const SyntheticMtOptions& opt);
  // One pair; `state` is the caller's RNG state (splitmix64), advanced.
  ParallelExample sample(uint64_t& state) const;
  // The target word a source word form translates to ("dogs" -> "inuni"), or "" for words
  // without one ("a", and words not in the lexicon). A homograph needs its tag (the pair's
  // src_tag: "NOUN:..." for the noun reading, anything else for the verb); without one it
  // translates to "" (ambiguous).
  std::string translate_word(const std::string& src_word, const std::string& src_tag = "") const;
  // The source forms that are both a noun and a verb ("watch", "watches"), sorted.
  std::vector<std::string> homograph_forms() const;
  // The grammar and lexicon sizes, with example pairs, as Markdown (the corpus README).
  std::string describe(int64_t n_examples = 5) const;
  int64_t lexicon_size() const { return int64_t(src_to_tgt_.size()); }

  struct Entry {
    std::string src, tgt;  // roots
  };

 private:
  friend struct SentenceBuilder;
  SyntheticMtOptions opt_;
  std::vector<Entry> nouns_, verbs_tr_, verbs_intr_, adjectives_, adverbs_;
  std::vector<std::vector<double>> cdf_;  // per class, cumulative Zipf weights
  std::map<std::string, std::string> src_to_tgt_;
  std::map<std::string, std::string> noun_reading_;  // homograph form -> its noun translation
};

struct MtSplits {
  std::vector<ParallelExample> train, valid, test;
};
// `count` pairs from the stream `stream` (0 train, 1 valid, 2 test, others free).
std::vector<ParallelExample> generate_synthetic_mt(const SyntheticMtOptions& opt, int64_t count, uint64_t stream = 0);
// Train, validation and test splits; validation and test pairs whose source sentence also
// occurs in the training split are dropped and replaced, so held-out means unseen.
MtSplits synthetic_mt_splits(const SyntheticMtOptions& opt);

// ---- files
// JSONL: one object per line {"src": [...], "tgt": [...], "src_head": [...], ...} (all fields
// of ParallelExample). TSV: one pair per line, tab-separated columns src, tgt, src_head,
// src_rel, tgt_head, tgt_rel, align, src_tag, tgt_tag; lists space-separated; a header line.
// Readers error (qs::IOError) with the file and line number on malformed lines, lengths that
// disagree, heads or alignments out of range.
void write_parallel_jsonl(const std::string& path, const std::vector<ParallelExample>& pairs);
std::vector<ParallelExample> read_parallel_jsonl(const std::string& path);
void write_parallel_tsv(const std::string& path, const std::vector<ParallelExample>& pairs);
std::vector<ParallelExample> read_parallel_tsv(const std::string& path);
// Checks one pair's invariants (equal lengths, heads in range, alignments in range); the
// message names `where`. Syntax-free pairs (real corpora) only need non-empty sides.
void check_parallel_example(const ParallelExample& p, const std::string& where);

// A real parallel corpus: two aligned UTF-8 text files, one sentence per line, words split
// on whitespace (no parses, no alignments). Errors (qs::IOError) name the file and line:
// unreadable files, different line counts, an empty (or blank) line, invalid UTF-8.
std::vector<ParallelExample> read_parallel_text(const std::string& src_path, const std::string& tgt_path);

}  // namespace qs::text
