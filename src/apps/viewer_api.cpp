// The viewer's JSON API (see include/qiusuo/apps/viewer.h and docs/viewer-api.md).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <optional>

#include <fstream>
#include <sstream>

#include "qiusuo/apps/viewer.h"
#include "qiusuo/error.h"
#include "qiusuo/nn/positional.h"
#include "qiusuo/nn/transformer.h"
#include "util/json_bounded.h"
#include "io/read_file.h"

namespace qs::apps {

using nlohmann::json;

double round_significant(double x, int digits) {
  if (x == 0 || !std::isfinite(x)) return x;
  // The decimal string with `digits` digits read back: the nearest double to it, which
  // JSON then prints in its shortest form ("0.1235", not "0.12350000000000001").
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, x);
  return std::strtod(buf, nullptr);
}

std::vector<float> mean_pool(const float* w, int64_t rows, int64_t cols, int64_t out_rows, int64_t out_cols) {
  const int64_t br = std::min(rows, out_rows), bc = std::min(cols, out_cols);
  std::vector<double> sum(size_t(br * bc), 0.0);
  std::vector<int64_t> count(size_t(br * bc), 0);
  std::vector<int64_t> col_bin(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) col_bin[size_t(j)] = j * bc / cols;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t bi = i * br / rows;
    double* srow = sum.data() + bi * bc;
    int64_t* crow = count.data() + bi * bc;
    for (int64_t j = 0; j < cols; ++j) {
      srow[col_bin[size_t(j)]] += w[i * cols + j];
      ++crow[col_bin[size_t(j)]];
    }
  }
  std::vector<float> out(sum.size());
  for (size_t b = 0; b < out.size(); ++b) out[b] = float(sum[b] / double(count[b]));
  return out;
}

namespace {

json rounded_rows(const float* w, int64_t rows, int64_t cols) {
  json out = json::array();
  for (int64_t i = 0; i < rows; ++i) {
    json row = json::array();
    for (int64_t j = 0; j < cols; ++j) row.push_back(round_significant(w[i * cols + j]));
    out.push_back(std::move(row));
  }
  return out;
}

// Per query row: the k largest weights (descending; ties: lower key index first).
void add_topk(json& r, const float* w, int64_t rows, int64_t cols, int64_t k) {
  k = std::min(k, cols);
  json indices = json::array(), values = json::array();
  std::vector<int64_t> order(static_cast<size_t>(cols));
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = w + i * cols;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
      return row[a] != row[b] ? row[a] > row[b] : a < b;
    });
    json ri = json::array(), rv = json::array();
    for (int64_t t = 0; t < k; ++t) {
      ri.push_back(order[size_t(t)]);
      rv.push_back(round_significant(row[order[size_t(t)]]));
    }
    indices.push_back(std::move(ri));
    values.push_back(std::move(rv));
  }
  r["k"] = k;
  r["indices"] = std::move(indices);
  r["values"] = std::move(values);
}

// Byte offset of the first byte that is not part of a valid UTF-8 character (overlong
// forms, surrogates and code points above U+10FFFF are invalid), or npos.
size_t utf8_invalid_at(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return i;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b >> 6) != 2) return i;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n;
  }
  return std::string::npos;
}

std::optional<int64_t> opt_int(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer())
    throw ApiError(400, fmt::format("{}: expected an integer, found {}", name, it->dump()));
  return it->get<int64_t>();
}

struct AttentionRequest {
  std::string text;
  std::optional<int64_t> layer, head, top_k, max_tokens;
  std::string format = "auto";
};

