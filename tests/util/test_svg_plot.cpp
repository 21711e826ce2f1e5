#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>

#include "qiusuo/util/svg_plot.h"

namespace qs::util {
namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST(SvgPlot, OneLinePerSeriesWithEscapedLabels) {
  std::vector<PlotSeries> s = {{"rope <base 1e4>", {512, 1024, 2048}, {20, 18, 25}},
                               {"learned", {512, 1024, 2048}, {21, 19, std::numeric_limits<double>::infinity()}}};
  PlotOptions o;
  o.title = "ppl & length";
  o.log_x = true;
  std::string svg = svg_line_plot(s, o);
  EXPECT_EQ(count(svg, "<polyline"), 2u);
  EXPECT_EQ(count(svg, "<circle"), 5u);  // the infinite point is skipped
  EXPECT_NE(svg.find("rope &lt;base 1e4&gt;"), std::string::npos);
  EXPECT_NE(svg.find("ppl &amp; length"), std::string::npos);
  EXPECT_NE(svg.find(">1024<"), std::string::npos);  // the data's x values are the ticks
  EXPECT_EQ(svg.rfind("</svg>\n"), svg.size() - 7);
}

// The PE experiment plots nine series: each needs its own colour.
TEST(SvgPlot, TenSeriesGetTenColours) {
  std::vector<PlotSeries> s;
  for (int i = 0; i < 10; ++i) s.push_back({"s" + std::to_string(i), {1, 2}, {1.0 + i, 2.0 + i}});
  std::string svg = svg_line_plot(s, {});
  std::set<std::string> colours;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) {
    const size_t c = svg.find("stroke=\"", p) + 8;
    colours.insert(svg.substr(c, 7));
  }
  EXPECT_EQ(colours.size(), 10u);
}

TEST(SvgPlot, MismatchedSeriesIsAnError) {
  EXPECT_THROW(svg_line_plot({{"a", {1, 2}, {1}}}, {}), std::exception);
}

TEST(SvgPlot, NoDataStillGivesAValidDocument) {
  std::string svg = svg_line_plot({{"a", {1}, {std::nan("")}}}, {});
  EXPECT_NE(svg.find("no data"), std::string::npos);
}

// Bars start at zero: a negative value extends left of the zero line, a positive one right.
TEST(SvgPlot, BarChartDrawsOneBarPerFiniteValueFromZero) {
  PlotOptions o;
  o.title = "change & speed";
  std::string svg = svg_bar_chart({"b64", "b1"}, {{"CNN <int8>", {2.37, 0.61}}, {"LM", {-1.13, std::nan("")}}}, o, 1.0);
  EXPECT_EQ(count(svg, "<rect x="), 3u + 2u);  // three bars and two legend swatches
  EXPECT_NE(svg.find("CNN &lt;int8&gt;"), std::string::npos);
  EXPECT_NE(svg.find("change &amp; speed"), std::string::npos);
  EXPECT_EQ(count(svg, "stroke-dasharray"), 1u);  // the reference line
  auto bar_x = [&](const std::string& value) {    // the left edge of the bar whose label is `value`
    const size_t label = svg.find(">" + value + "</text>");
    const size_t rect = svg.rfind("<rect x=\"", label);
    return std::stod(svg.substr(rect + 9));
  };
  EXPECT_LT(bar_x("-1.13"), bar_x("2.37"));  // the negative bar starts left of zero, where the positive one starts
  EXPECT_DOUBLE_EQ(bar_x("2.37"), bar_x("0.61"));
  EXPECT_THROW(svg_bar_chart({"a"}, {{"g", {1, 2}}}, {}), std::exception);
}

}  // namespace
}  // namespace qs::util
