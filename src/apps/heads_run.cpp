// `qiusuo heads` on a checkpoint: captures attention over many sentences (translation pairs
// with gold parses and alignments, or lines of an LM's corpus), scores every head
// (apps/heads.cpp) and, for translation, measures importance by masking heads.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <memory>
#include <unordered_map>

#include <fmt/format.h>

#include "qiusuo/apps/heads.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/apps/mt.h"
#include "qiusuo/autograd.h"
#include "qiusuo/error.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/nn/head_mask.h"
#include "qiusuo/ops.h"
#include "qiusuo/text/tokenizer.h"

namespace qs::apps {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

using Counts = std::unordered_map<std::string, double>;

Counts count_words(const std::vector<text::ParallelExample>& pairs, bool source) {
  Counts c;
  for (const auto& p : pairs)
    for (const std::string& w : source ? p.src : p.tgt) c[w] += 1;
  return c;
}

std::vector<double> word_freq(const std::vector<std::string>& words, const Counts& c, int64_t before, int64_t after) {
  std::vector<double> f(size_t(before), kInf);
  for (const std::string& w : words) {
    auto it = c.find(w);
    f.push_back(it == c.end() ? 0.0 : it->second);
  }
  f.insert(f.end(), size_t(after), kInf);
  return f;
}

std::vector<text::ParallelExample> mt_pairs(const LoadedMt& mt, const text::MtSplits& splits, const HeadsOptions& opt,
                                           std::string& what) {
  std::vector<text::ParallelExample> pairs;
  if (opt.data.empty() || opt.data == "synthetic") {
    QS_CHECK(mt.data.data == "synthetic", "heads: the checkpoint was trained on files ({}, {}), not synthetic data; "
             "give --data FILE", mt.data.src_file, mt.data.tgt_file);
    pairs = splits.test;
    what = "the synthetic test split (unseen pairs)";
  } else {
    const bool tsv = opt.data.size() > 4 && opt.data.substr(opt.data.size() - 4) == ".tsv";
    pairs = tsv ? text::read_parallel_tsv(opt.data) : text::read_parallel_jsonl(opt.data);
    what = opt.data;
  }
  QS_CHECK(!pairs.empty(), "heads: no sentence pairs in {}", what);
  if (opt.sentences > 0 && int64_t(pairs.size()) > opt.sentences) pairs.resize(size_t(opt.sentences));
  return pairs;
}

HeadSentence mt_sentence(LoadedMt& mt, const text::ParallelExample& p, const Counts& src_c, const Counts& tgt_c) {
  HeadSentence s;
  s.snap = capture_attention(mt, p.src, p.tgt);
  s.source.eos = int64_t(p.src.size());
  s.source.head = p.src_head, s.source.rel = p.src_rel;
  s.source.freq = word_freq(p.src, src_c, 0, 1);
  s.target.first = 1;
  s.target.head = p.tgt_head, s.target.rel = p.tgt_rel;
  s.target.freq = word_freq(p.tgt, tgt_c, 1, 0);
  s.align = p.align;
  return s;
}

// The model's attention layers by capture name, in forward (snapshot) order.
std::vector<std::pair<std::string, nn::MultiheadAttention*>> mt_layers(nn::Seq2SeqTransformer& m) {
  std::vector<std::pair<std::string, nn::MultiheadAttention*>> out;
  for (size_t i = 0; i < m.encoder_blocks().size(); ++i) {
    auto* a = dynamic_cast<nn::MultiheadAttention*>(&m.encoder_blocks()[i]->attention());
    QS_CHECK(a, "heads: encoder block {} has no MultiheadAttention", i);
    out.emplace_back(fmt::format("encoder.blocks.{}.self_attn", i), a);
  }
  for (size_t i = 0; i < m.decoder_blocks().size(); ++i) {
    out.emplace_back(fmt::format("decoder.blocks.{}.self_attn", i), &m.decoder_blocks()[i]->self_attn());
    out.emplace_back(fmt::format("decoder.blocks.{}.cross_attn", i), &m.decoder_blocks()[i]->cross_attn());
  }
  return out;
}

// The keep/remove state of every head; masks are applied (nn::HeadMask) for one evaluation.
struct Masks {
  std::vector<std::pair<std::string, nn::MultiheadAttention*>> layers;
  std::unordered_map<std::string, std::vector<double>> keep;  // per layer: 1 keep, 0 removed
  std::vector<std::unique_ptr<nn::HeadMask>> applied() const {
    std::vector<std::unique_ptr<nn::HeadMask>> out;
    for (const auto& [name, a] : layers) {
      const auto& k = keep.at(name);
      if (std::any_of(k.begin(), k.end(), [](double v) { return v != 1.0; }))
        out.push_back(std::make_unique<nn::HeadMask>(*a, k));
    }
    return out;
  }
};

void measure_importance(LoadedMt& mt, const std::vector<text::ParallelExample>& pairs, const HeadsOptions& opt,
                        HeadsReport& r) {
  Masks masks{mt_layers(*mt.model), {}};
  for (auto& [name, a] : masks.layers) masks.keep[name].assign(size_t(a->n_heads()), 1.0);
  auto eval = [&] {
    const auto scoped = masks.applied();
    return evaluate_mt(*mt.model, mt.src_vocab, mt.tgt_vocab, pairs);
  };
  const EvalMtResult base = eval();
  r.has_importance = true, r.importance_sentences = int64_t(pairs.size()), r.bleu_budget = opt.bleu_budget;
  r.base_loss = base.loss, r.base_bleu = base.bleu.score;
  std::vector<size_t> order;
  for (size_t i = 0; i < r.heads.size(); ++i) {
    HeadMetrics& h = r.heads[i];
    if (!masks.keep.count(h.name)) continue;
    masks.keep[h.name][size_t(h.head)] = 0.0;
    const EvalMtResult e = eval();
    masks.keep[h.name][size_t(h.head)] = 1.0;
    h.delta_loss = e.loss - base.loss, h.delta_bleu = e.bleu.score - base.bleu.score;
    order.push_back(i);
    if (!opt.quiet) std::cerr << fmt::format("  mask {} head {}: loss {:+.4f}, BLEU {:+.2f}\n", h.name, h.head,
                                             h.delta_loss, h.delta_bleu);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return r.heads[a].delta_loss < r.heads[b].delta_loss; });
  r.pruned_bleu = base.bleu.score, r.pruned_loss = base.loss;
  for (size_t i : order) {
    HeadMetrics& h = r.heads[i];
    masks.keep[h.name][size_t(h.head)] = 0.0;
    const EvalMtResult e = eval();
    if (e.bleu.score >= base.bleu.score - opt.bleu_budget) {
      h.pruned = true, r.removable += 1, r.pruned_bleu = e.bleu.score, r.pruned_loss = e.loss;
    } else {
      masks.keep[h.name][size_t(h.head)] = 1.0;
    }
  }
  for (HeadMetrics& h : r.heads) assign_roles(h, opt.analysis);
}