json parse_body(const std::string& body) {
  if (size_t bad = utf8_invalid_at(body); bad != std::string::npos)
    throw ApiError(400, fmt::format("the request body is not valid UTF-8 (byte {} of {})", bad, body.size()));
  json j;
  try {
    j = util::parse_json_bounded(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object())
    throw ApiError(400, fmt::format("expected a JSON object like {{\"text\": \"...\"}}, found {}", j.type_name()));
  return j;
}

// Everything that can be checked before running the model. `maps`: /api/model's maps.
AttentionRequest parse_request(const std::string& body, const json& maps, int64_t max_tokens) {
  const json j = parse_body(body);
  AttentionRequest r;
  auto t = j.find("text");
  if (t == j.end() || !t->is_string()) throw ApiError(400, "text: expected a string (the text to run the model on)");
  r.text = t->get<std::string>();
  if (r.text.empty()) throw ApiError(422, "text is empty: type at least one character");
  r.layer = opt_int(j, "layer"), r.head = opt_int(j, "head");
  r.top_k = opt_int(j, "top_k"), r.max_tokens = opt_int(j, "max_tokens");
  if (auto f = j.find("format"); f != j.end() && !f->is_null()) {
    if (!f->is_string()) throw ApiError(400, fmt::format("format: expected a string, found {}", f->dump()));
    r.format = f->get<std::string>();
  }
  if (r.format != "auto" && r.format != "dense" && r.format != "topk" && r.format != "pooled")
    throw ApiError(400, fmt::format("format: expected auto, dense, topk or pooled, found '{}'", r.format));
  if (r.layer.has_value() != r.head.has_value())
    throw ApiError(400, "give both layer and head (one head's matrix) or neither (thumbnails of every head)");
  if (r.top_k && *r.top_k <= 0) throw ApiError(400, fmt::format("top_k must be positive, found {}", *r.top_k));
  if (r.max_tokens && (*r.max_tokens <= 0 || *r.max_tokens > max_tokens))
    throw ApiError(400, fmt::format("max_tokens must be in 1..{}, found {}", max_tokens, *r.max_tokens));
  if (r.layer && (*r.layer < 0 || *r.layer >= int64_t(maps.size())))
    throw ApiError(400, fmt::format("layer {} is out of range: this model has {} attention layers (0..{})", *r.layer,
                                    maps.size(), maps.size() - 1));
  if (r.layer) {
    const int64_t heads = maps[size_t(*r.layer)]["heads"].get<int64_t>();
    if (*r.head < 0 || *r.head >= heads)
      throw ApiError(400, fmt::format("head {} is out of range: layer {} has {} heads (0..{})", *r.head, *r.layer,
                                      heads, heads - 1));
  }
  return r;
}

// Thumbnails of every head of every map, mean-pooled to at most kViewerThumbMax a side.
json model_view(const AttentionSnapshot& s) {
  json out = json::array();
  for (size_t l = 0; l < s.maps.size(); ++l) {
    const AttentionMap& m = s.maps[l];
    const int64_t H = m.weights.size(0), tq = m.weights.size(1), tk = m.weights.size(2);
    const int64_t pr = std::min(tq, kViewerThumbMax), pc = std::min(tk, kViewerThumbMax);
    const float* w = m.weights.data_ptr<float>();
    json heads = json::array();
    for (int64_t h = 0; h < H; ++h)
      heads.push_back(rounded_rows(mean_pool(w + h * tq * tk, tq, tk, pr, pc).data(), pr, pc));
    out.push_back({{"layer", l}, {"name", m.name}, {"kind", m.kind}, {"rows", tq}, {"cols", tk},
                   {"pooled_rows", pr}, {"pooled_cols", pc}, {"heads", std::move(heads)}});
  }
  return out;
}

// One head's matrix as dense, topk or pooled (fields added to r).
void head_view(json& r, const AttentionSnapshot& s, const AttentionRequest& q) {
  const AttentionMap& m = s.maps[size_t(*q.layer)];
  const int64_t tq = m.weights.size(1), tk = m.weights.size(2);
  const float* w = m.weights.data_ptr<float>() + *q.head * tq * tk;
  const bool small = tq <= kViewerDenseMax && tk <= kViewerDenseMax;
  const std::string format = q.format != "auto" ? q.format : small ? "dense" : q.top_k ? "topk" : "pooled";
  if (format == "dense" && !small)
    throw ApiError(400, fmt::format("format dense is limited to {} tokens a side ({}x{} here); ask for topk or pooled",
                                    kViewerDenseMax, tq, tk));
  r.update({{"view", "head"}, {"layer", *q.layer}, {"head", *q.head}, {"name", m.name}, {"kind", m.kind},
            {"format", format}, {"rows", tq}, {"cols", tk}});
  if (format == "dense") {
    r["weights"] = rounded_rows(w, tq, tk);
  } else if (format == "topk") {
    add_topk(r, w, tq, tk, q.top_k.value_or(8));
  } else {
    const int64_t pr = std::min(tq, kViewerDenseMax), pc = std::min(tk, kViewerDenseMax);
    r["pooled_rows"] = pr;
    r["pooled_cols"] = pc;
    r["weights"] = rounded_rows(mean_pool(w, tq, tk, pr, pc).data(), pr, pc);
  }
}

// The analysis file's heads, checked against the model's maps; unknown fields dropped.
json load_analysis(const std::string& path, const json& maps) {
  const std::string text = io::read_file_bounded(path, uint64_t(64) << 20, "serve: the analysis file");
  json j;
  try {
    j = util::parse_json_bounded(text);
  } catch (const json::exception&) {
    j = json::value_t::discarded;
  }
  QS_CHECK(!j.is_discarded() && j.is_object() && j.contains("heads") && j["heads"].is_array(),
           "serve: the analysis file '{}' is not JSON of the form {{\"heads\": [{{\"layer\": 0, \"head\": 1, "
           "\"roles\": [...]}}]}} (see docs/viewer-api.md)", path);
  json heads = json::array();
  for (size_t i = 0; i < j["heads"].size(); ++i) {
    const json& e = j["heads"][i];
    QS_CHECK(e.is_object() && e.value("layer", json()).is_number_integer() &&
                 e.value("head", json()).is_number_integer(),
             "serve: analysis entry {} needs integer \"layer\" and \"head\", found {}", i, util::json_excerpt(e));
    json h = {{"layer", e["layer"]}, {"head", e["head"]}, {"roles", json::array()}};
    if (auto r = e.find("roles"); r != e.end() && r->is_array())
      for (const json& role : *r)
        if (role.is_string()) h["roles"].push_back(role);
    for (const char* k : {"name", "kind"})
      if (e.contains(k) && e[k].is_string()) h[k] = e[k];
    if (e.contains("confidence") && e["confidence"].is_number()) h["confidence"] = e["confidence"];
    const bool known = std::any_of(maps.begin(), maps.end(), [&](const json& m) {
      return h.contains("name") ? m["name"] == h["name"] : m["block"] == h["layer"];
    });
    const int64_t layer = h["layer"].get<int64_t>(), head = h["head"].get<int64_t>();
    QS_CHECK(known && head >= 0 && head < maps[0]["heads"].get<int64_t>(),
             "serve: analysis entry {} (layer {}, head {}{}) names no head of this model; is the file the analysis "
             "of this checkpoint?", i, layer, head, h.contains("name") ? ", " + h["name"].get<std::string>() : "");
    heads.push_back(std::move(h));
  }
  return {{"heads", std::move(heads)}, {"file", path}};
}

// 422 for a text without tokens, or one over the limit when the request did not ask to cut it.
void check_length(int64_t n_text, int64_t max_tokens, bool cut_ok) {
  if (n_text == 0) throw ApiError(422, "the text encodes to no tokens");
  if (!cut_ok && n_text > max_tokens)
    throw ApiError(422, fmt::format("the text is {} tokens; the limit is {} tokens per request (shorten it, or send "
                                    "\"max_tokens\" to keep only the first ones)", n_text, max_tokens));
}

}  // namespace

