#include "qiusuo/util/svg_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <set>

#include "qiusuo/error.h"

namespace qs::util {

std::string xml_escape(const std::string& s) {
  std::string r;
  r.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': r += "&amp;"; break;
      case '<': r += "&lt;"; break;
      case '>': r += "&gt;"; break;
      case '"': r += "&quot;"; break;
      case '\'': r += "&#39;"; break;
      default: r += c;
    }
  }
  return r;
}

namespace {

// Ticks at 1, 2 or 5 times a power of ten covering [lo, hi], about `want` of them.
std::vector<double> nice_ticks(double lo, double hi, int want) {
  if (!(hi > lo)) return {lo};
  double raw = (hi - lo) / want, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag * (raw / mag < 1.5 ? 1 : raw / mag < 3.5 ? 2 : raw / mag < 7.5 ? 5 : 10);
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

std::string tick_label(double v) {
  if (v != 0 && (std::fabs(v) >= 1e6 || std::fabs(v) < 1e-3)) return fmt::format("{:.1e}", v);
  return fmt::format("{:g}", v);
}

struct Axis {
  double lo, hi;
  bool log;
  double map(double v, double a, double b) const {  // data -> pixel in [a, b]
    double t = log ? (std::log(v) - std::log(lo)) / (std::log(hi) - std::log(lo)) : (v - lo) / (hi - lo);
    return a + t * (b - a);
  }
};

Axis make_axis(const std::vector<double>& vals, bool log) {
  double lo = *std::min_element(vals.begin(), vals.end()), hi = *std::max_element(vals.begin(), vals.end());
  if (hi == lo) {
    lo = log ? lo / 2 : lo - 1;
    hi = log ? hi * 2 : hi + 1;
  } else if (!log) {
    double pad = (hi - lo) * 0.05;
    lo -= pad;
    hi += pad;
  } else {
    lo /= 1.08;
    hi *= 1.08;
  }
  return {lo, hi, log};
}

bool usable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

}  // namespace

std::string svg_line_plot(const std::vector<PlotSeries>& series, const PlotOptions& o) {
  // Ten distinct colours (tab10's, reordered), then they repeat.
  static const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
  std::vector<double> xs, ys;
  std::set<double> distinct_x;
  for (const auto& s : series) {
    QS_CHECK(s.x.size() == s.y.size(), "svg_line_plot: series '{}' has {} x values but {} y values", s.label,
             s.x.size(), s.y.size());
    for (size_t i = 0; i < s.x.size(); ++i)
      if (usable(s.x[i], o.log_x) && usable(s.y[i], o.log_y)) {
        xs.push_back(s.x[i]);
        ys.push_back(s.y[i]);
        distinct_x.insert(s.x[i]);
      }
  }
  const double W = o.width, H = o.height, left = 74, right = W - 170, top = 40, bottom = H - 56;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      o.width, o.height, (left + right) / 2, xml_escape(o.title));
  if (xs.empty()) return svg + fmt::format("<text x=\"{}\" y=\"{}\">no data</text>\n</svg>\n", left, H / 2);
  Axis ax = make_axis(xs, o.log_x), ay = make_axis(ys, o.log_y);
  std::vector<double> xt = distinct_x.size() <= 12 ? std::vector<double>(distinct_x.begin(), distinct_x.end())
                                                   : nice_ticks(ax.lo, ax.hi, 8);
  std::vector<double> yt = nice_ticks(ay.lo, ay.hi, 6);
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", left, top,
                     right - left, bottom - top);
  for (double t : xt) {
    if (t < ax.lo || t > ax.hi) continue;
    double px = ax.map(t, left, right);
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0:.1f}\" y=\"{3}\" "
        "text-anchor=\"middle\">{4}</text>\n",
        px, top, bottom, bottom + 16, tick_label(t));
  }
  for (double t : yt) {
    if (t < ay.lo || t > ay.hi) continue;
    double py = ay.map(t, bottom, top);
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/><text x=\"{3}\" y=\"{4:.1f}\" "
        "text-anchor=\"end\">{5}</text>\n",
        left, py, right, left - 6, py + 4, tick_label(t));
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (left + right) / 2, H - 16,
                     xml_escape(o.x_label + (o.log_x ? " (log scale)" : "")));
  svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     (top + bottom) / 2, xml_escape(o.y_label + (o.log_y ? " (log scale)" : "")));
  for (size_t si = 0; si < series.size(); ++si) {
    const auto& s = series[si];
    const char* c = kColours[si % std::size(kColours)];
    std::string pts, marks;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], o.log_x) || !usable(s.y[i], o.log_y)) continue;
      double px = ax.map(s.x[i], left, right), py = ay.map(s.y[i], bottom, top);
      pts += fmt::format("{:.1f},{:.1f} ", px, py);
      marks += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>", px, py, c);
    }
    if (!pts.empty())
      svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>{}\n", pts, c, marks);
    double ly = top + 10 + 20 * double(si);
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"{3}\" stroke-width=\"2\"/><text x=\"{4}\" "
        "y=\"{5:.1f}\">{6}</text>\n",
        right + 12, ly, right + 36, c, right + 42, ly + 4, xml_escape(s.label));
  }
  return svg + "</svg>\n";
}

