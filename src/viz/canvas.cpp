// The PNG and SVG canvases (see canvas.h).
#include "viz/canvas.h"

#include <fmt/format.h>

#include <cmath>

#include "qiusuo/util/svg_plot.h"

namespace qs::viz {

namespace {
int px(double v) { return int(std::lround(v)); }
}  // namespace

void PngCanvas::rect(double x, double y, double w, double h, Rgb c) {
  img_.fill_rect(px(x), px(y), px(x + w) - px(x), px(y + h) - px(y), c);
}

void PngCanvas::frame(double x, double y, double w, double h, Rgb c) {
  const int x0 = px(x), y0 = px(y), x1 = px(x + w), y1 = px(y + h);
  img_.fill_rect(x0, y0, x1 - x0, 1, c);
  img_.fill_rect(x0, y1 - 1, x1 - x0, 1, c);
  img_.fill_rect(x0, y0, 1, y1 - y0, c);
  img_.fill_rect(x1 - 1, y0, 1, y1 - y0, c);
}

void PngCanvas::text(double x, double y, const std::string& s, double size, Rgb c, Align a, TextDir d) {
  Font::get().draw(img_, x, y, s, size, c, a, d);
}

void PngCanvas::cells(double x, double y, double w, double h, const Image& cells) {
  img_.draw_scaled(cells, px(x), px(y), px(x + w) - px(x), px(y + h) - px(y));
}

void PngCanvas::ramp(double x, double y, double w, double h) {
  const int y0 = px(y), y1 = px(y + h);
  for (int yy = y0; yy < y1; ++yy)
    img_.fill_rect(px(x), yy, px(x + w) - px(x), 1, viridis(y1 - 1 > y0 ? double(y1 - 1 - yy) / (y1 - 1 - y0) : 1.0));
}

SvgCanvas::SvgCanvas(int w, int h, int rect_limit) : w_(w), h_(h), rect_limit_(rect_limit) {}

void SvgCanvas::rect(double x, double y, double w, double h, Rgb c) {
  body_ += fmt::format("<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"{}\"/>\n", x, y, w, h,
                       to_hex(c));
}

void SvgCanvas::frame(double x, double y, double w, double h, Rgb c) {
  body_ += fmt::format("<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"none\" stroke=\"{}\"/>\n",
                       x + 0.5, y + 0.5, w - 1, h - 1, to_hex(c));
}

void SvgCanvas::text(double x, double y, const std::string& s, double size, Rgb c, Align a, TextDir d) {
  const char* anchor = a == Align::start ? "start" : a == Align::middle ? "middle" : "end";
  const std::string rot = d == TextDir::up ? fmt::format(" transform=\"rotate(-90 {:.2f} {:.2f})\"", x, y) : "";
  body_ += fmt::format("<text x=\"{:.2f}\" y=\"{:.2f}\" font-size=\"{:.1f}\" fill=\"{}\" dominant-baseline=\"central\" text-anchor=\"{}\"{}>{}</text>\n",
                       x, y, size, to_hex(c), anchor, rot, util::xml_escape(s));
}

void SvgCanvas::cells(double x, double y, double w, double h, const Image& cells) {
  const int cw = cells.width(), ch = cells.height();
  if (cw > rect_limit_ || ch > rect_limit_) {
    body_ += fmt::format("<image x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" preserveAspectRatio=\"none\" "
                         "style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{}\"/>\n",
                         x, y, w, h, base64(encode_png(cells)));
    return;
  }
  // The first cell's colour as a background; cells of that colour (a causal mask's zeros)
  // need no element of their own.
  const Rgb bg = cells.pixel(0, 0);
  rect(x, y, w, h, bg);
  const double sx = w / cw, sy = h / ch;
  for (int r = 0; r < ch; ++r)
    for (int c = 0; c < cw; ++c)
      if (!(cells.pixel(c, r) == bg))
        body_ += fmt::format("<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"{}\"/>\n",
                             x + c * sx, y + r * sy, sx, sy, to_hex(cells.pixel(c, r)));
}

void SvgCanvas::ramp(double x, double y, double w, double h) {
  // viridis() is piecewise linear between its ten stops, as SVG interpolates: exact.
  if (defs_.empty()) {
    defs_ = "<defs><linearGradient id=\"viridis\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">";
    for (int k = 0; k <= 9; ++k)
      defs_ += fmt::format("<stop offset=\"{:.4f}\" stop-color=\"{}\"/>", k / 9.0, to_hex(viridis(k / 9.0)));
    defs_ += "</linearGradient></defs>\n";
  }
  body_ += fmt::format("<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"url(#viridis)\"/>\n",
                       x, y, w, h);
}

std::string SvgCanvas::finish() {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"DejaVu Sans, Verdana, sans-serif\" shape-rendering=\"crispEdges\">\n"
      "{3}<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n{2}</svg>\n",
      w_, h_, body_, defs_);
}

}  // namespace qs::viz
