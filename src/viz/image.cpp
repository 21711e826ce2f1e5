// Image, colour map, UTF-8 decoding and base64 (see include/qiusuo/viz/image.h).
#include "qiusuo/viz/image.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "qiusuo/error.h"

namespace qs::viz {

std::string to_hex(Rgb c) { return fmt::format("#{:02x}{:02x}{:02x}", c.r, c.g, c.b); }

Rgb viridis(double t) {
  // viridis(10): the published stops at t = k / 9.
  static constexpr uint32_t kStops[10] = {0x440154, 0x482878, 0x3e4a89, 0x31688e, 0x26828e,
                                          0x1f9e89, 0x35b779, 0x6dcd59, 0xb4de2c, 0xfde725};
  if (!(t > 0)) t = 0;  // also NaN
  if (t > 1) t = 1;
  const double s = t * 9;
  const int k = std::min(8, int(s));
  const double f = s - k;
  auto ch = [&](int shift) {
    const double a = (kStops[k] >> shift) & 0xFF, b = (kStops[k + 1] >> shift) & 0xFF;
    return uint8_t(std::lround(a + (b - a) * f));
  };
  return {ch(16), ch(8), ch(0)};
}

Image::Image(int width, int height, Rgb fill) : w_(width), h_(height) {
  QS_CHECK(width >= 1 && height >= 1 && width <= 16384 && height <= 16384,
           "image: size {}x{} is outside 1..16384 pixels per side", width, height);
  px_.resize(size_t(w_) * size_t(h_) * 3);
  for (size_t i = 0; i < px_.size(); i += 3) px_[i] = fill.r, px_[i + 1] = fill.g, px_[i + 2] = fill.b;
}

Rgb Image::pixel(int x, int y) const {
  QS_CHECK(x >= 0 && y >= 0 && x < w_ && y < h_, "image: pixel ({}, {}) is outside the {}x{} image", x, y, w_, h_);
  const size_t i = (size_t(y) * size_t(w_) + size_t(x)) * 3;
  return {px_[i], px_[i + 1], px_[i + 2]};
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  const size_t i = (size_t(y) * size_t(w_) + size_t(x)) * 3;
  px_[i] = c.r, px_[i + 1] = c.g, px_[i + 2] = c.b;
}

void Image::blend(int x, int y, Rgb c, double alpha) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_ || !(alpha > 0)) return;
  alpha = std::min(alpha, 1.0);
  const size_t i = (size_t(y) * size_t(w_) + size_t(x)) * 3;
  auto mix = [&](uint8_t dst, uint8_t src) { return uint8_t(std::lround(dst + (double(src) - dst) * alpha)); };
  px_[i] = mix(px_[i], c.r), px_[i + 1] = mix(px_[i + 1], c.g), px_[i + 2] = mix(px_[i + 2], c.b);
}

void Image::fill_rect(int x, int y, int w, int h, Rgb c) {
  const int x0 = std::max(x, 0), y0 = std::max(y, 0), x1 = std::min(x + w, w_), y1 = std::min(y + h, h_);
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) set(xx, yy, c);
}

void Image::draw_scaled(const Image& src, int x, int y, int w, int h) {
  if (src.w_ == 0 || w <= 0 || h <= 0) return;
  const int x0 = std::max(x, 0), y0 = std::max(y, 0), x1 = std::min(x + w, w_), y1 = std::min(y + h, h_);
  for (int yy = y0; yy < y1; ++yy) {
    const int sy = int(int64_t(yy - y) * src.h_ / h);
    for (int xx = x0; xx < x1; ++xx) set(xx, yy, src.pixel(int(int64_t(xx - x) * src.w_ / w), sy));
  }
}

std::vector<uint32_t> utf8_decode(const std::string& s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size() && !(n == 2 && c < 0xC2);
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; ok && k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      ok = (d >> 6) == 2;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (!ok || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      out.push_back(0xFFFD);
      ++i;
    } else {
      out.push_back(cp);
      i += n;
    }
  }
  return out;
}

std::string base64(const std::string& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) v |= uint8_t(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

}  // namespace qs::viz
