// BPE training: merges learned from word counts with incremental pair counts.
//
// Each distinct pre-tokenized word is kept once with its count. pair_count holds, for every
// adjacent pair of symbols, the number of its occurrences over the corpus; where_ lists
// the words that (may) contain it. A merge rewrites only the words in its list and
// updates the counts of the pairs around each rewrite, so one merge costs time in the
// number of words it touches, not in the corpus size. A max-heap of (count, pair) with
// lazy deletion picks the next merge: an entry whose count is stale is re-pushed.
#include <algorithm>
#include <queue>
#include <unordered_set>

#include "qiusuo/error.h"
#include "qiusuo/text/tokenizer.h"

namespace qs::text {
namespace {

uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }

struct Word {
  std::vector<int32_t> sym;
  int64_t freq;
};

struct Candidate {
  int64_t count;
  int32_t l, r;
};

// The text between occurrences of the special tokens (which are never learned from).
std::vector<std::string_view> split_on(std::string_view text, const std::vector<std::string>& specials) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (true) {
    size_t best = std::string_view::npos, len = 0;
    for (const std::string& s : specials) {
      size_t at = text.find(s, pos);
      if (at < best || (at == best && at != std::string_view::npos && s.size() > len))
        std::tie(best, len) = std::pair(at, s.size());
    }
    if (best == std::string_view::npos) break;
    parts.push_back(text.substr(pos, best - pos));
    pos = best + len;
  }
  parts.push_back(text.substr(pos));
  return parts;
}

class Trainer {
 public:
  Trainer(std::string_view corpus, const std::vector<std::string>& specials) {
    for (int b = 0; b < 256; ++b) add_token(std::string(1, char(b)));
    std::unordered_map<std::string_view, int64_t> counts;
    for (std::string_view segment : split_on(corpus, specials))
      for (std::string_view w : pretokenize(segment)) ++counts[w];
    std::vector<std::pair<std::string_view, int64_t>> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end());  // word order fixed, independent of hashing
    words_.reserve(sorted.size());
    for (auto& [w, f] : sorted) {
      Word word{std::vector<int32_t>(w.size()), f};
      for (size_t i = 0; i < w.size(); ++i) word.sym[i] = uint8_t(w[i]);
      words_.push_back(std::move(word));
    }
    for (int32_t wi = 0; wi < int32_t(words_.size()); ++wi) add_pairs(wi, +1, nullptr);
    for (auto& [key, count] : pair_count_) push(key, count);
  }

  // Merges until `vocab_size` tokens or the best pair is rarer than min_frequency.
  void run(int32_t vocab_size, int64_t min_frequency) {
    while (int32_t(vocab_.size()) < vocab_size && !heap_.empty()) {
      Candidate top = heap_.top();
      heap_.pop();
      uint64_t key = pair_key(top.l, top.r);
      int64_t now = pair_count_[key];
      if (now != top.count) {  // stale: counts changed since it was pushed
        if (now > 0) heap_.push({now, top.l, top.r});
        continue;
      }
      if (now < min_frequency) break;
      merge(top.l, top.r);
    }
  }

  BpeTokenizer result(const std::vector<std::string>& specials) {
    std::vector<BpeTokenizer::AddedToken> added;
    for (const std::string& s : specials) added.push_back({s, int32_t(vocab_.size() + added.size()), true});
    return BpeTokenizer(std::move(vocab_), std::move(merges_), {}, std::move(added));
  }

 private:
  int32_t add_token(std::string bytes) {
    auto [it, fresh] = ids_.emplace(bytes, int32_t(vocab_.size()));
    if (fresh) vocab_.push_back(std::move(bytes));
    return it->second;
  }

  // Adds (sign +1) or removes (-1) word wi's adjacent pairs from the counts; with
  // `touched`, records the pairs that contain symbol `fresh_id`.
  void add_pairs(int32_t wi, int sign, std::unordered_set<uint64_t>* touched, int32_t fresh_id = -1) {
    const Word& w = words_[wi];
    for (size_t i = 0; i + 1 < w.sym.size(); ++i) {
      uint64_t key = pair_key(w.sym[i], w.sym[i + 1]);
      pair_count_[key] += sign * w.freq;
      if (sign < 0) continue;
      std::vector<int32_t>& list = where_[key];
      if (list.empty() || list.back() != wi) list.push_back(wi);
      if (touched && (w.sym[i] == fresh_id || w.sym[i + 1] == fresh_id)) touched->insert(key);
    }
  }

  void merge(int32_t l, int32_t r) {
    int32_t id = add_token(vocab_[l] + vocab_[r]);  // an existing token keeps its id
    merges_.push_back({l, r});
    uint64_t key = pair_key(l, r);
    std::vector<int32_t> list = std::move(where_[key]);
    where_.erase(key);
    std::unordered_set<uint64_t> touched;
    for (int32_t wi : list) {
      std::vector<int32_t>& s = words_[wi].sym;
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == l && s[i + 1] == r;
      if (!has) continue;  // a stale entry: an earlier merge rewrote this pair away
      add_pairs(wi, -1, nullptr);
      size_t j = 0;
      for (size_t i = 0; i < s.size();) {
        bool hit = i + 1 < s.size() && s[i] == l && s[i + 1] == r;
        s[j++] = hit ? id : s[i];
        i += hit ? 2 : 1;
      }
      s.resize(j);
      add_pairs(wi, +1, &touched, id);
    }
    std::vector<uint64_t> order(touched.begin(), touched.end());
    std::sort(order.begin(), order.end());
    for (uint64_t k : order) push(k, pair_count_[k]);
  }

  void push(uint64_t key, int64_t count) {
    if (count > 0) heap_.push({count, int32_t(key >> 32), int32_t(uint32_t(key))});
  }

  // Max-heap order: higher count first, then the lexicographically smaller
  // (left bytes, right bytes).
  struct Lower {
    const std::vector<std::string>* vocab;
    bool operator()(const Candidate& a, const Candidate& b) const {
      if (a.count != b.count) return a.count < b.count;
      const auto& v = *vocab;
      if (v[a.l] != v[b.l]) return v[a.l] > v[b.l];
      return v[a.r] > v[b.r];
    }
  };

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::vector<Word> words_;
  std::unordered_map<uint64_t, int64_t> pair_count_;
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;
  std::priority_queue<Candidate, std::vector<Candidate>, Lower> heap_{Lower{&vocab_}};
};

}  // namespace

BpeTokenizer BpeTokenizer::train(std::string_view corpus, int32_t vocab_size, int64_t min_frequency,
                                 const std::vector<std::string>& special_tokens) {
  int32_t k = int32_t(special_tokens.size());
  QS_CHECK(vocab_size >= 256 + k, "bpe train: expected vocab_size >= 256 (the byte symbols) + {} special tokens, "
           "found {}", k, vocab_size);
  QS_CHECK(min_frequency >= 1, "bpe train: expected min_frequency >= 1, found {}", min_frequency);
  for (const std::string& s : special_tokens)
    QS_CHECK(!s.empty(), "bpe train: expected non-empty special tokens, found \"\"");
  Trainer t(corpus, special_tokens);
  t.run(vocab_size - k, min_frequency);
  return t.result(special_tokens);
}

}  // namespace qs::text
