// Decoding for the encoder-decoder: batched greedy search and beam search, both encoding
// the source once and extending the decoder's KV cache one token at a time.
#include <algorithm>
#include <cmath>
#include <limits>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/seq2seq.h"
#include "qiusuo/ops.h"

namespace qs::nn {

namespace {

Tensor ids_tensor(const std::vector<int64_t>& ids) {
  return from_vector(std::vector<double>(ids.begin(), ids.end()), {int64_t(ids.size()), 1}, DType::i64);
}

// The caches' rows reordered (and duplicated) by `rows`: beam search keeps each surviving
// hypothesis's history.
void reorder(KVCacheSet& cache, const std::vector<int64_t>& rows) {
  const Tensor index = from_vector(std::vector<double>(rows.begin(), rows.end()), {int64_t(rows.size())}, DType::i64);
  for (LayerKVCache& l : cache.layers) {
    LayerKVCache fresh;
    fresh.append(index_select(l.k, 0, index), index_select(l.v, 0, index));
    l = std::move(fresh);
  }
}

}  // namespace

int64_t Seq2SeqTransformer::max_new_for(int64_t src_len, int64_t max_new) const {
  int64_t n = max_new > 0 ? max_new : 2 * src_len + 10;
  return std::min(n, cfg_.max_len - 1);  // the decoder input holds bos + n - 1 tokens
}

std::vector<std::vector<int64_t>> Seq2SeqTransformer::greedy(const std::vector<std::vector<int64_t>>& sources,
                                                             int64_t bos, int64_t eos, int64_t max_new) {
  QS_CHECK(!sources.empty(), "Seq2SeqTransformer::greedy: no sources given");
  int64_t s_max = 0;
  for (const auto& s : sources) {
    QS_CHECK(!s.empty(), "Seq2SeqTransformer::greedy: an empty source sentence");
    QS_CHECK(int64_t(s.size()) <= cfg_.max_len, "Seq2SeqTransformer::greedy: a source of {} tokens exceeds max_len {}",
             s.size(), cfg_.max_len);
    s_max = std::max<int64_t>(s_max, int64_t(s.size()));
  }
  const int64_t b = int64_t(sources.size());
  std::vector<double> flat(size_t(b * s_max), double(cfg_.pad_id));
  for (int64_t i = 0; i < b; ++i)
    std::copy(sources[size_t(i)].begin(), sources[size_t(i)].end(), flat.begin() + i * s_max);
  NoGrad ng;
  const Tensor src = from_vector(flat, {b, s_max}, DType::i64);
  const Tensor memory = encode(src), mask = padding_mask(src);
  KVCacheSet cache = make_cache();
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(b));
  std::vector<bool> done(size_t(b), false);
  std::vector<int64_t> next(size_t(b), bos);
  const int64_t steps = max_new_for(s_max, max_new);
  for (int64_t t = 0; t < steps; ++t) {
    Tensor logits = decode(ids_tensor(next), memory, mask, &cache);  // [B, 1, V]
    std::vector<double> best = argmax(logits.select(1, 0), -1).to_vector();
    bool all = true;
    for (int64_t i = 0; i < b; ++i) {
      next[size_t(i)] = int64_t(best[size_t(i)]);
      if (done[size_t(i)]) continue;
      if (next[size_t(i)] == eos)
        done[size_t(i)] = true;
      else
        out[size_t(i)].push_back(next[size_t(i)]);
      all = all && done[size_t(i)];
    }
    if (all) break;
  }
  return out;
}

