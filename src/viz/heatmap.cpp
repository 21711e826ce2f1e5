// Heatmap figures (see include/qiusuo/viz/heatmap.h): laid out once, drawn on a PNG or an
// SVG canvas.
#include "qiusuo/viz/heatmap.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "qiusuo/error.h"
#include "viz/canvas.h"

namespace qs::viz {

namespace {

constexpr Rgb kFrame{150, 150, 150};

struct Figure {
  int w = 0, h = 0;
  std::function<void(Canvas&)> draw;
};

void check_style(const HeatmapStyle& s) {
  QS_CHECK(s.font_px >= 6 && s.font_px <= 64 && s.cell_px >= 1 && s.max_matrix_px >= 16 && s.max_matrix_px <= 3584 &&
               s.grid_panel_px >= 16 && s.label_chars >= 1,
           "heatmap: style out of range (font_px {}, cell_px {}, max_matrix_px {} (16..3584), grid_panel_px {})",
           s.font_px, s.cell_px, s.max_matrix_px, s.grid_panel_px);
}

void check_matrix(const Matrix& m, const std::string& title) {
  QS_CHECK(m.rows >= 1 && m.cols >= 1 && m.v.size() == size_t(m.rows * m.cols),
           "heatmap '{}': expected a non-empty matrix with rows x cols values, found {}x{} with {} values", title,
           m.rows, m.cols, m.v.size());
}

// At most `n` characters (code points); longer labels end in "…".
std::string cut_label(const std::string& s, int n) {
  int count = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
    if (++count > n) return s.substr(0, i) + "\u2026";
  }
  return s;
}

std::string ordinal(int64_t k) {
  const char* suf = (k % 100 >= 11 && k % 100 <= 13) ? "th" : k % 10 == 1 ? "st" : k % 10 == 2 ? "nd" : k % 10 == 3 ? "rd" : "th";
  return fmt::format("{}{}", k, suf);
}

Image cell_image(const Matrix& p, const ColorScale& s) {
  Image img(int(p.cols), int(p.rows));
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < p.cols; ++c) img.set(int(c), int(r), s.color(p.at(r, c)));
  return img;
}

double colorbar_width(const ColorScale& s, const HeatmapStyle& st) {
  double w = 0;
  for (const auto& t : s.ticks()) w = std::max(w, Font::get().text_width(t.label, st.font_px));
  return 18 + 14 + 6 + w + 10;
}

// A vertical bar at (x, y), height h, top = the scale's top; ticks with labels on its right.
void draw_colorbar(Canvas& c, double x, double y, double h, const ColorScale& s, const HeatmapStyle& st) {
  c.ramp(x, y, 14, h);
  c.frame(x, y, 14, h, kFrame);
  for (const auto& t : s.ticks()) {
    const double ty = y + h - t.position * (h - 1) - 0.5;
    c.rect(x + 14, ty - 0.5, 4, 1, kBlack);
    c.text(x + 21, ty, t.label, st.font_px, kBlack, Align::start, TextDir::horizontal);
  }
  c.text(x, y - st.font_px * 0.9, s.log ? "log10" : "weight", st.font_px * 0.85, kGrey, Align::start,
         TextDir::horizontal);
}

Figure layout_single(const Heatmap& hm, const HeatmapStyle& st) {
  check_style(st);
  const Matrix& m = hm.m;
  check_matrix(m, hm.title);
  QS_CHECK(hm.row_labels.empty() || int64_t(hm.row_labels.size()) == m.rows,
           "heatmap '{}': {} row labels for {} rows", hm.title, hm.row_labels.size(), m.rows);
  QS_CHECK(hm.col_labels.empty() || int64_t(hm.col_labels.size()) == m.cols,
           "heatmap '{}': {} column labels for {} columns", hm.title, hm.col_labels.size(), m.cols);
  const Font& font = Font::get();
  const double fp = st.font_px;
  auto pooled = std::make_shared<Matrix>(max_pool(m, st.max_matrix_px, st.max_matrix_px));
  const int64_t fr = (m.rows + pooled->rows - 1) / pooled->rows, fc = (m.cols + pooled->cols - 1) / pooled->cols;
  const double cs = std::clamp(std::floor(double(st.max_matrix_px) / double(std::max(pooled->rows, pooled->cols))), 1.0,
                               double(st.cell_px));
  const double mw = pooled->cols * cs, mh = pooled->rows * cs;
  const double tr = mh / m.rows, tc = mw / m.cols;  // pixels per token
  const int64_t kr = std::max<int64_t>(1, int64_t(std::ceil((fp + 2) / tr)));
  const int64_t kc = std::max<int64_t>(1, int64_t(std::ceil((fp + 2) / tc)));
  auto shown = [&](const std::vector<std::string>& labels, int64_t k, double& width) {
    std::vector<std::pair<int64_t, std::string>> out;
    width = 0;
    for (int64_t i = 0; i < int64_t(labels.size()); i += k) {
      out.emplace_back(i, cut_label(labels[size_t(i)], st.label_chars));
      width = std::max(width, font.text_width(out.back().second, fp));
    }
    return out;
  };
  double wr = 0, wc = 0;
  auto rows = shown(hm.row_labels, kr, wr), cols = shown(hm.col_labels, kc, wc);
  auto scale = ColorScale::fit({&m}, st.log, st.log_floor);
  const std::string pool_note = fr > 1 || fc > 1 ? fmt::format(", cells: max of {}x{} tokens", fr, fc) : "";
  const std::string row_axis = hm.row_axis + (kr > 1 ? fmt::format(" (every {} label)", ordinal(kr)) : "");
  const std::string col_axis = hm.col_axis + (kc > 1 ? fmt::format(" (every {} label)", ordinal(kc)) : "") + pool_note;
  const double left = 8 + fp + 10 + wr + 6, top = 8 + fp * 1.4 + 14, bottom = 6 + wc + 8 + fp + 12;
  const double bar_h = std::max(mh, 120.0);
  Figure f;
  f.w = int(std::ceil(std::max(left + mw + colorbar_width(scale, st), font.text_width(hm.title, fp * 1.25) + 24)));
  f.h = int(std::ceil(top + std::max(mh, bar_h) + bottom));
  f.draw = [=, &st](Canvas& c) {
    c.text(left, 8 + fp * 0.7, hm.title, fp * 1.25, kBlack, Align::start, TextDir::horizontal);
    c.cells(left, top, mw, mh, cell_image(*pooled, scale));
    c.frame(left - 1, top - 1, mw + 2, mh + 2, kFrame);
    for (const auto& [i, s] : rows) c.text(left - 5, top + (i + 0.5) * tr, s, fp, kBlack, Align::end, TextDir::horizontal);
    for (const auto& [i, s] : cols) c.text(left + (i + 0.5) * tc, top + mh + 5, s, fp, kBlack, Align::end, TextDir::up);
    c.text(8 + fp * 0.6, top + mh / 2, row_axis, fp, kGrey, Align::middle, TextDir::up);
    c.text(left + mw / 2, top + mh + 5 + wc + 8 + fp * 0.6, col_axis, fp, kGrey, Align::middle, TextDir::horizontal);
    draw_colorbar(c, left + mw + 18, top, bar_h, scale, st);
  };
  return f;
}

