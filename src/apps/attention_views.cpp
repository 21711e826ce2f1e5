// The dynamic attention views: one self-contained HTML page each (see
// include/qiusuo/apps/attention_report.h). The page's script is in attention_view_js.h.
#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "apps/attention_view_js.h"
#include "qiusuo/apps/attention_report.h"
#include "qiusuo/autograd.h"
#include "qiusuo/error.h"
#include "qiusuo/util/svg_plot.h"
#include "qiusuo/viz/image.h"

namespace qs::apps {

uint8_t quantize_log_u8(double w, double floor) {
  if (!(w >= floor)) return 0;  // also NaN
  const double q = 1 + std::round(254 * std::log10(w / floor) / std::log10(1 / floor));
  return uint8_t(std::min(q, 255.0));
}

double dequantize_log_u8(uint8_t q, double floor) {
  return q == 0 ? 0.0 : floor * std::pow(10.0, (q - 1) / 254.0 * std::log10(1 / floor));
}

namespace {

constexpr double kFloor = 1e-4;

int64_t pool_factor(int64_t n, int64_t view_max) { return (n + view_max - 1) / view_max; }

// Shapes and labels of the maps (shared by all frames).
nlohmann::json maps_meta(const AttentionSnapshot& s, int64_t view_max) {
  nlohmann::json maps = nlohmann::json::array();
  for (const AttentionMap& m : s.maps) {
    const bool source_rows = m.kind == "self" && !s.source_tokens.empty();
    const int64_t fr = pool_factor(m.weights.size(1), view_max), fc = pool_factor(m.weights.size(2), view_max);
    maps.push_back({{"name", m.name}, {"kind", m.kind}, {"layer", m.layer}, {"heads", m.weights.size(0)},
                    {"tokens_rows", m.weights.size(1)}, {"tokens_cols", m.weights.size(2)},
                    {"rows", (m.weights.size(1) + fr - 1) / fr}, {"cols", (m.weights.size(2) + fc - 1) / fc},
                    {"pool_rows", fr}, {"pool_cols", fc},
                    {"row_labels", source_rows ? "source" : "target"},
                    {"col_labels", source_rows || m.kind == "cross" ? "source" : "target"}});
  }
  return maps;
}

// Every head's (pooled) weights, one byte each, base64.
std::string pack(const AttentionMap& m, int64_t view_max) {
  std::string bytes;
  for (int64_t h = 0; h < m.weights.size(0); ++h) {
    const viz::Matrix p = viz::max_pool(viz::head_matrix(m.weights, h), view_max, view_max);
    for (float v : p.v) bytes.push_back(char(quantize_log_u8(v, kFloor)));
  }
  return viz::base64(bytes);
}

nlohmann::json base_data(const AttentionSnapshot& s, const std::string& kind, const std::string& title,
                         int64_t view_max) {
  QS_CHECK(view_max >= 8, "attention view: the view size must be >= 8 tokens, found {}", view_max);
  QS_CHECK(!s.maps.empty(), "attention view: the snapshot has no attention maps");
  nlohmann::json d = {{"kind", kind}, {"title", title}, {"tokens", s.tokens}, {"source_tokens", s.source_tokens},
                      {"floor", kFloor}, {"maps", maps_meta(s, view_max)}};
  std::vector<std::string> lut;
  for (int i = 0; i < 256; ++i) lut.push_back(viz::to_hex(viz::viridis(i / 255.0)));
  d["viridis"] = lut;
  return d;
}

std::string page(const nlohmann::json& data) {
  std::string json = data.dump();
  // Inside <script>, "</" could close the element early: JSON allows "<\/".
  for (size_t i = 0; (i = json.find("</", i)) != std::string::npos; i += 3) json.replace(i, 2, "<\\/");
  return fmt::format("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head>\n"
                     "<body>\n{}\n<script type=\"application/json\" id=\"data\">{}</script>\n<script>{}</script>\n"
                     "</body></html>\n",
                     util::xml_escape(data.value("title", std::string("attention"))), kViewCss, kViewBody, json,
                     kViewJs);
}

bool same_maps(const AttentionSnapshot& a, const AttentionSnapshot& b) {
  if (a.maps.size() != b.maps.size()) return false;
  for (size_t i = 0; i < a.maps.size(); ++i)
    if (a.maps[i].name != b.maps[i].name || a.maps[i].weights.shape() != b.maps[i].weights.shape()) return false;
  return true;
}

}  // namespace

std::string checkpoints_view_html(const std::vector<AttentionSnapshot>& snaps, const std::vector<std::string>& labels,
                                  const std::string& title, int64_t view_max) {
  QS_CHECK(!snaps.empty(), "attention view: no checkpoints given");
  QS_CHECK(labels.size() == snaps.size(), "attention view: {} labels for {} checkpoints", labels.size(), snaps.size());
  nlohmann::json d = base_data(snaps[0], "checkpoints", title, view_max);
  d["frames"] = nlohmann::json::array();
  for (size_t i = 0; i < snaps.size(); ++i) {
    QS_CHECK(snaps[i].ids == snaps[0].ids && snaps[i].source_ids == snaps[0].source_ids,
             "attention view: checkpoint '{}' tokenizes the text differently from '{}' ({} vs {} tokens); "
             "compare checkpoints of one tokenizer", labels[i], labels[0], snaps[i].ids.size(), snaps[0].ids.size());
    QS_CHECK(same_maps(snaps[i], snaps[0]),
             "attention view: checkpoint '{}' has other attention maps than '{}' (layers, heads or shapes differ); "
             "compare checkpoints of one model", labels[i], labels[0]);
    nlohmann::json f = {{"label", labels[i]}, {"data", nlohmann::json::array()}};
    for (const AttentionMap& m : snaps[i].maps) f["data"].push_back(pack(m, view_max));
    d["frames"].push_back(std::move(f));
  }
  return page(d);
}

GenerationCapture capture_generation(LoadedLm& lm, const std::string& prompt, const GenerateOptions& opt) {
  QS_CHECK(!prompt.empty(), "attention: the prompt is empty; hint: --prompt \"In the beginning\"");
  QS_CHECK(opt.max_tokens >= 1, "attention: --generate must be at least 1, found {}", opt.max_tokens);
  const std::vector<int32_t> ids = lm.tokenizer->encode(prompt);
  const int64_t n = int64_t(ids.size()), limit = lm.model->config().max_supported_length();
  QS_CHECK(n + opt.max_tokens <= limit,
           "attention: the prompt ({} tokens) plus --generate {} exceeds the {} tokens this model supports; "
           "hint: --generate {}", n, opt.max_tokens, limit, std::max<int64_t>(0, limit - n));
  nn::SamplingOptions so;
  so.temperature = opt.temperature;
  so.top_k = opt.top_k;
  so.top_p = opt.top_p;
  const std::vector<int64_t> out = lm.model->generate(std::vector<int64_t>(ids.begin(), ids.end()), opt.max_tokens,
                                                     nn::make_sampler(so), opt.seed);
  GenerationCapture g;
  g.prompt_tokens = n;
  std::vector<int32_t> all(out.begin(), out.end());
  g.generated = token_labels(*lm.tokenizer, std::vector<int32_t>(all.begin() + n, all.end()));
  all.pop_back();  // the last token is never attended from
  g.snapshot = capture_attention_ids(*lm.model, *lm.tokenizer, all);
  return g;
}

std::string generation_view_html(const GenerationCapture& g, const std::string& title, int64_t view_max) {
  QS_CHECK(!g.generated.empty() && g.prompt_tokens >= 1 &&
               int64_t(g.snapshot.tokens.size()) == g.prompt_tokens + int64_t(g.generated.size()) - 1,
           "attention view: a generation needs a prompt and tokens; found {} prompt + {} generated for {} captured",
           g.prompt_tokens, g.generated.size(), g.snapshot.tokens.size());
  nlohmann::json d = base_data(g.snapshot, "generation", title, view_max);
  d["prompt_tokens"] = g.prompt_tokens;
  d["generated"] = g.generated;
  d["data"] = nlohmann::json::array();
  for (const AttentionMap& m : g.snapshot.maps) d["data"].push_back(pack(m, view_max));
  d["frames"] = nlohmann::json::array();
  for (size_t k = 0; k < g.generated.size(); ++k)
    d["frames"].push_back({{"label", fmt::format("step {}: predicts \u201c{}\u201d", k + 1, g.generated[k])},
                           {"n", g.prompt_tokens + int64_t(k)}});
  return page(d);
}

}  // namespace qs::apps
