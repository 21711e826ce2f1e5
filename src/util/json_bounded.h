// JSON from outside qiusuo (files, HTTP bodies, checkpoint headers and metadata) parsed with
// its nesting bounded. nlohmann's copy constructor, dump() and comparisons recurse once per
// level, so a 200 KB file of 100,000 '[' parses and then crashes the process (a stack
// overflow) the moment the value is copied or printed. No file qiusuo writes nests deeper
// than a few levels.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace qs::util {

constexpr int kMaxJsonDepth = 128;

// Json::parse of `text` (nlohmann::json or nlohmann::ordered_json) that throws the parser's
// own Json::parse_error when a value nests deeper than max_depth, so callers that already
// report malformed JSON report this too, before any deep value exists. `also` sees every
// parse event, as json::parse's callback argument would (return false to drop a value).
template <class Json = nlohmann::json>
Json parse_json_bounded(std::string_view text, const typename Json::parser_callback_t& also = nullptr,
                        int max_depth = kMaxJsonDepth) {
  auto cb = [&](int depth, typename Json::parse_event_t ev, Json& parsed) {
    if (depth > max_depth) {
      std::string what = "JSON nested deeper than ";
      what += std::to_string(max_depth);
      what += " levels (refused before it is built)";
      throw Json::parse_error::create(101, 0, what, nullptr);
    }
    return also ? also(depth, ev, parsed) : true;
  };
  return Json::parse(text.begin(), text.end(), cb);
}

// At most max_chars of v's text for an error message ("..." where cut), never a whole
// untrusted value.
template <class Json> std::string json_excerpt(const Json& v, size_t max_chars = 200) {
  std::string s = v.dump();
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

}  // namespace qs::util