HeadsReport analyse_mt(const std::string& path, const HeadsOptions& opt) {
  LoadedMt mt = load_mt(path);
  HeadsReport r;
  r.checkpoint = path, r.model_kind = "mt", r.step = mt.step;
  const text::MtSplits splits = load_mt_data(mt.data);
  std::vector<text::ParallelExample> pairs = mt_pairs(mt, splits, opt, r.data);
  const Counts src_c = count_words(splits.train, true), tgt_c = count_words(splits.train, false);
  std::vector<HeadSentence> sents;
  bool syntax = true;
  for (const auto& p : pairs) {
    sents.push_back(mt_sentence(mt, p, src_c, tgt_c));
    syntax = syntax && p.has_syntax();
  }
  if (!syntax) r.notes.push_back("The pairs carry no parses or alignments: syntactic and alignment tests were skipped.");
  r.sentences = int64_t(sents.size());
  r.heads = analyse_heads(sents, opt.analysis);
  if (opt.importance_sentences > 0) {
    std::vector<text::ParallelExample> imp(pairs.begin(),
                                           pairs.begin() + std::min<int64_t>(int64_t(pairs.size()), opt.importance_sentences));
    measure_importance(mt, imp, opt, r);
  }
  return r;
}

// LM lines: each non-empty line of the text (cut to max_tokens tokens), up to `sentences`.
std::vector<std::vector<int32_t>> lm_lines(const text::Tokenizer& tok, std::string_view text, const HeadsOptions& opt) {
  std::vector<std::vector<int32_t>> out;
  size_t start = 0;
  while (start < text.size() && int64_t(out.size()) < opt.sentences) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::vector<int32_t> ids = tok.encode(std::string(text.substr(start, end - start)));
    if (int64_t(ids.size()) > opt.max_tokens) ids.resize(size_t(opt.max_tokens));
    if (ids.size() >= 2) out.push_back(std::move(ids));
    start = end + 1;
  }
  return out;
}

