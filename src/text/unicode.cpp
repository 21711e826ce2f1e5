#include "text/unicode.h"

#include <algorithm>

#include "qiusuo/text/tokenizer.h"

namespace qs::text {
namespace detail {

CodePoint decode_utf8(std::string_view s, size_t pos) {
  auto byte = [&](size_t i) { return uint8_t(s[i]); };
  uint8_t b0 = byte(pos);
  if (b0 < 0x80) return {b0, 1, true};
  int len = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC0 ? 2 : 0;
  if (len == 0 || b0 > 0xF4 || pos + len > s.size()) return {};
  char32_t cp = b0 & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    uint8_t b = byte(pos + k);
    if ((b & 0xC0) != 0x80) return {};
    cp = (cp << 6) | (b & 0x3F);
  }
  static constexpr char32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {};
  return {cp, len, true};
}

size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (uint8_t(s[i]) < 0x80) {  // fast path for ASCII
      ++i;
      continue;
    }
    CodePoint c = decode_utf8(s, i);
    if (!c.valid) return i;
    i += c.len;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

namespace {

struct Range {
  char32_t lo, hi;
};

bool in(const Range* r, size_t n, char32_t cp) {
  for (size_t i = 0; i < n; ++i)
    if (cp >= r[i].lo && cp <= r[i].hi) return true;
  return false;
}

// Sorted, inclusive; see the header for what they cover and leave out.
constexpr Range kSpace[] = {{0x09, 0x0D}, {0x20, 0x20},     {0x85, 0x85},     {0xA0, 0xA0},
                            {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F},
                            {0x205F, 0x205F}, {0x3000, 0x3000}};
constexpr Range kNumber[] = {{0x30, 0x39},     {0xB2, 0xB3},     {0xB9, 0xB9},     {0xBC, 0xBE},
                             {0x660, 0x669},   {0x6F0, 0x6F9},   {0x966, 0x96F},   {0x2070, 0x2070},
                             {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2189}, {0x2460, 0x249B},
                             {0x3007, 0x3007}, {0x3021, 0x3029}, {0xFF10, 0xFF19}};
constexpr Range kLetter[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xAA, 0xAA},       {0xB5, 0xB5},     {0xBA, 0xBA},
    {0xC0, 0xD6},       {0xD8, 0xF6},       {0xF8, 0x2C1},      {0x370, 0x374},   {0x376, 0x37D},
    {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x3F5},     {0x3F7, 0x3FF},   {0x400, 0x481},
    {0x48A, 0x52F},     {0x5D0, 0x5EA},     {0x620, 0x64A},     {0x1100, 0x11FF}, {0x1E00, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FCC},   {0x1FD0, 0x1FDB},   {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FFC},
    {0x3041, 0x3096},   {0x309D, 0x309F},   {0x30A1, 0x30FA},   {0x30FC, 0x30FF}, {0x3400, 0x4DBF},
    {0x4E00, 0x9FFF},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},   {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A},
    {0xFF66, 0xFF9D},   {0x20000, 0x3134F}};

}  // namespace

CharClass classify(char32_t cp) {
  if (cp < 0x80) {  // the common case, without the tables
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::letter;
    if (cp >= '0' && cp <= '9') return CharClass::number;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::space;
    return CharClass::other;
  }
  if (in(kLetter, std::size(kLetter), cp)) return CharClass::letter;
  if (in(kNumber, std::size(kNumber), cp)) return CharClass::number;
  if (in(kSpace, std::size(kSpace), cp)) return CharClass::space;
  return CharClass::other;
}

}  // namespace detail

namespace {
using detail::CharClass;

struct Char {
  size_t end;  // byte offset just past the character
  CharClass cls;
};

Char char_at(std::string_view s, size_t pos) {
  detail::CodePoint c = detail::decode_utf8(s, pos);
  return {pos + c.len, c.valid ? detail::classify(c.cp) : CharClass::other};
}

// Length of GPT-2's contraction ('s 't 're 've 'm 'll 'd, case-sensitive) at pos, or 0.
size_t contraction(std::string_view s, size_t pos) {
  if (s[pos] != '\'') return 0;
  std::string_view rest = s.substr(pos + 1);
  for (std::string_view c : {"re", "ve", "ll", "s", "t", "m", "d"})
    if (rest.starts_with(c)) return 1 + c.size();
  return 0;
}

// The end of the match starting at pos (one alternative of the pattern, in order).
size_t match_end(std::string_view s, size_t pos) {
  if (size_t n = contraction(s, pos)) return pos + n;
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': the class of the character after an
  // optional space decides which; a run of that class follows.
  size_t k = s[pos] == ' ' && pos + 1 < s.size() ? pos + 1 : pos;
  Char first = char_at(s, k);
  if (first.cls != CharClass::space) {
    size_t end = first.end;
    while (end < s.size()) {
      Char c = char_at(s, end);
      if (c.cls != first.cls) break;
      end = c.end;
    }
    return end;
  }
  // '\s+(?!\S)' then '\s+': a whitespace run, less its last character when a
  // non-space follows and the run is longer than one character.
  size_t end = pos, last = pos;
  while (end < s.size()) {
    Char c = char_at(s, end);
    if (c.cls != CharClass::space) break;
    last = end;
    end = c.end;
  }
  if (end < s.size() && last > pos) return last;
  return end;
}

}  // namespace

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> words;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = match_end(text, pos);
    words.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return words;
}

const std::array<char32_t, 256>& bytes_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? char32_t(b) : 0x100 + n++;
    }
    return t;
  }();
  return table;
}

}  // namespace qs::text
