// Heatmap figures: colour scales, rollout, pooling, and the PNG and SVG of one figure.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>

#include "qiusuo/viz/heatmap.h"
#include "test_util.h"

namespace qs::viz {
namespace {

TEST(ColorScale, LogMapsDecadesEvenly) {
  Matrix m{1, 3, {0.0f, 1e-6f, 1.0f}};
  const ColorScale s = ColorScale::fit({&m}, true, 1e-4);
  EXPECT_DOUBLE_EQ(s.lo, 1e-4);
  EXPECT_DOUBLE_EQ(s.hi, 1.0);
  EXPECT_DOUBLE_EQ(s.position(1e-4), 0.0);
  EXPECT_DOUBLE_EQ(s.position(0.0), 0.0);  // below the floor: the bottom colour
  EXPECT_DOUBLE_EQ(s.position(1e-6), 0.0);
  EXPECT_NEAR(s.position(1e-2), 0.5, 1e-12);
  EXPECT_NEAR(s.position(1e-3), 0.25, 1e-12);
  EXPECT_DOUBLE_EQ(s.position(1.0), 1.0);
  std::vector<std::string> labels;
  for (const auto& t : s.ticks()) labels.push_back(t.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"\u22641e-4", "1e-3", "0.01", "0.1", "1"}));
  EXPECT_NE(testing::error_of([&] { ColorScale::fit({&m}, true, 0.0); }).find("floor"), std::string::npos);
}

TEST(ColorScale, LinearFromZeroToTheLargest) {
  Matrix m{1, 2, {0.1f, 0.8f}};
  const ColorScale s = ColorScale::fit({&m}, false);
  EXPECT_NEAR(s.hi, 0.8, 1e-7);
  EXPECT_NEAR(s.position(0.4), 0.5, 1e-6);
  EXPECT_EQ(s.color(0.8f), viridis(1.0));
  std::vector<std::string> labels;
  for (const auto& t : s.ticks()) labels.push_back(t.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"0", "0.2", "0.4", "0.6", "0.8"}));
}

TEST(Rollout, MatchesAHandComputedTwoLayerExample) {
  // Layer 1, two heads: mean = [[1,0,0],[1,0,0],[0,.5,.5]] -> A1 = [[1,0,0],[.5,.5,0],[0,.25,.75]].
  Tensor w1 = from_vector({1, 0, 0, 1, 0, 0, 0, 1, 0,  //
                           1, 0, 0, 1, 0, 0, 0, 0, 1},
                          {2, 3, 3});
  // Layer 2, one head whose row 0 sums to 2 (renormalised): A2 = [[1,0,0],[0,1,0],[.5,0,.5]].
  Tensor w2 = from_vector({2, 0, 0, 0, 1, 0, 1, 0, 0}, {1, 3, 3});
  const Matrix r = attention_rollout({w1, w2});  // A2 A1 (A1 A2 differs in rows 1 and 2)
  const std::vector<float> want = {1, 0, 0, .5f, .5f, 0, .5f, .125f, .375f};
  ASSERT_EQ(r.rows, 3);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(r.v[i], want[i], 1e-6) << "entry " << i;
  EXPECT_NE(testing::error_of([] { attention_rollout({}); }).find("no layers"), std::string::npos);
  EXPECT_NE(testing::error_of([&] { attention_rollout({w1, from_vector({1, 0, 0, 1}, {1, 2, 2})}); }).find("layer 1"),
            std::string::npos);
}

TEST(Matrices, HeadsMeanAndMaxPool) {
  Tensor w = from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  EXPECT_EQ(head_matrix(w, 1).v, (std::vector<float>{5, 6, 7, 8}));
  EXPECT_EQ(head_mean(w).v, (std::vector<float>{3, 4, 5, 6}));
  EXPECT_NE(testing::error_of([&] { head_matrix(w, 2); }).find("2 heads"), std::string::npos);
  Matrix m{5, 5, {}};
  for (int i = 0; i < 25; ++i) m.v.push_back(float(i == 7 ? 100 : i));
  const Matrix p = max_pool(m, 2, 2);  // blocks of 3 x 3
  ASSERT_EQ(p.rows, 2);
  ASSERT_EQ(p.cols, 2);
  EXPECT_EQ(p.v, (std::vector<float>{100, 14, 22, 24}));
}

// Elements balance, attribute values are quoted, and every '&' starts an entity.
void expect_well_formed(const std::string& svg) {
  std::vector<std::string> stack;
  size_t i = 0;
  int elements = 0;
  while ((i = svg.find('<', i)) != std::string::npos) {
    const size_t j = svg.find('>', i);
    ASSERT_NE(j, std::string::npos);
    const std::string tag = svg.substr(i + 1, j - i - 1);
    ASSERT_EQ(tag.find('<'), std::string::npos) << tag;
    const bool closing = tag[0] == '/', self = tag.back() == '/';
    const std::string name = tag.substr(closing, tag.find_first_of(" /", closing) - closing);
    if (closing) {
      ASSERT_FALSE(stack.empty()) << "</" << name << "> without an opening tag";
      ASSERT_EQ(stack.back(), name);
      stack.pop_back();
    } else if (!self) {
      stack.push_back(name);
    }
    ++elements;
    i = j + 1;
  }
  EXPECT_TRUE(stack.empty());
  EXPECT_GT(elements, 3);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  const std::regex bad_amp("&(?!(amp|lt|gt|quot|#39);)");
  EXPECT_FALSE(std::regex_search(svg, bad_amp));
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t i = 0; (i = s.find(what, i)) != std::string::npos; i += what.size()) ++n;
  return n;
}

