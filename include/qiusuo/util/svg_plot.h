// Line plots as self-contained SVG text (no fonts or scripts to fetch): the figures of
// the experiments (perplexity against evaluation length, accuracy against size, ...).
#pragma once
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

// Escapes &, <, >, " and ' for SVG/HTML text.
std::string xml_escape(const std::string& s);

}  // namespace qs::util
