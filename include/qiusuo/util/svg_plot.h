// Line plots as self-contained SVG text (no fonts or scripts to fetch): the figures of
// the experiments (perplexity against evaluation length, accuracy against size, ...).
#pragma once
#include <limits>
#include <string>
#include <vector>

namespace qs::util {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;  // same length; points with a non-finite x or y are skipped
};

struct PlotOptions {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;  // log axes need positive values (others are skipped)
  int width = 760, height = 460;
};

// Axes with "nice" ticks (the data's own x values when there are at most 12 of them),
// one polyline with markers per series, and a legend. Throws on mismatched x/y sizes.
std::string svg_line_plot(const std::vector<PlotSeries>& series, const PlotOptions& opts);

// One row of a horizontal bar chart: a category label and one value per series
// (non-finite values draw no bar).
struct BarGroup {
  std::string label;
  std::vector<double> values;
};

// Horizontal grouped bars, for categories that have no order (the variants of an
// experiment): one row per group with its label on the left, one bar per series drawn
// from zero (so negative values extend left), each bar's value printed at its end, a
// legend, and an optional dashed reference line (e.g. 1x). Throws when a group has more
// values than there are series.
std::string svg_bar_chart(const std::vector<std::string>& series, const std::vector<BarGroup>& groups,
                          const PlotOptions& opts, double reference = std::numeric_limits<double>::quiet_NaN());

// Escapes &, <, >, " and ' for SVG/HTML text.
std::string xml_escape(const std::string& s);

}  // namespace qs::util
