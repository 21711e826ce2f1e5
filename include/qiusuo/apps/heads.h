// Head analysis (`qiusuo heads`): what each attention head of a trained model does, measured
// over many sentences from its captured attention (apps::AttentionSnapshot) against gold
// annotations. Tests, per head of every map (encoder "self", decoder "causal", "cross"; LM
// "causal"):
//
//   confidence   the mean of the row maximum (Voita et al. 2019), over the scored rows
//   positional   the argmax falls on one relative offset k (key - query) in >= 90% of the rows
//                (Voita et al. 2019); self-attention maps only. Offset -1 is a previous-token head.
//                The share's denominator is the scored rows in which offset k exists (0 <= query
//                + k < visible keys): the first token has no previous token, so a perfect -1 head
//                scores 1.0, not (n - 1) / n. Only offsets that exist in at least
//                min_offset_coverage (half) of the scored rows are candidates, so a rare far
//                offset cannot win on a handful of rows. The share over all scored rows is kept
//                beside it (offset_share_all)
//   syntactic    per relation (nsubj, dobj, amod, advmod) and direction ("dep->head": the
//                dependent's row, correct when its argmax is the head word; "head->dep": the
//                head's row, correct on any dependent with that relation): the accuracy, against
//                the relation's positional baseline (the best single fixed offset's accuracy on
//                the same instances). >= 10 points above it (and >= min_instances instances)
//                makes the head syntactic for that relation
//   rare words   how often the argmax lands on the rarest visible token of the sentence (by
//                training frequency), against chance (the mean of 1 / visible keys)
//   <eos> sink   how often the argmax is the key side's <eos> (a head with nothing to do often
//                parks there; >= 0.5 gives the role "<eos> sink")
//   first token  causal maps: how often the argmax is key 0 (<bos> in a decoder, the first token of
//                an LM's text: the "attention sink"); >= 0.5 gives "first-token sink"
//   alignment    cross-attention: how often the argmax of the row that predicts target word j
//                (row j, see docs/translation.md) is align[j]; also reported for the row that
//                reads the word (row j + 1). Words aligned to -1 are skipped
//
// Scored rows: every query row except rows of <eos> tokens (SideGold::eos) and, in causal maps,
// row 0 (it sees a single key, so its maximum is 1 by construction). Keys at <eos> stay
// candidates for the argmax (a head that parks on <eos> fails the other tests). Causal maps
// score only instances whose target key is visible (key <= query), and so do their baselines.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qiusuo/apps/attention_view.h"

