// qiusuo tokenizer: train a byte-level BPE tokenizer on a corpus and save its
// tokenizer.json; encode text with a saved tokenizer.
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/text/corpus.h"

namespace qs::cli {
namespace {

using text::Split;

int tokenizer_train(Args& a) {
  std::string out = a.required("out");
  std::string corpus_path = a.str("corpus", "");
  int64_t vocab = a.integer("vocab", 8192);
  int64_t min_frequency = a.integer("min-frequency", 2);
  a.finish();
  if (vocab < 256 || vocab > (int64_t(1) << 30))
    throw UsageError("--vocab expects 256 .. 2^30, got " + std::to_string(vocab));
  if (min_frequency < 1) throw UsageError("--min-frequency expects >= 1, got " + std::to_string(min_frequency));
  text::TextCorpus corpus = corpus_path.empty() ? text::TextCorpus::kjv() : text::TextCorpus::from_path(corpus_path);
  std::cout << fmt::format("corpus: {} ({} bytes: train {}, validation {}, test {})\n", corpus.source(),
                           corpus.num_bytes(), corpus.split_bytes(Split::train),
                           corpus.split_bytes(Split::validation), corpus.split_bytes(Split::test));
  auto t0 = std::chrono::steady_clock::now();
  text::BpeTokenizer tok = text::BpeTokenizer::train(corpus.split(Split::train), int32_t(vocab), min_frequency);
  double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  tok.save(out);
  // Compression on held-out text when there is some, else on the training text.
  Split measured = corpus.split_bytes(Split::validation) > 0 ? Split::validation : Split::train;
  text::TokenStream stream(corpus, measured, tok);
  std::cout << fmt::format("trained {} tokens ({} merges) in {:.2f} s; {}: {:.3f} bytes/token; saved {}\n",
                           tok.vocab_size(), tok.merges().size(), train_s, text::split_name(measured),
                           stream.bytes_per_token(), out);
  nlohmann::json summary = {{"vocab_size", tok.vocab_size()}, {"train_s", train_s},
                            {"bytes_per_token", stream.bytes_per_token()}, {"split", text::split_name(measured)},
                            {"out", out}};
  std::cout << summary.dump() << std::endl;
  return kExitOk;
}

int tokenizer_encode(Args& a) {
  std::string path = a.required("tokenizer");
  a.finish();
  std::string input;
  const auto& pos = a.positionals();
  for (size_t i = 1; i < pos.size(); ++i) input.append(i > 1 ? " " : "").append(pos[i]);
  if (pos.size() < 2) input.assign(std::istreambuf_iterator<char>(std::cin), {});
  std::unique_ptr<text::Tokenizer> tok = text::load_tokenizer_file(path);
  std::cout << nlohmann::json(tok->encode(input)).dump() << std::endl;
  return kExitOk;
}

}  // namespace

int cmd_tokenizer(Args a) {
  std::string sub = a.positionals().empty() ? "" : a.positionals()[0];
  if (sub == "train") return tokenizer_train(a);
  if (sub == "encode") return tokenizer_encode(a);
  throw UsageError("tokenizer: expected 'train' or 'encode', found '" + sub + "'");
}

}  // namespace qs::cli
