// A small raster library for figures: an RGB image, filled rectangles, anti-aliased
// UTF-8 text (horizontal, or rotated 90 degrees for x-axis labels), the viridis colour
// map, PNG and JPEG encoding and PNG/JPEG/BMP decoding (stb_image_write / stb_image) with
// atomic writes.
//
//   viz::Image img(200, 100);                       // white
//   img.fill_rect(10, 10, 50, 20, viz::viridis(0.5));
//   viz::Font::get().draw(img, 100, 50, "héllo ⏎", 12, viz::kBlack);
//   viz::write_png(img, "out.png");
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qs::viz {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};
inline constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrey{110, 110, 110};

// "#rrggbb"
std::string to_hex(Rgb c);

// Viridis (van der Walt & Smith, matplotlib's default): perceptually uniform, its
// lightness rising monotonically from dark purple (t = 0, #440154) to yellow (t = 1,
// #fde725). Piecewise linear through its ten published stops (viridis(10) of R's
// viridisLite / matplotlib): within 3/255 of matplotlib's 256-entry table. t is clamped
// to [0, 1]; NaN maps to 0.
Rgb viridis(double t);

// Row-major 8-bit RGB. Drawing outside the image is clipped, never an error.
class Image {
 public:
  Image() = default;
  // Errors: width or height < 1 or > 16384.
  Image(int width, int height, Rgb fill = kWhite);
  int width() const { return w_; }
  int height() const { return h_; }
  Rgb pixel(int x, int y) const;  // Error when (x, y) is outside
  void set(int x, int y, Rgb c);
  // Mixes c over the pixel with coverage alpha in [0, 1].
  void blend(int x, int y, Rgb c, double alpha);
  void fill_rect(int x, int y, int w, int h, Rgb c);
  // Copies `src`, each pixel scaled to the block it covers when drawn into the w x h
  // rectangle at (x, y) (nearest neighbour: one source pixel per matrix cell).
  void draw_scaled(const Image& src, int x, int y, int w, int h);
  const std::vector<uint8_t>& rgb() const { return px_; }

 private:
  int w_ = 0, h_ = 0;
  std::vector<uint8_t> px_;
};

enum class Align { start, middle, end };   // where the anchor lies along the text
enum class TextDir { horizontal, up };     // up: rotated 90 degrees counter-clockwise (reads bottom to top)

// A TrueType font rasterised with stb_truetype (anti-aliased, no hinting). Characters the
// font lacks (e.g. CJK in DejaVu Sans) are drawn as an outlined box of the same advance.
class Font {
 public:
  // DejaVu Sans (Debian fonts-dejavu-core), or the file named by $QS_FONT. IOError when
  // it is missing, naming the package to install.
  static const Font& get();
  // IOError when the file cannot be read or is not a TrueType font.
  explicit Font(const std::string& ttf_path);
  ~Font();
  Font(const Font&) = delete;
  Font& operator=(const Font&) = delete;
  // Advance width in pixels of `utf8` at pixel height `px` (invalid bytes count as U+FFFD).
  double text_width(const std::string& utf8, double px) const;
  // Draws `utf8` with its anchor at (x, y): along the text as `align` says, across it at
  // the middle of the line (ascent to descent).
  void draw(Image& img, double x, double y, const std::string& utf8, double px, Rgb c, Align align = Align::start,
            TextDir dir = TextDir::horizontal) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// UTF-8 -> code points; an invalid or truncated byte sequence becomes U+FFFD per byte.
std::vector<uint32_t> utf8_decode(const std::string& s);

// PNG bytes of `img` (8-bit RGB).
std::string encode_png(const Image& img);
// Writes `img` as a PNG atomically (temp file + rename). IOError names the path.
void write_png(const Image& img, const std::string& path);
// Decodes PNG bytes (any colour type, converted to RGB). Error on malformed data.
Image decode_png(const std::string& bytes);
// JPEG bytes of `img` (baseline, quality 1..100), and an atomic write of them.
std::string encode_jpeg(const Image& img, int quality = 90);
void write_jpeg(const Image& img, const std::string& path, int quality = 90);
// Decodes PNG (libpng), JPEG (libjpeg-turbo; baseline and progressive) or BMP (stb_image;
// uncompressed) bytes, told apart by their signatures, converted to RGB. The header's size
// is checked (1..16384 per side, at most 2^26 pixels; a BMP's rows must be in the file)
// before any pixel is decoded, so a lying header allocates nothing; a truncated or
// malformed image (a decoder's warning included) is an Error naming `what` and the reason.
Image decode_image(const std::string& bytes, const std::string& what = "image");
// decode_image of a file's bytes (at most 256 MiB). IOError when it cannot be read.
Image read_image(const std::string& path);
// Standard base64 (RFC 4648, with padding), for data: URIs.
std::string base64(const std::string& bytes);

}  // namespace qs::viz