std::string svg_bar_chart(const std::vector<std::string>& series, const std::vector<BarGroup>& groups,
                          const PlotOptions& o, double reference) {
  static const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"};
  std::vector<double> vals{0.0};
  if (std::isfinite(reference)) vals.push_back(reference);
  for (const auto& g : groups) {
    QS_CHECK(g.values.size() <= series.size(), "svg_bar_chart: group '{}' has {} values but there are {} series",
             g.label, g.values.size(), series.size());
    for (double v : g.values)
      if (std::isfinite(v)) vals.push_back(v);
  }
  const double bar = 14, gap = 10, row = bar * double(std::max<size_t>(series.size(), 1)) + gap;
  const double left = 190, right = o.width - 150, top = 44, bottom = top + row * double(groups.size()) + 6;
  const double H = bottom + 52;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      o.width, H, (left + right) / 2, xml_escape(o.title));
  const Axis ax = make_axis(vals, false);
  for (double t : nice_ticks(ax.lo, ax.hi, 6)) {
    const double px = ax.map(t, left, right);
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"{3}\"/><text x=\"{0:.1f}\" "
        "y=\"{4}\" text-anchor=\"middle\">{5}</text>\n",
        px, top, bottom, t == 0 ? "#444" : "#ddd", bottom + 16, tick_label(t));
  }
  if (std::isfinite(reference))
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#444\" "
                       "stroke-dasharray=\"5,4\"/>\n",
                       ax.map(reference, left, right), top - 4, bottom);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (left + right) / 2, H - 16,
                     xml_escape(o.x_label));
  const double zero = ax.map(0.0, left, right);
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const double y0 = top + row * double(gi) + gap / 2;
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 8,
                       y0 + (row - gap) / 2 + 4, xml_escape(groups[gi].label));
    for (size_t si = 0; si < groups[gi].values.size(); ++si) {
      const double v = groups[gi].values[si];
      if (!std::isfinite(v)) continue;
      const double px = ax.map(v, left, right), y = y0 + bar * double(si);
      svg += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/><text x=\"{:.1f}\" "
          "y=\"{:.1f}\" text-anchor=\"{}\" font-size=\"10\">{}</text>\n",
          std::min(px, zero), y, std::fabs(px - zero), bar - 2, kColours[si % std::size(kColours)],
          v >= 0 ? px + 3 : px - 3, y + bar - 4, v >= 0 ? "start" : "end", fmt::format("{:.3g}", v));
    }
  }
  for (size_t si = 0; si < series.size() && series.size() > 1; ++si) {
    const double ly = top + 10 + 20 * double(si);
    svg += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"18\" height=\"10\" fill=\"{}\"/><text x=\"{}\" "
                       "y=\"{:.1f}\">{}</text>\n",
                       right + 40, ly - 5, kColours[si % std::size(kColours)], right + 64, ly + 4,
                       xml_escape(series[si]));
  }
  return svg + "</svg>\n";
}

}  // namespace qs::util