Heatmap small_map() {
  Heatmap h;
  h.title = "layer 0, head 1";
  h.m = Matrix{3, 3, {1, 0, 0, 0, 0, 0, 0, 0.5f, 0}};
  h.row_labels = h.col_labels = {"<s>", "a&b", "\u00e9\u2423"};
  return h;
}

TEST(Heatmap, SvgIsWellFormedWithEscapedLabels) {
  const std::string svg = heatmap_svg(small_map());
  expect_well_formed(svg);
  EXPECT_NE(svg.find("&lt;s&gt;"), std::string::npos);
  EXPECT_NE(svg.find("a&amp;b"), std::string::npos);
  EXPECT_NE(svg.find("\u00e9\u2423"), std::string::npos);
  EXPECT_EQ(svg.find("<s>"), std::string::npos);
  EXPECT_NE(svg.find("layer 0, head 1"), std::string::npos);
  EXPECT_NE(svg.find(to_hex(viridis(1.0))), std::string::npos);  // the cell of the maximum
  EXPECT_EQ(svg.find("<image"), std::string::npos);               // small: one <rect> per cell
  EXPECT_EQ(count(svg, "rotate(-90"), 3u + 0u + 1u);              // 3 column labels + the row axis title
}

TEST(Heatmap, PngShowsEachCellInItsColour) {
  HeatmapStyle st;
  const Image img = decode_png(encode_png(heatmap_png(small_map(), st)));  // through a PNG file's bytes
  // The first pixel of the maximum's colour (row-major scan) is the top-left cell's corner:
  // the colour bar starts at the same height, but to the right.
  const Rgb top = viridis(1.0);
  int x0 = -1, y0 = -1;
  for (int y = 0; y < img.height() && x0 < 0; ++y)
    for (int x = 0; x < img.width(); ++x)
      if (img.pixel(x, y) == top) {
        x0 = x, y0 = y;
        break;
      }
  ASSERT_GE(x0, 0);
  const int c = st.cell_px;
  for (int dy = 0; dy < c; ++dy)
    for (int dx = 0; dx < c; ++dx) ASSERT_EQ(img.pixel(x0 + dx, y0 + dy), top);
  EXPECT_EQ(img.pixel(x0 + c + c / 2, y0 + 2 * c + c / 2), viridis(0.5));  // row 2, column 1: 0.5
  EXPECT_EQ(img.pixel(x0 + 2 * c + c / 2, y0 + c / 2), viridis(0.0));      // row 0, column 2: 0
  // Same figure as the SVG: the same size.
  const std::string svg = heatmap_svg(small_map(), st);
  EXPECT_NE(svg.find(fmt::format("width=\"{}\" height=\"{}\"", img.width(), img.height())), std::string::npos);
}

TEST(Heatmap, ThousandTokensStayWithinTheCap) {
  const int64_t T = 1024;
  Heatmap h;
  h.title = "1024 tokens";
  h.m = Matrix{T, T, std::vector<float>(size_t(T * T), 0.0f)};
  for (int64_t i = 0; i < T; ++i) {
    h.m.v[size_t(i * T)] = 0.5f, h.m.v[size_t(i * T + i)] += 0.5f;
    h.row_labels.push_back("t" + std::to_string(i));
  }
  h.col_labels = h.row_labels;
  HeatmapStyle st;
  const Image img = heatmap_png(h, st);
  EXPECT_LE(img.width(), 4096);
  EXPECT_LE(img.height(), 4096);
  const std::string svg = heatmap_svg(h, st);
  expect_well_formed(svg);
  EXPECT_EQ(count(svg, "<image"), 1u);  // the matrix as an embedded PNG
  EXPECT_LT(count(svg, "<text"), 400u);  // labels thinned
  EXPECT_NE(svg.find("every 7th label"), std::string::npos);
  st.max_matrix_px = 256;  // 4 x 4 tokens per drawn cell
  const std::string pooled = heatmap_svg(h, st);
  EXPECT_NE(pooled.find("cells: max of 4x4 tokens"), std::string::npos);
  EXPECT_LE(heatmap_png(h, st).width(), 600);
  st.max_matrix_px = 3585;
  EXPECT_NE(testing::error_of([&] { heatmap_png(h, st); }).find("16..3584"), std::string::npos);
}

TEST(Heatmap, GridSharesOneColourBar) {
  std::vector<Heatmap> panels;
  for (int hd = 0; hd < 5; ++hd) {
    Heatmap p = small_map();
    p.title = "head " + std::to_string(hd);
    panels.push_back(p);
  }
  const std::string svg = heatmap_grid_svg(panels, "layer 0: 5 heads");
  expect_well_formed(svg);
  EXPECT_EQ(count(svg, ">head "), 5u);
  EXPECT_EQ(count(svg, ">weight<"), 1u);  // one colour bar
  const Image img = heatmap_grid_png(panels, "layer 0: 5 heads");
  EXPECT_GT(img.width(), 3 * 54);  // 3 columns of 3 x 18 px panels
  EXPECT_NE(testing::error_of([] { heatmap_grid_png({}, "x"); }).find("no panels"), std::string::npos);
  Heatmap bad = small_map();
  bad.row_labels.pop_back();
  EXPECT_NE(testing::error_of([&] { heatmap_png(bad); }).find("2 row labels for 3 rows"), std::string::npos);
}

}  // namespace
}  // namespace qs::viz
