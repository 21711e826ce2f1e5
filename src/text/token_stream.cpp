// Token streams of a corpus split: training windows at random, evaluation windows in order.
#include "qiusuo/error.h"
#include "qiusuo/text/corpus.h"

namespace qs::text {

TokenStream::TokenStream(const TextCorpus& corpus, Split split, const Tokenizer& tokenizer)
    : TokenStream(tokenizer.encode(corpus.split(split)), corpus.split_bytes(split), split_name(split)) {}

TokenStream::TokenStream(std::vector<int32_t> ids, int64_t num_bytes, std::string name)
    : ids_(std::move(ids)), num_bytes_(num_bytes), name_(std::move(name)) {}

double TokenStream::bytes_per_token() const {
  QS_CHECK(!ids_.empty(), "token stream '{}': bytes per token of an empty split", name_);
  return double(num_bytes_) / double(ids_.size());
}

void TokenStream::check_window(int64_t seq) const {
  QS_CHECK(seq >= 1, "token stream '{}': expected seq >= 1, found {}", name_, seq);
  QS_CHECK(size() >= seq + 1, "token stream '{}': the split has {} tokens, fewer than one window of seq + 1 = {}. "
           "hint: a shorter seq, or a larger corpus", name_, size(), seq + 1);
}

data::Batch TokenStream::gather(const std::vector<int64_t>& starts, int64_t seq) const {
  int64_t b = int64_t(starts.size());
  data::Batch out{empty({b, seq}, DType::i64), empty({b, seq}, DType::i64)};
  int64_t* x = out.x.data_ptr<int64_t>();
  int64_t* y = out.y.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i)
    for (int64_t t = 0; t < seq; ++t) {
      x[i * seq + t] = ids_[starts[i] + t];
      y[i * seq + t] = ids_[starts[i] + t + 1];
    }
  return out;
}

data::Batch TokenStream::sample(int64_t batch, int64_t seq, Generator& gen) const {
  QS_CHECK(batch >= 1, "token stream '{}': expected batch >= 1, found {}", name_, batch);
  check_window(seq);
  uint64_t choices = uint64_t(size() - seq);  // starts 0 .. size() - seq - 1
  std::vector<int64_t> starts(batch);
  for (int64_t& s : starts) s = int64_t(gen.next_u64() % choices);
  return gather(starts, seq);
}

int64_t TokenStream::num_windows(int64_t seq) const {
  check_window(seq);
  return (size() - 1) / seq;
}

data::Batch TokenStream::windows(int64_t seq, int64_t first, int64_t count) const {
  int64_t n = num_windows(seq);
  QS_CHECK(first >= 0 && first < n, "token stream '{}': expected a first window in [0, {}), found {}", name_, n,
           first);
  QS_CHECK(count >= 1, "token stream '{}': expected count >= 1, found {}", name_, count);
  std::vector<int64_t> starts;
  for (int64_t w = first; w < std::min(n, first + count); ++w) starts.push_back(w * seq);
  return gather(starts, seq);
}

}  // namespace qs::text