Figure layout_grid(const std::vector<Heatmap>& panels, const std::string& title, const HeatmapStyle& st) {
  check_style(st);
  QS_CHECK(!panels.empty(), "heatmap grid '{}': no panels", title);
  std::vector<const Matrix*> ms;
  for (const Heatmap& p : panels) check_matrix(p.m, p.title), ms.push_back(&p.m);
  const double fp = st.font_px;
  auto scale = ColorScale::fit(ms, st.log, st.log_floor);
  auto pooled = std::make_shared<std::vector<Matrix>>();
  double pw = 0, ph = 0;
  for (const Heatmap& p : panels) {
    pooled->push_back(max_pool(p.m, st.grid_panel_px, st.grid_panel_px));
    const Matrix& q = pooled->back();
    const double cs = std::clamp(std::floor(double(st.grid_panel_px) / double(std::max(q.rows, q.cols))), 1.0,
                                 double(st.cell_px));
    pw = std::max(pw, q.cols * cs), ph = std::max(ph, q.rows * cs);
  }
  const int ncol = int(std::ceil(std::sqrt(double(panels.size()))));
  const int nrow = int((panels.size() + size_t(ncol) - 1) / size_t(ncol));
  const double top = 8 + fp * 1.4 + 12, cell_w = pw + 16, cell_h = ph + fp + 14;
  const double bar_h = std::max(std::min(nrow * cell_h - fp - 14, 2.0 * ph), std::min(120.0, nrow * cell_h - fp - 14));
  Figure f;
  f.w = int(std::ceil(std::max(10 + ncol * cell_w + colorbar_width(scale, st),
                               Font::get().text_width(title, fp * 1.25) + 24)));
  f.h = int(std::ceil(top + nrow * cell_h + 8));
  std::vector<std::string> titles;
  for (const Heatmap& p : panels) titles.push_back(p.title);
  f.draw = [=, &st](Canvas& c) {
    c.text(10, 8 + fp * 0.7, title, fp * 1.25, kBlack, Align::start, TextDir::horizontal);
    for (size_t i = 0; i < pooled->size(); ++i) {
      const Matrix& q = (*pooled)[i];
      const double cs = std::clamp(std::floor(double(st.grid_panel_px) / double(std::max(q.rows, q.cols))), 1.0,
                                   double(st.cell_px));
      const double x = 10 + double(i % size_t(ncol)) * cell_w, y = top + double(i / size_t(ncol)) * cell_h;
      c.text(x, y + fp * 0.5, titles[i], fp, kBlack, Align::start, TextDir::horizontal);
      c.cells(x, y + fp + 4, q.cols * cs, q.rows * cs, cell_image(q, scale));
      c.frame(x - 1, y + fp + 3, q.cols * cs + 2, q.rows * cs + 2, kFrame);
    }
    draw_colorbar(c, 10 + ncol * cell_w + 4, top + fp + 4, bar_h, scale, st);
  };
  return f;
}

Image draw_png(const Figure& f) {
  PngCanvas c(f.w, f.h);
  f.draw(c);
  return std::move(c.image());
}

std::string draw_svg(const Figure& f, const HeatmapStyle& st) {
  SvgCanvas c(f.w, f.h, st.svg_rect_limit);
  f.draw(c);
  return c.finish();
}

}  // namespace

Image heatmap_png(const Heatmap& h, const HeatmapStyle& style) { return draw_png(layout_single(h, style)); }
std::string heatmap_svg(const Heatmap& h, const HeatmapStyle& style) { return draw_svg(layout_single(h, style), style); }
Image heatmap_grid_png(const std::vector<Heatmap>& panels, const std::string& title, const HeatmapStyle& style) {
  return draw_png(layout_grid(panels, title, style));
}
std::string heatmap_grid_svg(const std::vector<Heatmap>& panels, const std::string& title, const HeatmapStyle& style) {
  return draw_svg(layout_grid(panels, title, style), style);
}

}  // namespace qs::viz
