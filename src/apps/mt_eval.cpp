// Using a trained translation model: loading a checkpoint, loss and BLEU on held-out
// pairs, translating sentences.
#include <algorithm>
#include <numeric>
#include <sstream>

#include "apps/mt_internal.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::apps {

void check_mt_checkpoint(const io::Checkpoint& ck, const std::string& path) {
  if (ck.config.is_object() && ck.config.value("kind", "") == kMtCheckpointKind && ck.config.contains("model") &&
      ck.extra.is_object() && ck.extra.contains("src_vocab") && ck.extra.contains("tgt_vocab"))
    return;
  std::string what = ck.config.is_object() && ck.config.contains("kind") && ck.config["kind"].is_string()
                         ? "a " + ck.config["kind"].get<std::string>() + " checkpoint"
                         : "not a translation checkpoint";
  throw Error(fmt::format("{}: {} (config: {}); hint: use a checkpoint written by 'qiusuo train mt'", path, what,
                          ck.config.dump().substr(0, 200)));
}

LoadedMt load_mt(const std::string& path) {
  io::Checkpoint ck = io::load_checkpoint(path);
  check_mt_checkpoint(ck, path);
  LoadedMt mt;
  nn::Seq2SeqConfig cfg;
  try {
    mt.src_vocab = WordVocab::from_json(ck.extra["src_vocab"]);
    mt.tgt_vocab = WordVocab::from_json(ck.extra["tgt_vocab"]);
    cfg = nn::Seq2SeqConfig::from_json(ck.config["model"]);
    cfg.validate();
    mt.data = MtDataOptions::from_json(ck.config.value("data", nlohmann::json::object()));
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: the stored config or vocabularies cannot be used: {}", path, e.what()));
  }
  QS_CHECK(cfg.src_vocab == mt.src_vocab.size() && cfg.tgt_vocab == mt.tgt_vocab.size(),
           "{}: the model has vocabularies of {} and {} words but the checkpoint stores {} and {}; it is inconsistent",
           path, cfg.src_vocab, cfg.tgt_vocab, mt.src_vocab.size(), mt.tgt_vocab.size());
  Generator gen(0);
  // At least both embeddings and two norm vectors per encoder and decoder layer, in f32.
  io::check_config_fits(path, ck, 4.0 * double(cfg.d_model) *
                                      (double(cfg.src_vocab) + double(cfg.tgt_vocab) +
                                       2.0 * (double(cfg.enc_layers) + double(cfg.dec_layers))));
  mt.model = std::make_unique<nn::Seq2SeqTransformer>(cfg, gen);
  try {
    mt.model->load_state_dict(ck.model);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: the weights do not fit the model config: {}", path, e.what()));
  }
  mt.model->eval();
  mt.train_config = ck.config.value("train", nlohmann::json::object());
  mt.step = ck.step;
  return mt;
}

namespace {
std::string join(const std::vector<std::string>& w) {
  std::string s;
  for (size_t i = 0; i < w.size(); ++i) s += (i ? " " : "") + w[i];
  return s;
}
}  // namespace

EvalMtResult evaluate_mt(nn::Seq2SeqTransformer& model, const WordVocab& src, const WordVocab& tgt,
                         const std::vector<text::ParallelExample>& pairs, int64_t beam, int64_t max_sentences,
                         int64_t batch) {
  QS_CHECK(!pairs.empty(), "evaluate mt: no sentence pairs to evaluate");
  QS_CHECK(beam >= 1 && batch >= 1, "evaluate mt: beam and batch must be >= 1, got {} and {}", beam, batch);
  NoGrad ng;
  nn::EvalScope eval_mode(model);
  const std::vector<MtIds> data = encode_pairs(pairs, src, tgt);
  // Sorted by source length, so batches pad little and finish together.
  std::vector<size_t> order(data.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return data[a].src.size() < data[b].src.size(); });
  EvalMtResult r;
  double nll = 0;
  for (size_t i = 0; i < order.size(); i += size_t(batch)) {
    std::vector<size_t> rows(order.begin() + long(i), order.begin() + long(std::min(order.size(), i + size_t(batch))));
    MtBatch b = make_batch(data, rows);
    Tensor logits = model.forward(b.src, b.tgt_in);
    nll += cross_entropy(logits.reshape({-1, logits.size(-1)}), b.tgt_out.reshape({-1}), WordVocab::kPad, 0.0, "sum")
               .item();
    r.tokens += b.tokens;
  }
  r.loss = nll / double(r.tokens);
  const size_t n = max_sentences > 0 ? std::min(data.size(), size_t(max_sentences)) : data.size();
  std::vector<std::string> hyps(n), refs(n);
  std::vector<size_t> first(n);
  std::iota(first.begin(), first.end(), size_t(0));
  std::stable_sort(first.begin(), first.end(), [&](size_t a, size_t b) { return data[a].src.size() < data[b].src.size(); });
  for (size_t i = 0; i < n; i += size_t(batch)) {
    const size_t end = std::min(n, i + size_t(batch));
    std::vector<std::vector<int64_t>> sources;
    for (size_t k = i; k < end; ++k) sources.push_back(data[first[k]].src);
    std::vector<std::vector<int64_t>> out;
    if (beam == 1) {
      out = model.greedy(sources, WordVocab::kBos, WordVocab::kEos);
    } else {
      for (auto& s : sources) out.push_back(model.beam_search(s, beam, WordVocab::kBos, WordVocab::kEos));
    }
    for (size_t k = i; k < end; ++k) hyps[first[k]] = join(tgt.decode(out[k - i]));
  }
  for (size_t k = 0; k < n; ++k) refs[k] = join(pairs[k].tgt);
  r.bleu = text::corpus_bleu(hyps, {refs});
  r.sentences = int64_t(n);
  return r;
}

std::vector<std::string> translate(LoadedMt& mt, const std::vector<std::string>& source, int64_t beam) {
  QS_CHECK(!source.empty(), "translate: the sentence is empty; hint: --text \"the dog sees a cat\"");
  QS_CHECK(beam >= 1, "translate: --beam must be >= 1, got {}", beam);
  std::vector<int64_t> ids = mt.src_vocab.encode(source);
  ids.push_back(WordVocab::kEos);
  QS_CHECK(int64_t(ids.size()) <= mt.model->config().max_len,
           "translate: the sentence has {} words but the model takes at most {}", source.size(),
           mt.model->config().max_len - 1);
  std::vector<int64_t> out = beam == 1 ? mt.model->greedy({ids}, WordVocab::kBos, WordVocab::kEos)[0]
                                       : mt.model->beam_search(ids, beam, WordVocab::kBos, WordVocab::kEos);
  return mt.tgt_vocab.decode(out);
}

std::string translate(LoadedMt& mt, const std::string& text, int64_t beam) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return join(translate(mt, words, beam));
}

}  // namespace qs::apps
