// Byte-level BPE encoding and decoding (GPT-2 / Hugging Face semantics), and the byte
// tokenizer.
#include <algorithm>
#include <climits>
#include <functional>
#include <unordered_set>

#include "io/atomic_file.h"
#include "qiusuo/error.h"
#include "qiusuo/text/tokenizer.h"
#include "text/unicode.h"

namespace qs::text {
namespace {

uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }

void check_id(int32_t id, int32_t n, const char* who) {
  QS_CHECK(id >= 0 && id < n, "{}: decode: expected token ids in [0, {}), found {}", who, n, id);
}

}  // namespace

void Tokenizer::save(const std::string& path) const {
  std::string text = to_json();
  io::detail::AtomicFileWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = uint8_t(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    check_id(ids[i], 256, "byte tokenizer");
    out[i] = char(uint8_t(ids[i]));
  }
  return out;
}

std::string ByteTokenizer::to_json() const {
  return R"({"version":"1.0","model":{"type":"Byte","vocab_size":256}})";
}

BpeTokenizer::BpeTokenizer(std::vector<std::string> vocab, std::vector<std::pair<int32_t, int32_t>> merges,
                           Options options, std::vector<AddedToken> added)
    : vocab_(std::move(vocab)), merges_(std::move(merges)), options_(options), added_(std::move(added)) {
  QS_CHECK(vocab_.size() < size_t(INT32_MAX), "bpe: expected fewer than 2^31 tokens, found {}", vocab_.size());
  int32_t n = int32_t(vocab_.size());
  ids_.reserve(vocab_.size());
  for (int32_t id = 0; id < n; ++id) {
    QS_CHECK(!vocab_[id].empty(), "bpe: token {} is empty; expected one or more bytes", id);
    auto [it, fresh] = ids_.emplace(vocab_[id], id);
    QS_CHECK(fresh, "bpe: tokens {} and {} have the same bytes; expected distinct tokens", it->second, id);
  }
  for (int b = 0; b < 256; ++b) byte_id_[b] = token_id(std::string(1, char(b)));
  merge_rank_.reserve(merges_.size());
  for (size_t rank = 0; rank < merges_.size(); ++rank) {
    auto [l, r] = merges_[rank];
    QS_CHECK(l >= 0 && l < n && r >= 0 && r < n, "bpe: merge {}: expected token ids in [0, {}), found ({}, {})",
             rank, n, l, r);
    int32_t merged = token_id(vocab_[l] + vocab_[r]);
    QS_CHECK(merged >= 0, "bpe: merge {}: ({}, {}) makes a token that is not in the vocabulary", rank, l, r);
    merge_rank_.emplace(pair_key(l, r), std::pair{int32_t(rank), merged});  // a repeated pair keeps its first rank
  }
  check_added_tokens();
}

void BpeTokenizer::check_added_tokens() {
  int32_t n = int32_t(vocab_.size());
  std::vector<const AddedToken*> after;  // ids past the vocabulary
  std::unordered_set<std::string> seen;
  for (const AddedToken& t : added_) {
    QS_CHECK(!t.content.empty(), "bpe: added token {}: expected non-empty content", t.id);
    QS_CHECK(detail::first_invalid_utf8(t.content) == std::string::npos,
             "bpe: added token {}: expected UTF-8 content", t.id);
    QS_CHECK(seen.insert(t.content).second, "bpe: added token \"{}\" appears twice", t.content);
    if (t.id >= 0 && t.id < n)
      QS_CHECK(vocab_[t.id] == t.content, "bpe: added token \"{}\" has id {}, the vocabulary token \"{}\"; "
               "expected the same bytes, or an id after the vocabulary ({} ...)", t.content, t.id, vocab_[t.id], n);
    else
      after.push_back(&t);
  }
  std::sort(after.begin(), after.end(), [](auto* a, auto* b) { return a->id < b->id; });
  for (size_t k = 0; k < after.size(); ++k) {
    QS_CHECK(after[k]->id == n + int32_t(k), "bpe: added token \"{}\": expected id {} (the added tokens after a "
             "vocabulary of {} take the next ids in turn), found {}", after[k]->content, n + k, n, after[k]->id);
    extra_.push_back(after[k]->content);
  }
}

const std::string& BpeTokenizer::token_bytes(int32_t id) const {
  check_id(id, vocab_size(), "bpe");
  return id < int32_t(vocab_.size()) ? vocab_[id] : extra_[id - vocab_.size()];
}