HeadsReport analyse_lm(const std::string& path, const HeadsOptions& opt) {
  LoadedLm lm = load_lm(path);
  HeadsReport r;
  r.checkpoint = path, r.model_kind = "lm", r.step = lm.step;
  const std::string corpus_name = lm.train_config.value("corpus", std::string("kjv"));
  text::TextCorpus corpus = open_corpus(corpus_name);
  const bool own = opt.data.empty() || opt.data == "corpus";
  const std::string eval_text = own ? std::string(corpus.split(text::Split::test))
                                    : text::TextCorpus::from_path(opt.data).text();
  r.data = own ? fmt::format("the test split of {}", corpus_name) : opt.data;
  // Token frequencies from (at most the first 2 MB of) the training split.
  std::unordered_map<int32_t, double> freq;
  std::string_view train = corpus.split(text::Split::train);
  for (int32_t id : lm.tokenizer->encode(std::string(train.substr(0, std::min<size_t>(train.size(), 2 << 20)))))
    freq[id] += 1;
  std::vector<HeadSentence> sents;
  for (auto& ids : lm_lines(*lm.tokenizer, eval_text, opt)) {
    HeadSentence s;
    s.snap = capture_attention_ids(*lm.model, *lm.tokenizer, ids);
    for (int32_t id : ids) s.target.freq.push_back(freq.count(id) ? freq[id] : 0.0);
    sents.push_back(std::move(s));
  }
  QS_CHECK(!sents.empty(), "heads: no lines of at least two tokens in {}", r.data);
  r.sentences = int64_t(sents.size());
  r.heads = analyse_heads(sents, opt.analysis);
  r.notes.push_back(fmt::format("A language model on {}: the corpus has no parses, so the syntactic tests (which "
                                "need gold dependency parses) were not run; no alignment or importance either.",
                                corpus_name));
  r.notes.push_back("Token frequencies for the rare-word test come from the first 2 MB of the training split.");
  return r;
}

}  // namespace

HeadsReport analyse_checkpoint_heads(const std::string& checkpoint, const HeadsOptions& opt) {
  if (opt.threads > 0) set_num_threads(opt.threads);
  QS_CHECK(opt.sentences > 0, "heads: --sentences must be positive, got {}", opt.sentences);
  const io::Checkpoint ck = io::load_checkpoint(checkpoint);
  const std::string kind = ck.config.is_object() ? ck.config.value("kind", std::string()) : std::string();
  NoGrad ng;
  if (kind == "qiusuo-mt") return analyse_mt(checkpoint, opt);
  return analyse_lm(checkpoint, opt);  // load_lm names other kinds in its error
}

}  // namespace qs::apps