namespace qs::apps {

// The gold annotations of one side (a token sequence) of one sentence.
struct SideGold {
  int64_t first = 0;             // token index of word 0 (the decoder side: 1, after <bos>)
  int64_t eos = -1;              // token index of <eos> on this side, or -1
  std::vector<int32_t> head;     // per word: its head word, -1 for the root; empty: no parse
  std::vector<std::string> rel;  // per word: relation to its head (as head)
  std::vector<double> freq;      // per token: training frequency; empty: no rare-word test.
                                 // Specials (<bos>, <eos>) should carry +inf (never rarest)
};

// One analysed sentence: its attention and the gold annotations of both sides.
struct HeadSentence {
  AttentionSnapshot snap;
  SideGold source;             // encoder side (unused for an LM)
  SideGold target;             // decoder side, or the LM's tokens
  std::vector<int32_t> align;  // per target word: its source word, -1 for none; empty: no alignment
};

struct RelationScore {
  std::string relation;   // "nsubj", "dobj", "amod", "advmod"
  std::string direction;  // "dep->head" or "head->dep"
  int64_t instances = 0;  // scored rows
  double accuracy = 0;    // argmax on the related word
  double baseline = 0;    // the best fixed offset's accuracy on the same instances
  int64_t baseline_offset = 0;
  bool syntactic = false;  // accuracy >= baseline + margin and instances >= min_instances
};

struct HeadMetrics {
  std::string name, kind;  // the map's capture name and kind
  int64_t layer = 0, head = 0;
  int64_t rows = 0;             // scored query rows
  double confidence = 0;
  int64_t offset = 0;           // the most frequent argmax offset (self-attention maps)
  double offset_share = 0;      // its share of the scored rows in which the offset exists
  double offset_share_all = 0;  // its share of all scored rows
  int64_t offset_rows = 0;      // the scored rows in which the offset exists
  bool positional = false;
  double eos = std::numeric_limits<double>::quiet_NaN();  // argmax on the key side's <eos> (NaN: none)
  double first = 0;  // argmax on key 0 (causal maps: the LM's first token, the decoder's <bos>)
  std::vector<RelationScore> relations;  // empty without parses (and for cross maps)
  double rare = std::numeric_limits<double>::quiet_NaN();         // NaN: no frequencies
  double rare_chance = std::numeric_limits<double>::quiet_NaN();
  double alignment = std::numeric_limits<double>::quiet_NaN();    // cross maps with alignments
  double alignment_reading = std::numeric_limits<double>::quiet_NaN();
  // Importance (filled by analyse_checkpoint_heads for translation checkpoints): the change
  // when this head alone is masked (masked minus unmasked). NaN: not measured.
  double delta_loss = std::numeric_limits<double>::quiet_NaN();
  double delta_bleu = std::numeric_limits<double>::quiet_NaN();
  bool pruned = false;  // removed by the greedy pruning within the BLEU budget
  std::vector<std::string> roles;  // "positional -1", "syntactic nsubj dep->head", "rare words", "alignment"
};

struct HeadAnalysisOptions {
  double positional_share = 0.90;  // Voita et al.
  double min_offset_coverage = 0.5;  // an offset must exist in this share of the rows to be tested
  double syntactic_margin = 0.10;  // accuracy points above the positional baseline
  int64_t min_instances = 20;      // fewer instances: no syntactic verdict
  double rare_threshold = 0.5;     // rare-word role: rare >= this and >= 2 x chance
  double alignment_threshold = 0.5;
  double eos_threshold = 0.5;
  double first_threshold = 0.5;
  std::vector<std::string> relations = {"nsubj", "dobj", "amod", "advmod"};
};

// Every head of every map, in map order then head order. All sentences must carry the same
// maps (names, kinds and head counts). Errors: no sentences, maps that differ between
// sentences, gold annotations that do not fit the snapshot (word counts, indices, lengths).
std::vector<HeadMetrics> analyse_heads(const std::vector<HeadSentence>& sentences,
                                       const HeadAnalysisOptions& opt = {});

// Roles: "positional -1" (and "previous token"), "syntactic nsubj dep->head", "rare words",
// "alignment", "<eos> sink", "first-token sink", "removable" (pruned within the BLEU budget).
// Recomputes `roles` from the metrics (called by analyse_heads; again after importance is
// filled in, so pruned heads show it).
void assign_roles(HeadMetrics& m, const HeadAnalysisOptions& opt = {});

// The viewer's --analysis format ({"heads": [{"name", "layer", "head", "kind", "roles",
// "confidence"}, ...]}) with every metric added per head.
nlohmann::json heads_to_json(const std::vector<HeadMetrics>& heads);

// ---- checkpoints (`qiusuo heads`, src/apps/heads_run.cpp, heads_report.cpp)

struct HeadsOptions {
  // "" (default): the checkpoint's own held-out data. Translation: "synthetic" (the synthetic
  // test split, regenerated from the checkpoint's seeds) or a parallel corpus file (.jsonl or
  // .tsv as written by `qiusuo mt-data`). LM: "corpus" (the test split of the corpus the model
  // was trained on) or a UTF-8 text file.
  std::string data;
  int64_t sentences = 500;             // analysed sentences (LM: lines, each cut to max_tokens)
  int64_t max_tokens = 64;             // LM: tokens per line at most
  int64_t importance_sentences = 200;  // translation: pairs for the masking runs (0: no importance)
  double bleu_budget = 0.5;            // pruning: BLEU may fall at most this far below the full model
  int threads = 0;
  bool quiet = false;
  HeadAnalysisOptions analysis;
};

struct HeadsReport {
  std::string checkpoint, model_kind;  // "mt" or "lm"
  int64_t step = 0, sentences = 0;
  std::string data;                    // what was analysed, in words
  std::vector<HeadMetrics> heads;
  // Importance (translation): the unmasked model on the importance pairs, then greedy pruning
  // in order of increasing single-head loss change; a head stays removed when BLEU stays
  // within bleu_budget of the full model, otherwise it is restored and the next one is tried.
  bool has_importance = false;
  int64_t importance_sentences = 0;
  double base_loss = 0, base_bleu = 0, pruned_bleu = 0, pruned_loss = 0, bleu_budget = 0.5;
  int64_t removable = 0;
  std::vector<std::string> notes;  // limits of this analysis, in sentences
};

// Loads a checkpoint of `qiusuo train mt` or `qiusuo train lm` and analyses every head.
// Errors: an unreadable checkpoint or one of another kind, data that cannot be read, a
// parallel corpus without parses where syntax is asked for (it is analysed without).
HeadsReport analyse_checkpoint_heads(const std::string& checkpoint, const HeadsOptions& opt);

// heads.md: a table per attention type, the importance summary and the handbook's claim
// beside the measurement. `command` is quoted as the command that made it.
std::string heads_markdown(const HeadsReport& r, const std::string& command);
// heads.svg: per attention type a grid layers x heads, each cell labelled with its roles.
std::string heads_svg(const HeadsReport& r);
// heads_to_json plus the report's summary fields.
nlohmann::json heads_report_json(const HeadsReport& r);
// Writes heads.json, heads.md and heads.svg into `dir` (created); returns the paths.
std::vector<std::string> write_heads_report(const HeadsReport& r, const std::string& dir, const std::string& command);

}  // namespace qs::apps
