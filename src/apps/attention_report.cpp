// The static figures of `qiusuo attention` (see include/qiusuo/apps/attention_report.h).
#include "qiusuo/apps/attention_report.h"

#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "qiusuo/error.h"
#include "qiusuo/util/svg_plot.h"

namespace qs::apps {

namespace {

bool is_encoder_decoder(const AttentionSnapshot& s) { return !s.source_tokens.empty(); }

std::string stem_of(const AttentionMap& m, bool encdec) {
  if (!encdec && m.name == fmt::format("blocks.{}.attn", m.layer)) return fmt::format("layer{}", m.layer);
  const std::string part = m.kind == "cross"                       ? "cross"
                           : m.name.rfind("encoder.", 0) == 0      ? "encoder"
                           : m.name.rfind("decoder.", 0) == 0      ? "decoder"
                                                                   : "";
  if (!part.empty()) return fmt::format("{}_layer{}", part, m.layer);
  std::string s = m.name;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

struct Axes {
  const std::vector<std::string>* rows;
  const std::vector<std::string>* cols;
  std::string row_axis, col_axis;
};

// Encoder self-attention relates source tokens; cross-attention targets (rows) to sources.
Axes axes_of(const AttentionSnapshot& s, const AttentionMap& m) {
  const bool source_rows = m.kind == "self" && is_encoder_decoder(s);
  Axes a{source_rows ? &s.source_tokens : &s.tokens, m.kind == "cross" || source_rows ? &s.source_tokens : &s.tokens,
         m.kind == "cross" ? "query (target)" : "query", m.kind == "cross" ? "key (source)" : "key"};
  QS_CHECK(m.weights.defined() && m.weights.dim() == 3, "attention: map '{}' must hold [H, Tq, Tk] weights", m.name);
  QS_CHECK(int64_t(a.rows->size()) == m.weights.size(1) && int64_t(a.cols->size()) == m.weights.size(2),
           "attention: map '{}' is {}x{} but its tokens are {} (queries) and {} (keys)", m.name, m.weights.size(1),
           m.weights.size(2), a.rows->size(), a.cols->size());
  return a;
}

class Writer {
 public:
  Writer(std::string dir, const AttentionFigureOptions& o) : dir_(std::move(dir)), o_(o) {}
  void figure(const std::string& stem, const viz::Heatmap& h) {
    if (o_.png) save(stem + ".png", viz::encode_png(viz::heatmap_png(h, o_.style)));
    if (o_.svg) save(stem + ".svg", viz::heatmap_svg(h, o_.style));
  }
  void grid(const std::string& stem, const std::vector<viz::Heatmap>& panels, const std::string& title) {
    if (o_.png) save(stem + ".png", viz::encode_png(viz::heatmap_grid_png(panels, title, o_.style)));
    if (o_.svg) save(stem + ".svg", viz::heatmap_grid_svg(panels, title, o_.style));
  }
  void save(const std::string& name, const std::string& bytes) {
    io::write_file_atomic(dir_ + "/" + name, bytes);
    files.push_back(name);
  }
  // The PNG of a figure when written, else its SVG.
  std::string shown(const std::string& stem) const { return stem + (o_.png ? ".png" : ".svg"); }
  std::vector<std::string> files;

 private:
  std::string dir_;
  const AttentionFigureOptions& o_;
};

viz::Heatmap heatmap(std::string title, viz::Matrix m, const Axes& a) {
  return viz::Heatmap{std::move(title), std::move(m), *a.rows, *a.cols, a.row_axis, a.col_axis};
}

struct Section {
  std::string heading;
  std::vector<std::pair<std::string, std::string>> figures;  // caption, file
};

// Rollout over each stack of square self-attention maps.
void write_rollouts(const AttentionSnapshot& s, Writer& w, std::vector<Section>& page) {
  const bool encdec = is_encoder_decoder(s);
  for (const char* kind : {"self", "causal"}) {
    std::vector<Tensor> layers;
    const AttentionMap* first = nullptr;
    for (const AttentionMap& m : s.maps)
      if (m.kind == kind) layers.push_back(m.weights), first = first ? first : &m;
    if (layers.empty()) continue;
    const std::string stem = !encdec ? "rollout" : std::string(kind) == "self" ? "encoder_rollout" : "decoder_rollout";
    Axes a = axes_of(s, *first);
    a.row_axis = fmt::format("position after layer {}", layers.size() - 1);
    a.col_axis = "input token";
    const std::string title = fmt::format("{}attention rollout over {} layers (Abnar & Zuidema 2020)",
                                          encdec ? (std::string(kind) == "self" ? "encoder " : "decoder ") : "",
                                          layers.size());
    w.figure(stem, heatmap(title, viz::attention_rollout(layers), a));
    page.push_back({title, {{"rows: positions after the last layer; columns: the input tokens they draw on", w.shown(stem)}}});
  }
}

void write_index(const AttentionSnapshot& s, const AttentionFigureOptions& o, const std::vector<Section>& page,
                 Writer& w) {
  using util::xml_escape;
  std::string h = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>attention: " + xml_escape(o.title) +
                  "</title>\n<style>body{font-family:DejaVu Sans,Verdana,sans-serif;margin:1.5em;color:#222}"
                  "figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}img{max-width:100%;"
                  "border:1px solid #ddd}.tok{font-family:monospace;background:#f2f2f2;padding:0 2px;margin:1px;"
                  "display:inline-block}</style></head><body>\n";
  h += "<h1>Attention: " + xml_escape(o.title) + "</h1>\n<p>" + fmt::format("{} tokens", s.tokens.size());
  if (o.style.log) h += fmt::format(", log10 colour scale (weights below {:g} take the bottom colour)", o.style.log_floor);
  h += ":</p><p>";
  for (const std::string& t : s.tokens) h += "<span class=\"tok\">" + xml_escape(t) + "</span>";
  h += "</p>\n";
  for (const Section& sec : page) {
    h += "<h2>" + xml_escape(sec.heading) + "</h2>\n";
    for (const auto& [caption, file] : sec.figures)
      h += fmt::format("<figure><a href=\"{0}\"><img src=\"{0}\" loading=\"lazy\"></a><figcaption>{1}</figcaption>"
                       "</figure>\n", xml_escape(file), xml_escape(caption));
  }
  h += "<p>All files: ";
  for (const std::string& f : w.files) h += fmt::format("<a href=\"{0}\">{0}</a> ", xml_escape(f));
  h += "</p>\n</body></html>\n";
  w.save("index.html", h);
}

}  // namespace

std::vector<std::string> write_attention_figures(const AttentionSnapshot& s, const std::string& dir,
                                                 const AttentionFigureOptions& o) {
  QS_CHECK(!s.maps.empty(), "attention: the snapshot has no attention maps");
  QS_CHECK(o.png || o.svg, "attention: no output format chosen (png, svg)");
  std::vector<int64_t> layers;
  int64_t max_heads = 0;
  for (const AttentionMap& m : s.maps) {
    axes_of(s, m);
    if (std::find(layers.begin(), layers.end(), m.layer) == layers.end()) layers.push_back(m.layer);
    max_heads = std::max(max_heads, m.weights.size(0));
  }
  QS_CHECK(o.layer < 0 || std::find(layers.begin(), layers.end(), o.layer) != layers.end(),
           "attention: --layer {} does not exist; the model has layers {}", o.layer, fmt::join(layers, ", "));
  QS_CHECK(o.head < max_heads, "attention: --head {} does not exist; the maps have {} heads (0..{})", o.head, max_heads,
           max_heads - 1);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw IOError(fmt::format("attention: cannot create the output folder '{}': {}", dir,
                              ec ? ec.message() : std::string("a file of that name exists")));
  Writer w(dir, o);
  std::vector<Section> page;
  const bool encdec = is_encoder_decoder(s);
  for (const AttentionMap& m : s.maps) {
    if (o.layer >= 0 && m.layer != o.layer) continue;
    const Axes a = axes_of(s, m);
    const std::string stem = stem_of(m, encdec);
    const int64_t H = m.weights.size(0);
    Section sec{fmt::format("{} ({}, layer {}, {} heads)", m.name, m.kind, m.layer, H), {}};
    std::vector<viz::Heatmap> panels;
    for (int64_t h = 0; h < H; ++h) {
      panels.push_back(heatmap(fmt::format("head {}", h), viz::head_matrix(m.weights, h), a));
      if (o.head >= 0 && h != o.head) continue;
      w.figure(fmt::format("{}_head{}", stem, h),
               heatmap(fmt::format("{}: layer {}, head {}", m.name, m.layer, h), panels.back().m, a));
    }
    w.grid(stem + "_grid", panels, fmt::format("{}: all {} heads of layer {}", m.name, H, m.layer));
    sec.figures.push_back({"all heads, one colour scale", w.shown(stem + "_grid")});
    w.figure(stem + "_mean", heatmap(fmt::format("{}: layer {}, mean over {} heads", m.name, m.layer, H),
                                     viz::head_mean(m.weights), a));
    sec.figures.push_back({"mean over heads", w.shown(stem + "_mean")});
    for (int64_t h = 0; h < H; ++h)
      if (o.head < 0 || h == o.head) sec.figures.push_back({fmt::format("head {}", h), w.shown(fmt::format("{}_head{}", stem, h))});
    page.push_back(std::move(sec));
  }
  write_rollouts(s, w, page);
  write_index(s, o, page, w);
  nlohmann::json j = {{"tokens", s.tokens}, {"ids", s.ids}, {"log_scale", o.style.log}, {"log_floor", o.style.log_floor}};
  if (encdec) j["source_tokens"] = s.source_tokens, j["source_ids"] = s.source_ids;
  j["maps"] = nlohmann::json::array();
  for (const AttentionMap& m : s.maps)
    j["maps"].push_back({{"name", m.name}, {"kind", m.kind}, {"layer", m.layer}, {"stem", stem_of(m, encdec)},
                         {"shape", m.weights.shape()}});
  j["files"] = w.files;
  j["files"].push_back("attention.json");
  w.save("attention.json", j.dump(1));
  return w.files;
}

}  // namespace qs::apps
