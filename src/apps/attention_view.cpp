// Attention of a trained LM on one text (see include/qiusuo/apps/attention_view.h).
#include "qiusuo/apps/attention_view.h"

#include "apps/attention_view_internal.h"

#include <fmt/format.h>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/text/tokenizer.h"

namespace qs::apps {
namespace {

// Length of the UTF-8 character starting at s[i] when it is whole and valid, else 0.
size_t utf8_char_len(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return 0;
  if (n == 2 && c < 0xC2) return 0;  // overlong
  return n;
}

std::string label_of(const std::string& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    const size_t n = utf8_char_len(bytes, i);
    if (n == 0 || (n == 1 && c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) {
      out += fmt::format("\\x{:02X}", c);
      ++i;
      continue;
    }
    if (c == ' ') out += "\u2423";
    else if (c == '\n') out += "\u23CE";
    else if (c == '\t') out += "\u21E5";
    else out.append(bytes, i, n);
    i += n;
  }
  return out.empty() ? std::string("\u2205") : out;
}

int64_t layer_of(const std::string& name) {
  // "blocks.<i>.attn", "encoder.blocks.<i>.self_attn", ...
  const size_t p = name.find("blocks.");
  if (p == std::string::npos) return 0;
  return std::strtoll(name.c_str() + p + 7, nullptr, 10);
}

}  // namespace

std::vector<AttentionMap> attention_maps(const nn::AttentionCapture& cap) {
  std::vector<AttentionMap> maps;
  for (const nn::CapturedAttention& r : cap.records()) {
    AttentionMap m;
    m.name = r.name;
    m.kind = r.name.find("cross") != std::string::npos ? "cross"
             : r.name.rfind("encoder.", 0) == 0         ? "self"
                                                        : "causal";
    m.layer = layer_of(r.name);
    m.weights = r.weights.select(0, 0).to(DType::f32).contiguous();
    maps.push_back(std::move(m));
  }
  return maps;
}

std::vector<std::string> token_labels(const text::Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int32_t id : ids) out.push_back(label_of(tok.decode({id})));
  return out;
}

AttentionSnapshot capture_attention(nn::TransformerLM& model, const text::Tokenizer& tok, const std::string& text,
                                    int64_t max_tokens) {
  QS_CHECK(!text.empty(), "attention: the text is empty; give at least one character");
  std::vector<int32_t> ids = tok.encode(text);
  if (max_tokens > 0 && int64_t(ids.size()) > max_tokens) ids.resize(size_t(max_tokens));
  return capture_attention_ids(model, tok, std::move(ids));
}

AttentionSnapshot capture_attention_ids(nn::TransformerLM& model, const text::Tokenizer& tok,
                                        std::vector<int32_t> ids) {
  QS_CHECK(!ids.empty(), "attention: no tokens to run the model on");
  AttentionSnapshot s;
  s.ids = std::move(ids);
  const int64_t n = int64_t(s.ids.size());
  const int64_t limit = model.config().max_supported_length();
  QS_CHECK(n <= limit, "attention: the text is {} tokens but this model supports at most {} (its {} encoding); "
           "shorten the text or pass a token limit", n, limit, nn::position_encoding_name(model.config().pos.kind));
  s.tokens = token_labels(tok, s.ids);
  std::vector<double> idv(s.ids.begin(), s.ids.end());
  const Tensor idx = from_vector(idv, {1, n}, DType::i64);
  nn::EvalScope eval_mode(model);
  NoGrad ng;
  nn::AttentionCapture cap;
  model.forward(idx);
  s.maps = attention_maps(cap);
  return s;
}

}  // namespace qs::apps