ViewerApi::ViewerApi(LoadedLm lm, const ViewerOptions& opt) : lm_(std::move(lm)), opt_(opt) {
  QS_CHECK(lm_.model && lm_.tokenizer, "serve: a model and its tokenizer are needed");
  QS_CHECK(opt.max_tokens > 0, "serve: --max-tokens must be positive, got {}", opt.max_tokens);
  const nn::LMConfig& c = lm_.model->config();
  max_tokens_ = std::min(opt.max_tokens, c.max_supported_length());
  threads_ = get_num_threads();
  lm_.model->eval();
  // One short run lists the attention maps the model captures (names, kinds, heads).
  const AttentionSnapshot probe = capture_attention(*lm_.model, *lm_.tokenizer, "a", 1);
  const int64_t model_limit = c.max_supported_length();
  describe(probe, {{"encoding", nn::position_encoding_name(c.pos.kind)},
                   {"vocabulary", {{"size", lm_.tokenizer->vocab_size()}, {"kind", lm_.tokenizer->name()}}},
                   {"model_max_tokens", model_limit == std::numeric_limits<int64_t>::max() ? json() : json(model_limit)},
                   {"trained_length", c.max_seq_len},
                   {"step", lm_.step},
                   {"model", {{"block", c.block}, {"attention", c.attention}, {"ffn", c.ffn}, {"d_model", c.d_model},
                              {"n_layers", c.n_layers}, {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads}}}});
}

