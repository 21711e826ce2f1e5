// Tokenizers: text (bytes) <-> token ids for the language models.
//
//   auto tok = text::BpeTokenizer::train(corpus.split(text::Split::train), 8192);
//   std::vector<int32_t> ids = tok.encode("In the beginning");
//   std::string back = tok.decode(ids);                 // == "In the beginning"
//   tok.save("tokenizer.json");                          // Hugging Face layout
//   std::unique_ptr<text::Tokenizer> t2 = text::load_tokenizer_file("tokenizer.json");
//
// Contract (both kinds)
// - encode accepts any byte string (UTF-8 or not) and decode(encode(s)) == s, byte for
//   byte: the base vocabulary holds all 256 bytes.
// - decode returns the tokens' bytes concatenated, as they are: a sequence that ends in
//   the middle of a UTF-8 character (or any invalid UTF-8) is returned unchanged, never
//   replaced by U+FFFD. Errors: an id outside [0, vocab_size()).
// - Ids are int32 in [0, vocab_size()). Tokenizers are immutable after construction, so
//   encode/decode may run concurrently from several threads.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "qiusuo/error.h"

namespace qs::text {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;  // "byte" or "bpe"
  virtual int32_t vocab_size() const = 0;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::string to_json() const = 0;  // tokenizer.json text
  // Writes to_json() to `path` atomically (temp file + rename). Errors: qs::IOError.
  void save(const std::string& path) const;
};

// Vocabulary 256, id = byte value. JSON form (qiusuo's own; load_tokenizer reads it):
//   {"version":"1.0","model":{"type":"Byte","vocab_size":256}}
class ByteTokenizer : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  int32_t vocab_size() const override { return 256; }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string to_json() const override;
};

// Byte-level BPE as GPT-2 / Hugging Face `tokenizers`:
// 1. Pre-tokenize (split into words) with GPT-2's pattern
//      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//    implemented by hand over UTF-8 code points (see pretokenize()).
// 2. Each word's bytes become base tokens; merges are applied by rank (the lowest-ranked
//    adjacent pair first, all its occurrences left to right, until none applies).
// 3. In tokenizer.json every byte is written as a printable character by GPT-2's
//    bytes-to-unicode map (space -> "Ġ", newline -> "Ċ", ...).
class BpeTokenizer : public Tokenizer {
 public:
  // A token matched literally in the input before pre-tokenizing ("<|endoftext|>"),
  // Hugging Face's added_tokens. Its id is either a vocabulary token with the same bytes,
  // or one of the ids after the vocabulary (vocab.size(), vocab.size() + 1, ...).
  struct AddedToken {
    std::string content;  // non-empty UTF-8
    int32_t id = 0;
    bool special = true;
  };

  struct Options {
    bool add_prefix_space = false;  // prepend " " to a text that does not start with one
    bool use_regex = true;          // false: the whole text is one word (merging costs
                                    // O(length log length) per word)
    bool ignore_merges = false;     // a word that is itself a token maps to it directly
  };

  // vocab[id] = the token's raw bytes (distinct); merges in rank order as (left, right)
  // ids, each concatenation present in the vocabulary. Every single byte should have a
  // token (encode fails naming a byte that has none). Errors: duplicate tokens, empty
  // tokens, merge ids out of range, a merge whose concatenation is not a token; added
  // tokens empty, duplicated, not UTF-8, or with ids neither a token of the same bytes nor
  // exactly the ids after the vocabulary.
  BpeTokenizer(std::vector<std::string> vocab, std::vector<std::pair<int32_t, int32_t>> merges,
               Options options, std::vector<AddedToken> added = {});

