// tokenizer.json in the Hugging Face `tokenizers` layout: writing and validated reading.
#include <algorithm>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qiusuo/error.h"
#include "qiusuo/text/tokenizer.h"
#include "text/unicode.h"
#include "util/json_bounded.h"
#include "io/read_file.h"

namespace qs::text {
namespace {

using Json = nlohmann::ordered_json;

std::string bytes_to_text(const std::string& bytes) {
  const auto& map = bytes_to_unicode();
  std::string out;
  for (char c : bytes) detail::append_utf8(out, map[uint8_t(c)]);
  return out;
}

const std::unordered_map<char32_t, uint8_t>& unicode_to_bytes() {
  static const std::unordered_map<char32_t, uint8_t> inverse = [] {
    std::unordered_map<char32_t, uint8_t> m;
    for (int b = 0; b < 256; ++b) m.emplace(bytes_to_unicode()[b], uint8_t(b));
    return m;
  }();
  return inverse;
}

// The raw bytes a token's text stands for. Errors: characters outside the alphabet.
std::string text_to_bytes(const std::string& text, const std::string& where) {
  const auto& inv = unicode_to_bytes();
  std::string out;
  for (size_t i = 0; i < text.size();) {
    detail::CodePoint c = detail::decode_utf8(text, i);
    auto it = c.valid ? inv.find(c.cp) : inv.end();
    QS_CHECK(it != inv.end(), "tokenizer.json: {}: token \"{}\" has character U+{:04X}, which is not in the "
             "byte-level alphabet (GPT-2's bytes-to-unicode map)", where, text, uint32_t(c.cp));
    out.push_back(char(it->second));
    i += c.len;
  }
  QS_CHECK(!out.empty(), "tokenizer.json: {}: expected a non-empty token, found \"\"", where);
  return out;
}

Json byte_level(bool add_prefix_space, bool use_regex) {
  return Json{{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true},
              {"use_regex", use_regex}};
}

// ---- reading helpers: a field is absent, null, or of the expected type
const Json* field(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool bool_field(const Json& obj, const char* key, bool dflt, const std::string& where) {
  const Json* f = field(obj, key);
  if (!f) return dflt;
  QS_CHECK(f->is_boolean(), "tokenizer.json: {}.{}: expected true or false, found {}", where, key, f->dump());
  return f->get<bool>();
}

// Unknown fields are errors: a misspelt option must not be silently ignored.
void check_keys(const Json& obj, std::initializer_list<std::string_view> allowed, const std::string& where) {
  for (auto& [key, value] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string list;
    for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    QS_FAIL("tokenizer.json: {}: unknown field \"{}\"; expected some of: {}", where, key, list);
  }
}

void expect_null(const Json& obj, const char* key, const std::string& where, const char* why) {
  const Json* f = field(obj, key);
  QS_CHECK(!f, "tokenizer.json: {}{}: expected null ({}), found {}", where, key, why, f ? f->dump() : "");
}

void expect_type(const Json& obj, const char* what, const char* type, bool nullable) {
  const Json* f = field(obj, what);
  if (!f && nullable) return;
  QS_CHECK(f && f->is_object() && f->contains("type") && (*f)["type"] == type,
           "tokenizer.json: {}: expected {}{{\"type\":\"{}\", ...}}, found {}", what, nullable ? "null or " : "",
           type, f ? f->dump() : "nothing");
}

std::vector<std::string> read_vocab(const Json& model) {
  const Json* v = field(model, "vocab");
  QS_CHECK(v && v->is_object(), "tokenizer.json: model.vocab: expected an object {{token: id}}, found {}",
           v ? v->dump().substr(0, 80) : "nothing");
  size_t n = v->size();
  std::vector<std::string> vocab(n);
  std::vector<std::string> text_of(n);
  for (auto& [text, id] : v->items()) {
    QS_CHECK(id.is_number_integer(), "tokenizer.json: model.vocab[\"{}\"]: expected an integer id, found {}",
             text, id.dump());
    int64_t i = id.get<int64_t>();
    QS_CHECK(i >= 0 && i < int64_t(n), "tokenizer.json: model.vocab[\"{}\"]: expected an id in [0, {}) (ids "
             "number the {} tokens from 0), found {}", text, n, n, i);
    QS_CHECK(text_of[i].empty(), "tokenizer.json: model.vocab: id {} is given to both \"{}\" and \"{}\"", i,
             text_of[i], text);
    text_of[i] = text;
    vocab[i] = text_to_bytes(text, fmt::format("model.vocab[\"{}\"]", text));
  }
  return vocab;
}

std::pair<std::string, std::string> merge_parts(const Json& m, size_t rank) {
  if (m.is_string()) {
    std::string s = m.get<std::string>();
    size_t sp = s.find(' ');
    QS_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < s.size() && s.find(' ', sp + 1) == std::string::npos,
             "tokenizer.json: model.merges[{}]: expected \"left right\" (two tokens, one space), found \"{}\"",
             rank, s);
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  QS_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
           "tokenizer.json: model.merges[{}]: expected \"left right\" or [\"left\", \"right\"], found {}", rank,
           m.dump());
  return {m[0].get<std::string>(), m[1].get<std::string>()};
}

std::vector<std::pair<int32_t, int32_t>> read_merges(const Json& model, const std::vector<std::string>& vocab) {
  std::unordered_map<std::string, int32_t> id_of;
  for (size_t i = 0; i < vocab.size(); ++i) id_of.emplace(bytes_to_text(vocab[i]), int32_t(i));
  const Json* ms = field(model, "merges");
  if (!ms) return {};
  QS_CHECK(ms->is_array(), "tokenizer.json: model.merges: expected an array, found {}", ms->dump().substr(0, 80));
  std::vector<std::pair<int32_t, int32_t>> merges;
  for (size_t rank = 0; rank < ms->size(); ++rank) {
    auto [a, b] = merge_parts((*ms)[rank], rank);
    for (const std::string& part : {a, b, a + b})
      QS_CHECK(id_of.count(part), "tokenizer.json: model.merges[{}] (\"{} {}\"): \"{}\" is not in model.vocab",
               rank, a, b, part);
    merges.push_back({id_of[a], id_of[b]});
  }
  return merges;
}

std::vector<BpeTokenizer::AddedToken> read_added_tokens(const Json& root) {
  const Json* added = field(root, "added_tokens");
  if (!added) return {};
  QS_CHECK(added->is_array(), "tokenizer.json: added_tokens: expected an array, found {}", added->dump().substr(0, 80));
  std::vector<BpeTokenizer::AddedToken> out;
  for (size_t i = 0; i < added->size(); ++i) {
    const Json& t = (*added)[i];
    std::string where = fmt::format("added_tokens[{}]", i);
    QS_CHECK(t.is_object() && t.contains("id") && t["id"].is_number_integer() && t.contains("content") &&
             t["content"].is_string(), "tokenizer.json: {}: expected {{\"id\": integer, \"content\": string, ...}}, "
             "found {}", where, t.dump().substr(0, 120));
    check_keys(t, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}, where);
    for (const char* key : {"single_word", "lstrip", "rstrip"})
      QS_CHECK(!bool_field(t, key, false, where), "tokenizer.json: {}.{}: expected false (not supported), found true",
               where, key);
    bool_field(t, "normalized", false, where);  // no normalizer: the same either way
    int64_t id = t["id"].get<int64_t>();
    QS_CHECK(id >= 0 && id < INT32_MAX, "tokenizer.json: {}.id: expected an id >= 0, found {}", where, id);
    out.push_back({t["content"].get<std::string>(), int32_t(id), bool_field(t, "special", true, where)});
  }
  return out;
}

std::unique_ptr<Tokenizer> read_bpe(const Json& root, const Json& model) {
  for (const char* key : {"truncation", "padding", "normalizer"}) expect_null(root, key, "", "not supported");
  expect_type(root, "pre_tokenizer", "ByteLevel", false);
  expect_type(root, "decoder", "ByteLevel", true);
  expect_type(root, "post_processor", "ByteLevel", true);
  for (const char* part : {"pre_tokenizer", "decoder", "post_processor"})
    if (const Json* f = field(root, part))
      check_keys(*f, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, part);
  check_keys(model, {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                     "byte_fallback", "ignore_merges", "vocab", "merges"}, "model");
  BpeTokenizer::Options opt;
  opt.add_prefix_space = bool_field(root.at("pre_tokenizer"), "add_prefix_space", false, "pre_tokenizer");
  opt.use_regex = bool_field(root.at("pre_tokenizer"), "use_regex", true, "pre_tokenizer");
  opt.ignore_merges = bool_field(model, "ignore_merges", false, "model");
  const Json* dropout = field(model, "dropout");
  QS_CHECK(!dropout || (dropout->is_number() && dropout->get<double>() == 0.0),
           "tokenizer.json: model.dropout: expected null or 0 (BPE dropout is not supported), found {}",
           dropout ? dropout->dump() : "");
  expect_null(model, "unk_token", "model.", "byte-level BPE needs no unknown token");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* f = field(model, key);
    QS_CHECK(!f || *f == "", "tokenizer.json: model.{}: expected null or \"\" (byte-level BPE), found {}", key,
             f ? f->dump() : "");
  }
  bool_field(model, "fuse_unk", false, "model");
  QS_CHECK(!bool_field(model, "byte_fallback", false, "model"),
           "tokenizer.json: model.byte_fallback: expected false (byte-level BPE needs no fallback), found true");
  std::vector<std::string> vocab = read_vocab(model);
  auto merges = read_merges(model, vocab);
  try {
    return std::make_unique<BpeTokenizer>(std::move(vocab), std::move(merges), opt, read_added_tokens(root));
  } catch (const Error& e) {
    QS_FAIL("tokenizer.json: {}", e.what());
  }
}

}  // namespace