ViewerApi::ViewerApi(LoadedMt mt, const ViewerOptions& opt) : mt_(std::make_unique<LoadedMt>(std::move(mt))), opt_(opt) {
  QS_CHECK(mt_->model, "serve: a translation model is needed");
  QS_CHECK(opt.max_tokens > 0, "serve: --max-tokens must be positive, got {}", opt.max_tokens);
  const nn::Seq2SeqConfig& c = mt_->model->config();
  max_tokens_ = std::min(opt.max_tokens, c.max_len - 1);  // source words; <eos> is appended
  threads_ = get_num_threads();
  mt_->model->eval();
  const AttentionSnapshot probe = capture_attention(*mt_, {"a"}, {"a"});
  describe(probe, {{"encoding", nn::position_encoding_name(c.pos.kind)},
                   {"vocabulary", {{"size", mt_->src_vocab.size()}, {"kind", "word (source)"},
                                   {"target_size", mt_->tgt_vocab.size()}}},
                   {"model_max_tokens", c.max_len - 1},
                   {"trained_length", c.max_len},
                   {"step", mt_->step},
                   {"model", {{"block", "seq2seq"}, {"d_model", c.d_model}, {"enc_layers", c.enc_layers},
                              {"dec_layers", c.dec_layers}, {"n_heads", c.n_heads}}}});
}

void ViewerApi::describe(const AttentionSnapshot& probe, json info) {
  json maps = json::array(), kinds = json::array();
  for (size_t l = 0; l < probe.maps.size(); ++l) {
    const AttentionMap& m = probe.maps[l];
    maps.push_back({{"layer", l}, {"block", m.layer}, {"name", m.name}, {"kind", m.kind}, {"heads", m.weights.size(0)}});
    if (std::find(kinds.begin(), kinds.end(), m.kind) == kinds.end()) kinds.push_back(m.kind);
  }
  QS_CHECK(!maps.empty(), "serve: the model captured no attention maps");
  info.update({{"layers", maps.size()},
               {"heads", maps[0]["heads"]},
               {"maps", maps},
               {"kinds", kinds},
               {"max_tokens", max_tokens_},
               {"checkpoint", opt_.checkpoint},
               {"limits", {{"dense", kViewerDenseMax}, {"thumbnail", kViewerThumbMax}, {"body_bytes", opt_.body_limit}}},
               {"analysis", opt_.analysis_file.empty() ? json() : load_analysis(opt_.analysis_file, maps)}});
  info_ = std::move(info);
}

// Runs the model on a request's text (at most `limit` tokens); n_text: the text's own count.
AttentionSnapshot ViewerApi::capture(const std::string& text, int64_t limit, bool cut_ok, int64_t& n_text) {
  if (!mt_) {
    n_text = int64_t(lm_.tokenizer->encode(text).size());
    check_length(n_text, max_tokens_, cut_ok);
    return capture_attention(*lm_.model, *lm_.tokenizer, text, limit);
  }
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(w);
  n_text = int64_t(words.size());
  check_length(n_text, max_tokens_, cut_ok);
  if (n_text > limit) words.resize(size_t(limit));
  return capture_attention(*mt_, words);
}

nlohmann::json ViewerApi::attention(const std::string& body) {
  const AttentionRequest q = parse_request(body, info_["maps"], max_tokens_);
  std::shared_ptr<const AttentionSnapshot> snap;
  int64_t n_text = 0;
  {
    std::lock_guard<std::mutex> lock(model_mu_);
    set_num_threads(threads_);  // OpenMP's thread count is per calling thread
    const int64_t limit = q.max_tokens.value_or(max_tokens_);
    // The page asks for the thumbnails and one head of the same text, then other heads of
    // it: the last text's capture answers them without running the model again.
    if (!last_ || last_text_ != q.text || last_limit_ != limit) {
      last_.reset();  // free the old capture before making the new one
      last_ = std::make_shared<const AttentionSnapshot>(capture(q.text, limit, q.max_tokens.has_value(), last_n_text_));
      last_text_ = q.text;
      last_limit_ = limit;
    }
    n_text = last_n_text_;
    check_length(n_text, max_tokens_, q.max_tokens.has_value());  // also for a cached capture
    snap = last_;
  }
  const AttentionSnapshot& s = *snap;
  json r = {{"tokens", s.tokens}, {"ids", s.ids}, {"n_tokens", s.ids.size()}, {"text_tokens", n_text},
            {"key_tokens", s.source_tokens.empty() ? s.tokens : s.source_tokens}};
  if (q.layer) {
    // Cross attention's keys are the source tokens; self and causal attention's are the tokens
    // (an encoder's "self" maps: the source tokens on both axes).
    const std::string& kind = s.maps[size_t(*q.layer)].kind;
    if (kind == "self" && !s.source_tokens.empty()) r["tokens"] = s.source_tokens;
    if (kind != "cross") r["key_tokens"] = r["tokens"];
    head_view(r, s, q);
  } else {
    r["view"] = "model";
    r["maps"] = model_view(s);
  }
  return r;
}

}  // namespace qs::apps
