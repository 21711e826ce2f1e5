// UTF-8 decoding and the small Unicode classification the GPT-2 pre-tokenizer needs.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace qs::text::detail {

// One decoded character: its code point and byte length. An invalid sequence (bad lead
// byte, bad or missing continuation, overlong form, surrogate, > U+10FFFF) yields
// valid = false and len = 1, so a caller can step over the bad byte.
struct CodePoint {
  char32_t cp = 0;
  int len = 1;
  bool valid = false;
};
CodePoint decode_utf8(std::string_view s, size_t pos);

// Offset of the first byte of the first invalid sequence, or npos when `s` is valid UTF-8.
size_t first_invalid_utf8(std::string_view s);

void append_utf8(std::string& out, char32_t cp);

enum class CharClass { space, letter, number, other };
CharClass classify(char32_t cp);

}  // namespace qs::text::detail