namespace {

struct Hyp {
  std::vector<int64_t> ids;
  double score;  // sum of log-probabilities; -inf marks an empty slot
};
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// One beam step: the best 2k extensions of the live hypotheses by their log-probabilities
// lp [k, V]; those ending in eos move to `finished`, up to k others stay live. Returns the
// new live set (padded to k with empty slots) and in `rows` the beam each one came from.
std::vector<Hyp> extend_beams(const std::vector<Hyp>& live, const std::vector<double>& lp, int64_t v, int64_t eos,
                              std::vector<Hyp>& finished, std::vector<int64_t>& rows) {
  struct Cand {
    double score;
    int64_t beam, token;
  };
  const int64_t k = int64_t(live.size());
  std::vector<Cand> cands;
  for (int64_t b = 0; b < k; ++b) {
    if (live[size_t(b)].score == kNegInf) continue;
    for (int64_t tok = 0; tok < v; ++tok) cands.push_back({live[size_t(b)].score + lp[size_t(b * v + tok)], b, tok});
  }
  const size_t keep = std::min(cands.size(), size_t(2 * k));
  std::partial_sort(cands.begin(), cands.begin() + long(keep), cands.end(),
                    [](const Cand& a, const Cand& b) { return a.score > b.score; });
  std::vector<Hyp> out;
  rows.clear();
  for (size_t c = 0; c < keep && int64_t(out.size()) < k; ++c) {
    Hyp h = live[size_t(cands[c].beam)];
    h.score = cands[c].score;
    if (cands[c].token == eos) {
      finished.push_back(std::move(h));
      continue;
    }
    h.ids.push_back(cands[c].token);
    out.push_back(std::move(h));
    rows.push_back(cands[c].beam);
  }
  while (!out.empty() && int64_t(out.size()) < k) out.push_back(Hyp{{}, kNegInf}), rows.push_back(rows[0]);
  return out;
}

// Length-normalised: sum log p / (tokens + eos); unfinished hypotheses count without eos
// and are used only when none finished.
std::vector<int64_t> best_hypothesis(const std::vector<Hyp>& finished, const std::vector<Hyp>& live) {
  auto norm = [](const Hyp& h, bool with_eos) { return h.score / double(h.ids.size() + (with_eos ? 1 : 0)); };
  const Hyp* best = nullptr;
  double best_score = kNegInf;
  for (const Hyp& h : finished)
    if (norm(h, true) > best_score) best = &h, best_score = norm(h, true);
  if (!best)
    for (const Hyp& h : live)
      if (h.score != kNegInf && !h.ids.empty() && norm(h, false) > best_score) best = &h, best_score = norm(h, false);
  return best ? best->ids : std::vector<int64_t>{};
}

}  // namespace

std::vector<int64_t> Seq2SeqTransformer::beam_search(const std::vector<int64_t>& source, int64_t k, int64_t bos,
                                                     int64_t eos, int64_t max_new) {
  QS_CHECK(k >= 1, "Seq2SeqTransformer::beam_search: beam width must be >= 1, got {}", k);
  QS_CHECK(!source.empty() && int64_t(source.size()) <= cfg_.max_len,
           "Seq2SeqTransformer::beam_search: the source must have 1..{} tokens, got {}", cfg_.max_len, source.size());
  NoGrad ng;
  const Tensor src = from_vector(std::vector<double>(source.begin(), source.end()), {1, int64_t(source.size())},
                                 DType::i64);
  const Tensor zeros_k = from_vector(std::vector<double>(size_t(k), 0.0), {k}, DType::i64);
  const Tensor memory = index_select(encode(src), 0, zeros_k), mask = index_select(padding_mask(src), 0, zeros_k);
  KVCacheSet cache = make_cache();
  std::vector<Hyp> live(size_t(k), Hyp{{}, kNegInf}), finished;
  live[0].score = 0;  // one start hypothesis; the empty slots only pad the batch
  std::vector<int64_t> next(size_t(k), bos), rows;
  const int64_t steps = max_new_for(int64_t(source.size()), max_new);
  for (int64_t t = 0; t < steps && int64_t(finished.size()) < k; ++t) {
    Tensor logp = log_softmax(decode(ids_tensor(next), memory, mask, &cache).select(1, 0).to(DType::f64), -1);
    std::vector<Hyp> extended = extend_beams(live, logp.to_vector(), logp.size(1), eos, finished, rows);
    if (extended.empty()) break;
    live = std::move(extended);
    for (size_t i = 0; i < live.size(); ++i) next[i] = live[i].ids.empty() ? bos : live[i].ids.back();
    reorder(cache, rows);
  }
  return best_hypothesis(finished, live);
}

}  // namespace qs::nn
