// heads.svg: per attention type a grid of layers (rows) x heads (columns); each cell is
// coloured by the head's main role and labelled with its roles and confidence.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "qiusuo/apps/heads.h"
#include "qiusuo/util/svg_plot.h"

namespace qs::apps {

namespace {

constexpr int kCellW = 132, kCellH = 64, kLeft = 70, kTitleH = 40, kGap = 24;

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

std::string colour_of(const HeadMetrics& m) {
  for (const std::string& r : m.roles) {
    if (starts_with(r, "syntactic")) return "#b7e4b0";
    if (r == "alignment") return "#d5c3ef";
  }
  for (const std::string& r : m.roles) {
    if (starts_with(r, "positional")) return "#b9d7f2";
    if (r == "rare words") return "#f8d49a";
  }
  return "#eeeeee";
}

// Short cell lines: "pos -1", "nsubj d→h", "align .93", "rare", "removable"; at most 4.
std::vector<std::string> cell_lines(const HeadMetrics& m) {
  std::vector<std::string> lines;
  for (const std::string& r : m.roles) {
    if (starts_with(r, "positional")) lines.push_back("pos " + r.substr(11));
    else if (starts_with(r, "syntactic")) {
      std::string s = r.substr(10);
      const size_t sp = s.find(' ');
      lines.push_back(s.substr(0, sp) + (s.substr(sp + 1) == "dep->head" ? " d→h" : " h→d"));
    } else if (r == "alignment") lines.push_back(fmt::format("align {:.2f}", m.alignment));
    else if (r == "rare words") lines.push_back("rare words");
    else if (r == "<eos> sink") lines.push_back("<eos> sink");
    else if (r == "first-token sink") lines.push_back("first-token sink");
  }
  if (lines.size() > 3) {
    const size_t extra = lines.size() - 2;
    lines.resize(2);
    lines.push_back(fmt::format("+{} more", extra));
  }
  if (lines.empty()) lines.push_back("—");
  lines.push_back(fmt::format("conf {:.2f}{}", m.confidence, m.pruned ? " · rm" : ""));
  return lines;
}

std::string kind_label(const std::string& kind, const std::string& model) {
  if (model == "lm") return "causal self-attention (LM)";
  if (kind == "self") return "encoder self-attention";
  if (kind == "causal") return "decoder self-attention";
  return "cross-attention";
}

}  // namespace

std::string heads_svg(const HeadsReport& r) {
  int64_t max_heads = 1;
  for (const HeadMetrics& m : r.heads) max_heads = std::max(max_heads, m.head + 1);
  std::string body;
  int y = kTitleH;
  for (const std::string kind : {"self", "causal", "cross"}) {
    int64_t layers = 0;
    for (const HeadMetrics& m : r.heads)
      if (m.kind == kind) layers = std::max(layers, m.layer + 1);
    if (layers == 0) continue;
    body += fmt::format("<text x='8' y='{}' font-size='15' font-weight='bold'>{}</text>\n", y + 16,
                        util::xml_escape(kind_label(kind, r.model_kind)));
    y += 24;
    for (int64_t h = 0; h < max_heads; ++h)
      body += fmt::format("<text x='{}' y='{}' font-size='12' text-anchor='middle'>head {}</text>\n",
                          kLeft + h * kCellW + kCellW / 2, y + 12, h);
    y += 18;
    for (int64_t l = 0; l < layers; ++l) {
      body += fmt::format("<text x='8' y='{}' font-size='12'>layer {}</text>\n", y + l * kCellH + kCellH / 2 + 4, l);
    }
    for (const HeadMetrics& m : r.heads) {
      if (m.kind != kind) continue;
      const int64_t x0 = kLeft + m.head * kCellW, y0 = y + m.layer * kCellH;
      body += fmt::format("<g><title>{}</title><rect x='{}' y='{}' width='{}' height='{}' fill='{}' stroke='#666'/>\n",
                          util::xml_escape(fmt::format("{} head {}", m.name, m.head)), x0, y0, kCellW, kCellH, colour_of(m));
      const auto lines = cell_lines(m);
      for (size_t i = 0; i < lines.size(); ++i)
        body += fmt::format("<text x='{}' y='{}' font-size='11' text-anchor='middle'{}>{}</text>\n", x0 + kCellW / 2,
                            y0 + 15 + int64_t(i) * 14, i + 1 == lines.size() ? " fill='#555'" : "",
                            util::xml_escape(lines[i]));
      body += "</g>\n";
    }
    y += int(layers) * kCellH + kGap;
  }
  const int legend_y = y;
  const std::vector<std::pair<std::string, std::string>> legend = {
      {"#b7e4b0", "syntactic"}, {"#d5c3ef", "alignment"}, {"#b9d7f2", "positional"}, {"#f8d49a", "rare words"},
      {"#eeeeee", "none found"}};
  body += fmt::format("<text x='{}' y='{}' font-size='12'>rm: removable within the BLEU budget</text>\n",
                      kLeft + 5 * 120, legend_y + 12);
  for (size_t i = 0; i < legend.size(); ++i)
    body += fmt::format("<rect x='{}' y='{}' width='14' height='14' fill='{}' stroke='#666'/><text x='{}' y='{}' "
                        "font-size='12'>{}</text>\n",
                        kLeft + int(i) * 120, legend_y, legend[i].first, kLeft + int(i) * 120 + 20, legend_y + 12,
                        legend[i].second);
  const int64_t width = std::max<int64_t>(kLeft + max_heads * kCellW + 20, kLeft + 5 * 120 + 260), height = legend_y + 30;
  return fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif'>\n"
                     "<rect width='100%' height='100%' fill='white'/>\n"
                     "<text x='8' y='24' font-size='17'>{}</text>\n{}</svg>\n",
                     width, height, util::xml_escape(fmt::format("attention heads: {} (step {})", r.checkpoint, r.step)),
                     body);
}

}  // namespace qs::apps