std::string BpeTokenizer::to_json() const {
  Json vocab = Json::object();
  for (size_t id = 0; id < vocab_.size(); ++id) vocab[bytes_to_text(vocab_[id])] = id;
  Json merges = Json::array();
  for (auto [l, r] : merges_) merges.push_back(bytes_to_text(vocab_[l]) + " " + bytes_to_text(vocab_[r]));
  Json model = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                {"byte_fallback", false}};
  if (options_.ignore_merges) model["ignore_merges"] = true;  // older readers do not know the field
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merges);
  Json added = Json::array();
  for (const AddedToken& t : added_)
    added.push_back({{"id", t.id}, {"content", t.content}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", t.special}});
  Json root = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", std::move(added)},
               {"normalizer", nullptr}, {"pre_tokenizer", byte_level(options_.add_prefix_space, options_.use_regex)},
               {"post_processor", nullptr}, {"decoder", byte_level(true, true)}, {"model", std::move(model)}};
  return root.dump(2) + "\n";
}

std::unique_ptr<Tokenizer> load_tokenizer(std::string_view json_text) {
  Json root;
  try {
    root = util::parse_json_bounded<Json>(json_text);
  } catch (const nlohmann::json::exception& e) {
    QS_FAIL("tokenizer.json: not valid JSON: {}", e.what());
  }
  QS_CHECK(root.is_object(), "tokenizer.json: expected an object at the top, found {}", root.dump().substr(0, 80));
  const Json* version = field(root, "version");
  QS_CHECK(!version || *version == "1.0", "tokenizer.json: version: expected \"1.0\", found {}",
           version ? version->dump() : "");
  const Json* model = field(root, "model");
  QS_CHECK(model && model->is_object() && model->contains("type") && (*model)["type"].is_string(),
           "tokenizer.json: model: expected an object with a \"type\", found {}",
           model ? model->dump().substr(0, 80) : "nothing");
  check_keys(root, {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                    "post_processor", "decoder", "model"}, "top level");
  std::string type = (*model)["type"].get<std::string>();
  if (type == "BPE") return read_bpe(root, *model);
  if (type == "Byte") {
    check_keys(*model, {"type", "vocab_size"}, "model");
    const Json* n = field(*model, "vocab_size");
    QS_CHECK(!n || *n == 256, "tokenizer.json: model.vocab_size: expected 256 for the byte tokenizer, found {}",
             n ? n->dump() : "");
    return std::make_unique<ByteTokenizer>();
  }
  QS_FAIL("tokenizer.json: model.type: expected \"BPE\" or \"Byte\", found \"{}\"", type);
}

std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path) {
  // 256 MiB: far above any real tokenizer.json (GPT-2's is 1.4 MB).
  const std::string text = io::read_file_bounded(path, uint64_t(256) << 20, "tokenizer");
  try {
    return load_tokenizer(text);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path, e.what()));
  }
}

}  // namespace qs::text
