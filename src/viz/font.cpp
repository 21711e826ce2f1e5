// UTF-8 text with stb_truetype: each string is rasterised into a coverage mask (glyph by
// glyph, with kerning and subpixel x placement), then blended into the image, rotated for
// TextDir::up.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "qiusuo/error.h"
#include "qiusuo/viz/image.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_TRUETYPE_IMPLEMENTATION
#define STBTT_STATIC
#include <stb/stb_truetype.h>
#pragma GCC diagnostic pop

namespace qs::viz {

namespace {
constexpr const char* kDefaultFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

struct Mask {
  int w = 0, h = 0;
  std::vector<float> a;  // coverage in [0, 1]
  void add(int x, int y, float v) {
    if (x >= 0 && y >= 0 && x < w && y < h) a[size_t(y) * w + x] = std::min(1.0f, a[size_t(y) * w + x] + v);
  }
};
}  // namespace

struct Font::Impl {
  std::string data;
  stbtt_fontinfo info{};
  int ascent = 0, descent = 0;

  struct Placed {
    int glyph;  // 0: missing (drawn as a box)
    double x, advance;
  };
  std::vector<Placed> layout(const std::string& utf8, double scale) const {
    std::vector<Placed> out;
    double x = 0;
    int prev = -1;
    for (uint32_t cp : utf8_decode(utf8)) {
      const int g = stbtt_FindGlyphIndex(&info, int(cp));
      if (prev > 0 && g > 0) x += scale * stbtt_GetGlyphKernAdvance(&info, prev, g);
      int adv = 0, lsb = 0;
      if (g > 0) stbtt_GetGlyphHMetrics(&info, g, &adv, &lsb);
      const double a = g > 0 ? scale * adv : scale * (ascent - descent) * 0.6;
      out.push_back({g, x, a});
      x += a;
      prev = g;
    }
    return out;
  }

  Mask rasterise(const std::string& utf8, double px) const {
    const double scale = stbtt_ScaleForPixelHeight(&info, float(px));
    const std::vector<Placed> glyphs = layout(utf8, scale);
    const double width = glyphs.empty() ? 0 : glyphs.back().x + glyphs.back().advance;
    Mask m;
    m.w = int(std::ceil(width)) + 2;
    m.h = int(std::ceil((ascent - descent) * scale)) + 2;
    m.a.assign(size_t(m.w) * m.h, 0.0f);
    const double baseline = 1 + ascent * scale;
    std::vector<unsigned char> buf;
    for (const Placed& p : glyphs) {
      if (p.glyph == 0) {  // a missing glyph: an outlined box, 1 px lines
        const int x0 = int(std::lround(1 + p.x + p.advance * 0.12)), x1 = int(std::lround(1 + p.x + p.advance * 0.88));
        const int y0 = int(std::lround(baseline - ascent * scale * 0.8)), y1 = int(std::lround(baseline)) - 1;
        for (int x = x0; x <= x1; ++x) m.add(x, y0, 1), m.add(x, y1, 1);
        for (int y = y0 + 1; y < y1; ++y) m.add(x0, y, 1), m.add(x1, y, 1);
        continue;
      }
      const double gx = 1 + p.x, shift = gx - std::floor(gx);
      int x0, y0, x1, y1;
      stbtt_GetGlyphBitmapBoxSubpixel(&info, p.glyph, float(scale), float(scale), float(shift), 0, &x0, &y0, &x1, &y1);
      const int gw = x1 - x0, gh = y1 - y0;
      if (gw <= 0 || gh <= 0) continue;
      buf.assign(size_t(gw) * gh, 0);
      stbtt_MakeGlyphBitmapSubpixel(&info, buf.data(), gw, gh, gw, float(scale), float(scale), float(shift), 0, p.glyph);
      const int ox = int(std::floor(gx)) + x0, oy = int(std::lround(baseline)) + y0;
      for (int y = 0; y < gh; ++y)
        for (int x = 0; x < gw; ++x) m.add(ox + x, oy + y, buf[size_t(y) * gw + x] / 255.0f);
    }
    return m;
  }
};

Font::Font(const std::string& ttf_path) : impl_(std::make_unique<Impl>()) {
  std::ifstream f(ttf_path, std::ios::binary);
  if (!f) throw IOError(fmt::format("font: cannot read '{}'", ttf_path));
  impl_->data.assign(std::istreambuf_iterator<char>(f), {});
  const auto* bytes = reinterpret_cast<const unsigned char*>(impl_->data.data());
  const int offset = impl_->data.size() < 12 ? -1 : stbtt_GetFontOffsetForIndex(bytes, 0);
  if (offset < 0 || !stbtt_InitFont(&impl_->info, bytes, offset))
    throw IOError(fmt::format("font: '{}' is not a TrueType font", ttf_path));
  int gap = 0;
  stbtt_GetFontVMetrics(&impl_->info, &impl_->ascent, &impl_->descent, &gap);
}

Font::~Font() = default;

const Font& Font::get() {
  static const std::unique_ptr<Font> font = [] {
    const char* env = std::getenv("QS_FONT");
    const std::string path = env && *env ? env : kDefaultFont;
    if (!std::filesystem::exists(path))
      throw IOError(fmt::format("font: '{}' not found; the figures need a TrueType font: install the Debian package "
                                "fonts-dejavu-core (scripts/install-deps.sh) or set QS_FONT to a .ttf file", path));
    return std::make_unique<Font>(path);
  }();
  return *font;
}

double Font::text_width(const std::string& utf8, double px) const {
  const auto g = impl_->layout(utf8, stbtt_ScaleForPixelHeight(&impl_->info, float(px)));
  return g.empty() ? 0 : g.back().x + g.back().advance;
}

void Font::draw(Image& img, double x, double y, const std::string& utf8, double px, Rgb c, Align align,
                TextDir dir) const {
  const Mask m = impl_->rasterise(utf8, px);
  const double len = m.w - 2, along = align == Align::start ? 0 : align == Align::middle ? len / 2 : len;
  if (dir == TextDir::horizontal) {
    const int ox = int(std::lround(x - along)) - 1, oy = int(std::lround(y - m.h / 2.0));
    for (int my = 0; my < m.h; ++my)
      for (int mx = 0; mx < m.w; ++mx) img.blend(ox + mx, oy + my, c, m.a[size_t(my) * m.w + mx]);
    return;
  }
  // Up: the text runs towards -y from its start; the mask's top edge faces -x.
  const int sx = int(std::lround(x - m.h / 2.0)), sy = int(std::lround(y + along)) + 1;
  for (int my = 0; my < m.h; ++my)
    for (int mx = 0; mx < m.w; ++mx) img.blend(sx + my, sy - mx, c, m.a[size_t(my) * m.w + mx]);
}

}  // namespace qs::viz
