// BPE on the King James Bible: training time and compression at 4096 and 8192 tokens.
// Prints one JSON line per size; checks the round trip and a sane compression.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "qiusuo/text/corpus.h"

using namespace qs;
using namespace qs::text;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void train_and_measure(int32_t vocab_size, double min_bytes_per_token) {
  if (std::system("command -v bible >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "the `bible` program is not installed (scripts/install-deps.sh)";
  TextCorpus corpus = TextCorpus::kjv();
  auto t0 = std::chrono::steady_clock::now();
  BpeTokenizer tok = BpeTokenizer::train(corpus.split(Split::train), vocab_size);
  double train_s = seconds_since(t0);
  EXPECT_EQ(tok.vocab_size(), vocab_size);
  t0 = std::chrono::steady_clock::now();
  TokenStream train(corpus, Split::train, tok);
  double encode_s = seconds_since(t0);
  TokenStream valid(corpus, Split::validation, tok);
  EXPECT_EQ(tok.decode(valid.ids()), std::string(corpus.split(Split::validation)));
  EXPECT_GT(valid.bytes_per_token(), min_bytes_per_token);
  std::printf("{\"vocab\":%d,\"train_bytes\":%lld,\"train_s\":%.2f,\"encode_train_s\":%.2f,"
              "\"bytes_per_token_train\":%.3f,\"bytes_per_token_validation\":%.3f}\n",
              vocab_size, (long long)train.num_bytes(), train_s, encode_s, train.bytes_per_token(),
              valid.bytes_per_token());
}

}  // namespace

TEST(KjvBpe, Vocab4096) { train_and_measure(4096, 3.0); }
TEST(KjvBpe, Vocab8192) { train_and_measure(8192, 3.3); }