  // Learns merges from `corpus`: words from the pre-tokenizer are counted, then the most
  // frequent adjacent pair (counted over word occurrences) is merged repeatedly until the
  // vocabulary holds `vocab_size` tokens or the best pair occurs fewer than
  // `min_frequency` times. Ties go to the pair whose (left bytes, right bytes) is
  // lexicographically smallest, so training is deterministic. Base vocabulary: id b =
  // the byte b (0..255). `special_tokens` (e.g. "<|endoftext|>") are cut out of the
  // corpus before counting and become added tokens with the last ids; vocab_size counts
  // them. Errors: vocab_size < 256 + special tokens, min_frequency < 1, bad special tokens.
  static BpeTokenizer train(std::string_view corpus, int32_t vocab_size, int64_t min_frequency = 2,
                            const std::vector<std::string>& special_tokens = {});

  std::string name() const override { return "bpe"; }
  int32_t vocab_size() const override { return int32_t(vocab_.size() + extra_.size()); }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string to_json() const override;

  const std::string& token_bytes(int32_t id) const;  // errors: id out of range
  int32_t token_id(std::string_view bytes) const;    // -1 when not a vocabulary token
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  const Options& options() const { return options_; }

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  void check_added_tokens();

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merge_rank_;  // (l,r) -> (rank, id)
  std::array<int32_t, 256> byte_id_{};                                    // -1: no token
  Options options_;
  std::vector<AddedToken> added_;
  std::vector<std::string> extra_;  // contents of the added tokens after the vocabulary, by id
};

// GPT-2's pre-tokenizer: the text split into words (views into `text`), concatenating to
// it exactly. Classes, an approximation of Unicode's:
// - \s: ASCII \t \n \v \f \r and space, U+0085, U+00A0, U+1680, U+2000-U+200A,
//   U+2028, U+2029, U+202F, U+205F, U+3000.
// - \p{N}: ASCII digits, superscripts and vulgar fractions of Latin-1, Arabic-Indic,
//   Devanagari and fullwidth digits, Roman numerals, circled numbers, U+3007.
// - \p{L}: ASCII letters; Latin-1 letters (and U+00AA, U+00B5, U+00BA); Latin
//   Extended-A/B, IPA and modifier letters (U+0100-U+02C1); Greek (U+0370-U+03FF and
//   U+1F00-U+1FFF, less the signs among them); Cyrillic (U+0400-U+052F less U+0482-U+0489);
//   Hebrew and Arabic letters; Latin Extended Additional; Hiragana, Katakana, CJK
//   (U+3400-U+4DBF, U+4E00-U+9FFF, U+F900-U+FAFF, U+20000-U+3134F), Hangul; fullwidth
//   Latin letters. Everything else (punctuation, symbols, emoji, combining marks, other
//   scripts' letters) counts as "other".
// - Bytes that are not valid UTF-8 are one "other" character each.
std::vector<std::string_view> pretokenize(std::string_view text);

// GPT-2's bytes-to-unicode map: byte -> code point of the printable character standing
// for it in tokenizer.json (printable Latin-1 bytes map to themselves, the others to
// U+0100 + n in byte order).
const std::array<char32_t, 256>& bytes_to_unicode();

// Reads tokenizer.json text (the Hugging Face layout, or the byte tokenizer's form) and
// returns the tokenizer it describes. Accepted: pre_tokenizer ByteLevel (use_regex,
// add_prefix_space honoured), decoder ByteLevel or null, post_processor ByteLevel or
// null, normalizer null, added_tokens without lstrip/rstrip/single_word, model BPE with
// dropout null/0, unk_token null, no continuing_subword_prefix / end_of_word_suffix,
// byte_fallback false; merges as "a b" strings or ["a", "b"] pairs. Errors (qs::Error
// naming the field): invalid JSON, unknown fields, anything unsupported, token text
// outside the byte-level alphabet, ids out of range or duplicated, merges naming missing
// tokens or malformed, added tokens whose ids do not fit (see AddedToken).
std::unique_ptr<Tokenizer> load_tokenizer(std::string_view json_text);
// Errors: as load_tokenizer, prefixed with the path; qs::IOError when unreadable.
std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path);

}  // namespace qs::text
