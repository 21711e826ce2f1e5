// The translation jobs behind `qiusuo train mt`, `qiusuo eval mt`, `qiusuo translate` and
// `qiusuo mt-data`: an encoder-decoder Transformer (nn::Seq2SeqTransformer) trained with
// teacher forcing on sentence pairs, evaluated with corpus BLEU (text::corpus_bleu).
//
// Data: the synthetic task (text/synthetic_mt.h: gold parses and alignments, regenerated
// from the seed stored in the checkpoint) or a real parallel corpus (two aligned text
// files; every 20th line goes to validation, the next to test). Tokens are whole words
// (whitespace split), one token per word, so attention maps line up with the parses; the
// source gets <eos> appended, the decoder reads <bos> y_1 .. y_n and predicts y_1 .. <eos>.
// Real corpora are word-level too (no BPE here): rare words beyond the vocabulary become
// <unk>, and no alignments exist for them.
//
// A checkpoint (io::Checkpoint, config.kind "qiusuo-mt") holds the weights, the model config
// ("config.model"), the training settings ("config.train"), the data settings
// ("config.data"), both vocabularies ("extra.src_vocab", "extra.tgt_vocab") and, for an
// exact resume, the Adam state, the step and the generators' states.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "qiusuo/apps/attention_view.h"
#include "qiusuo/nn/seq2seq.h"
#include "qiusuo/text/bleu.h"
#include "qiusuo/text/synthetic_mt.h"

namespace qs::apps {

// A word-level vocabulary: ids 0..3 are <pad>, <unk>, <bos>, <eos>, then the words by
// descending count (ties alphabetical).
class WordVocab {
 public:
  static constexpr int64_t kPad = 0, kUnk = 1, kBos = 2, kEos = 3;
  WordVocab();  // the four specials only
  // Words occurring at least min_count times in `sentences`.
  static WordVocab build(const std::vector<std::vector<std::string>>& sentences, int64_t min_count = 1);
  int64_t size() const { return int64_t(words_.size()); }
  int64_t id(const std::string& word) const;  // kUnk when unknown
  const std::string& word(int64_t id) const;  // error outside [0, size)
  std::vector<int64_t> encode(const std::vector<std::string>& words) const;  // no specials added
  std::vector<std::string> decode(const std::vector<int64_t>& ids) const;   // drops pad/bos/eos, keeps <unk>
  nlohmann::json to_json() const;  // the word list in id order
  static WordVocab from_json(const nlohmann::json& j);  // errors on a list without the four specials first

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, int64_t> index_;
};

struct MtDataOptions {
  std::string data = "synthetic";    // "synthetic" | "files" (src_file + tgt_file)
  std::string src_file, tgt_file;
  text::SyntheticMtOptions synthetic;
  nlohmann::json to_json() const;
  static MtDataOptions from_json(const nlohmann::json& j);
};
// The train / validation / test splits the options name. Real corpora: line i goes to
// validation when i % 20 == 18, to test when i % 20 == 19 (errors under 20 lines).
text::MtSplits load_mt_data(const MtDataOptions& o);

struct TrainMtOptions {
  // src_vocab, tgt_vocab and pad_id come from the data. The model of the synthetic task:
  // head dim 16 (docs/results/heads/README.md: the sweep).
  nn::Seq2SeqConfig model{.d_model = 64, .n_heads = 4, .enc_layers = 2, .dec_layers = 2};
  MtDataOptions data;
  int64_t min_count = 1;          // vocabulary: words seen fewer times in training are <unk>
  int64_t batch = 64, steps = 4000;  // batch: sentence pairs per step (padded to the batch's longest)
  double lr = 2e-3, label_smoothing = 0.1, grad_clip = 1.0, min_lr_ratio = 0.05;
  int64_t warmup = 0;             // 0: min(400, steps / 10); then cosine decay to lr * min_lr_ratio
  int64_t eval_every = 500;       // validation loss and BLEU every N steps (0: only at the end)
  int64_t eval_sentences = 200;   // validation sentences translated for BLEU (0: all)
  int64_t test_sentences = 0;     // test sentences translated at the end (0: all)
  int64_t save_every = 0, stop_after = 0;
  uint64_t seed = 0;
  int threads = 0;
  bool quiet = false;
  std::string out_dir;            // step-<N>.safetensors and last.safetensors
  std::string resume;
};

struct EvalMtResult {
  double loss = 0;                // mean cross-entropy per target token, without label smoothing (nats, eos included)
  text::BleuScore bleu;
  int64_t sentences = 0, tokens = 0;
};

struct TrainMtResult {
  int64_t steps = 0;
  double seconds = 0, tokens_per_s = 0;  // target tokens (eos included) per second of training
  double final_train_loss = 0;
  EvalMtResult validation, test;
  std::vector<float> losses;
  std::vector<std::tuple<int64_t, double, double>> val_history;  // (step, validation loss, BLEU)
  std::string checkpoint;
};

TrainMtResult train_mt(const TrainMtOptions& opt);

struct LoadedMt {
  std::unique_ptr<nn::Seq2SeqTransformer> model;
  WordVocab src_vocab, tgt_vocab;
  MtDataOptions data;
  nlohmann::json train_config;
  int64_t step = 0;
};
// Errors: not a translation checkpoint (says what it is), an unusable config, weights that
// do not match it.
LoadedMt load_mt(const std::string& path);

// Teacher-forced loss over all pairs and corpus BLEU of greedy (beam 1) or beam-search
// translations of the first max_sentences pairs (0: all), under NoGrad in eval mode.
EvalMtResult evaluate_mt(nn::Seq2SeqTransformer& model, const WordVocab& src, const WordVocab& tgt,
                         const std::vector<text::ParallelExample>& pairs, int64_t beam = 1,
                         int64_t max_sentences = 0, int64_t batch = 64);

// Source words -> target words (greedy when beam == 1). Unknown source words become <unk>.
// Errors on an empty sentence or one longer than the model's max_len.
std::vector<std::string> translate(LoadedMt& mt, const std::vector<std::string>& source, int64_t beam = 1);
// Whitespace-split text -> space-joined translation.
std::string translate(LoadedMt& mt, const std::string& text, int64_t beam = 1);

// The attention of a loaded translation model on one sentence pair, labelled with words
// (see capture_attention in attention_view.h): source = the words + "<eos>", target side =
// "<bos>" + the target words. An empty `target` translates the source greedily first. Words
// outside the vocabularies are fed as <unk> but keep their own labels. For a synthetic pair,
// source index i and target index j + 1 (row j + 1 reads target word j) line up with
// ParallelExample's src / tgt indices i and j.
AttentionSnapshot capture_attention(LoadedMt& mt, const std::vector<std::string>& source,
                                    const std::vector<std::string>& target = {});

}  // namespace qs::apps
