// Text corpora for language modelling: the text, its train/validation/test split, and the
// token stream of a split with training and evaluation windows.
//
//   text::TextCorpus corpus = text::TextCorpus::kjv();     // or TextCorpus::from_path(p)
//   auto tok = text::BpeTokenizer::train(corpus.split(text::Split::train), 8192);
//   text::TokenStream train(corpus, text::Split::train, tok);
//   Generator gen(1);
//   data::Batch b = train.sample(32, 256, gen);           // x, y: i64 [32, 256]
//   double bits_per_byte = loss_nats_per_token / std::log(2.0) / train.bytes_per_token();
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "qiusuo/data/dataloader.h"
#include "qiusuo/tensor.h"
#include "qiusuo/text/tokenizer.h"

namespace qs::text {

enum class Split { train, validation, test };
const char* split_name(Split s);  // "train", "validation", "test"

// Where cached corpora live: $QIUSUO_CACHE, else $XDG_CACHE_HOME/qiusuo, else
// $HOME/.cache/qiusuo (else ./.qiusuo-cache).
std::string default_cache_dir();

// UTF-8 text, validated strictly on construction, split deterministically into contiguous
// blocks by bytes on line boundaries: train = [0, c1), validation = [c1, c2),
// test = [c2, end), where c1 (c2) is just after the first '\n' at or after 90% (95%) of
// the bytes, or the end of the text when there is none. A short or one-line text can
// leave the validation or test split empty.
class TextCorpus {
 public:
  static constexpr double kTrainFraction = 0.90;
  static constexpr double kValidationFraction = 0.05;  // the test split gets the rest

  // Errors (qs::IOError naming `source`): empty text; invalid UTF-8 (with the byte offset
  // of the first bad sequence).
  TextCorpus(std::string text, std::string source);

  // A UTF-8 file, or a folder: all regular files below it (recursively), sorted by path,
  // joined with "\n". Errors (qs::IOError): missing or unreadable path; invalid UTF-8
  // (naming the file and the byte offset in it); an empty corpus.
  static TextCorpus from_path(const std::string& path);

  // The King James Bible from Debian's bible-kjv: `echo gen1:1-rev22:21 | bible -f`, the
  // program's banner and prompt lines stripped, one verse per line with its reference
  // kept ("Ge1:1 In the beginning God created the heaven and the earth."), 31102 lines,
  // about 4.4 MB, ASCII. Cached in `cache_dir`/kjv-v1.txt (written atomically) and read
  // from there when present. Errors (qs::IOError): `bible` not installed (hint:
  // scripts/install-deps.sh, or --corpus FILE); output not in the expected form.
  static TextCorpus kjv(const std::string& cache_dir = default_cache_dir());

  const std::string& text() const { return text_; }
  const std::string& source() const { return source_; }
  int64_t num_bytes() const { return int64_t(text_.size()); }
  std::string_view split(Split s) const;
  int64_t split_bytes(Split s) const { return int64_t(split(s).size()); }

 private:
  std::string text_, source_;
  size_t cut_[2] = {0, 0};
};

// The verse text from the output of `bible -f` (exposed for tests). Errors: qs::IOError
// when the output does not run from Genesis 1:1 to Revelation 22:21.
std::string kjv_from_bible_output(std::string_view output);

// The token ids of one split, encoded once in the constructor, with the split's UTF-8
// byte count (so a loss per token converts to bits per byte: nats / ln 2 /
// bytes_per_token()). Encoding is fast enough not to cache the ids on disk (the KJV train
// split, 4 MB, takes about 0.3 s with 8192 BPE tokens).
class TokenStream {
 public:
  TokenStream(const TextCorpus& corpus, Split split, const Tokenizer& tokenizer);
  TokenStream(std::vector<int32_t> ids, int64_t num_bytes, std::string name);

  const std::string& name() const { return name_; }
  const std::vector<int32_t>& ids() const { return ids_; }
  int64_t size() const { return int64_t(ids_.size()); }  // tokens
  int64_t num_bytes() const { return num_bytes_; }
  double bytes_per_token() const;  // errors: no tokens

  // Training batch: `batch` windows of seq + 1 tokens, starts drawn in order from `gen`
  // uniformly in [0, size() - seq - 1] (next_u64() modulo the count).
  // x = window[:seq], y = window[1:], both i64 [batch, seq].
  // Errors: batch < 1, seq < 1, a split shorter than seq + 1 tokens (naming the split).
  data::Batch sample(int64_t batch, int64_t seq, Generator& gen) const;

  // Evaluation: the split cut into non-overlapping windows, window w = tokens
  // [w*seq, w*seq + seq + 1) (x its first seq, y its last seq), so every token after the
  // first is predicted exactly once; the final (size() - 1) % seq tokens, too few for a
  // whole window, are dropped. num_windows = (size() - 1) / seq.
  int64_t num_windows(int64_t seq) const;
  // Windows [first, min(first + count, num_windows)) as one batch. Errors: as sample,
  // first outside [0, num_windows).
  data::Batch windows(int64_t seq, int64_t first, int64_t count) const;

 private:
  void check_window(int64_t seq) const;
  data::Batch gather(const std::vector<int64_t>& starts, int64_t seq) const;

  std::vector<int32_t> ids_;
  int64_t num_bytes_ = 0;
  std::string name_;
};

}  // namespace qs::text