int32_t BpeTokenizer::token_id(std::string_view bytes) const {
  auto it = ids_.find(std::string(bytes));
  return it == ids_.end() ? -1 : it->second;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (options_.ignore_merges) {
    if (int32_t id = token_id(word); id >= 0) return out.push_back(id);
  }
  std::vector<int32_t> sym(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    int32_t id = byte_id_[uint8_t(word[i])];
    QS_CHECK(id >= 0, "bpe: encode: byte 0x{:02x} has no token in the vocabulary (a byte-level vocabulary "
             "holds all 256 bytes)", uint8_t(word[i]));
    sym[i] = id;
  }
  // GPT-2's bpe(): merge the lowest-ranked adjacent pair, all its occurrences left to right,
  // until no adjacent pair is a merge. Rescanning the word for each merge is O(length x
  // merges) (a 10 MB word took 48 s); here the symbols form a linked list and the candidate
  // pairs a heap ordered by (rank, position), so a word costs O(length log length). One rank
  // is one pair, so the entries of the smallest rank are that pair's occurrences, popped left
  // to right; an entry whose symbols have changed is stale and skipped. The pairs a merge
  // creates join the heap only when its rank's pass is over, as in the rescanning loop (with a
  // merge list out of order, a new pair may rank lower than the pass).
  struct Node {
    int32_t id, prev, next;
  };
  struct Entry {
    int32_t rank, pos, left, right;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int32_t n = int32_t(sym.size());
  std::vector<Node> node;
  node.resize(size_t(n));
  for (int32_t i = 0; i < n; ++i) node[size_t(i)] = {sym[size_t(i)], i - 1, i + 1 < n ? i + 1 : -1};
  std::vector<Entry> heap;
  auto push = [&](int32_t i) {
    if (i < 0 || node[size_t(i)].next < 0) return;
    const Node& a = node[size_t(i)];
    auto it = merge_rank_.find(pair_key(a.id, node[size_t(a.next)].id));
    if (it == merge_rank_.end()) return;
    heap.push_back({it->second.first, i, a.id, node[size_t(a.next)].id});
    std::push_heap(heap.begin(), heap.end(), std::greater<Entry>());
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  std::vector<int32_t> pending;  // left ends of the pairs made during the current pass
  int32_t pass = -1;
  while (true) {
    if (heap.empty() || heap.front().rank != pass) {
      if (!pending.empty()) {
        for (int32_t i : pending) push(i);
        pending.clear();
        continue;
      }
      if (heap.empty()) break;
      pass = heap.front().rank;
    }
    std::pop_heap(heap.begin(), heap.end(), std::greater<Entry>());
    const Entry e = heap.back();
    heap.pop_back();
    Node& a = node[size_t(e.pos)];
    if (a.id != e.left || a.next < 0 || node[size_t(a.next)].id != e.right) continue;  // stale
    a.id = merge_rank_.at(pair_key(e.left, e.right)).second;
    const int32_t gone = a.next;
    a.next = node[size_t(gone)].next;
    if (a.next >= 0) node[size_t(a.next)].prev = e.pos;
    node[size_t(gone)].id = -1;  // unlinked: no entry can match it again
    pending.push_back(a.prev);
    pending.push_back(e.pos);
  }
  sym.clear();
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = node[size_t(i)].next) sym.push_back(node[size_t(i)].id);
  out.insert(out.end(), sym.begin(), sym.end());
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  // Added tokens first: the earliest match in the text (the longest where several start
  // there) is cut out; the text between matches is encoded as usual.
  std::vector<size_t> next(added_.size());
  for (size_t k = 0; k < added_.size(); ++k) next[k] = text.find(added_[k].content);
  size_t pos = 0;
  while (true) {
    const AddedToken* hit = nullptr;
    size_t best = std::string_view::npos;
    for (size_t k = 0; k < added_.size(); ++k) {
      if (next[k] != std::string_view::npos && next[k] < pos) next[k] = text.find(added_[k].content, pos);
      if (next[k] < best || (hit && next[k] == best && added_[k].content.size() > hit->content.size()))
        std::tie(best, hit) = std::pair(next[k], &added_[k]);
    }
    if (!hit) break;
    encode_segment(text.substr(pos, best - pos), ids);
    ids.push_back(hit->id);
    pos = best + hit->content.size();
  }
  encode_segment(text.substr(pos), ids);
  return ids;
}

void BpeTokenizer::encode_segment(std::string_view text, std::vector<int32_t>& ids) const {
  std::string prefixed;
  if (options_.add_prefix_space && !text.empty() && text[0] != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed.append(1, ' ').append(text);
    text = prefixed;
  }
  if (!options_.use_regex) {
    if (!text.empty()) encode_word(text, ids);
    return;
  }
  // Words repeat (a corpus has far fewer distinct words than words): encode each once.
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;  // word -> span in ids
  for (std::string_view w : pretokenize(text)) {
    auto it = seen.find(w);
    if (it != seen.end()) {
      auto [start, len] = it->second;
      for (size_t k = 0; k < len; ++k) {
        int32_t id = ids[start + k];  // copied: push_back may reallocate
        ids.push_back(id);
      }
      continue;
    }
    size_t start = ids.size();
    encode_word(w, ids);
    seen.emplace(w, std::pair{start, ids.size() - start});
  }
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

}  // namespace qs::text
