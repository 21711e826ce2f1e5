// PNG and JPEG encoding, PNG/JPEG/BMP decoding with stb (the implementations of the single-header libraries
// live here and in font.cpp, once each; libstb.so is not linked).
#include <fmt/format.h>

#include "io/atomic_file.h"
#include "io/read_file.h"
#include "qiusuo/error.h"
#include "qiusuo/viz/image.h"

#include <zlib.h>

#include <cstdint>
#include <cstdlib>

// zlib's deflate instead of stb's own: 3-4x faster on large figures, and smaller files.
// stb frees the result with free().
static unsigned char* qs_zlib_compress(unsigned char* data, int len, int* out_len, int /*quality*/) {
  uLongf n = compressBound(uLong(len));
  auto* out = static_cast<unsigned char*>(std::malloc(n));
  if (out == nullptr || compress2(out, &n, data, uLong(len), 6) != Z_OK) {
    std::free(out);
    return nullptr;
  }
  *out_len = int(n);
  return out;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBIW_ZLIB_COMPRESS qs_zlib_compress
#include <stb/stb_image_write.h>
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS 16384  // the Image limit: larger headers fail before allocating
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace qs::viz {

std::string encode_png(const Image& img) {
  QS_CHECK(img.width() > 0, "png: the image is empty");
  std::string out;
  auto sink = [](void* ctx, void* data, int n) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size_t(n)); };
  const int ok = stbi_write_png_to_func(sink, &out, img.width(), img.height(), 3, img.rgb().data(), img.width() * 3);
  QS_CHECK(ok != 0, "png: stb_image_write failed to encode a {}x{} image", img.width(), img.height());
  return out;
}

void write_png(const Image& img, const std::string& path) { io::write_file_atomic(path, encode_png(img)); }

Image decode_png(const std::string& bytes) {
  static const std::string signature = "\x89PNG\r\n\x1a\n";
  QS_CHECK(bytes.compare(0, signature.size(), signature) == 0, "png: {} bytes without the PNG signature",
           bytes.size());
  return decode_image(bytes, "png");
}

std::string encode_jpeg(const Image& img, int quality) {
  QS_CHECK(img.width() > 0, "jpeg: the image is empty");
  QS_CHECK(quality >= 1 && quality <= 100, "jpeg: quality must be in 1..100, got {}", quality);
  std::string out;
  auto sink = [](void* ctx, void* data, int n) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size_t(n)); };
  const int ok = stbi_write_jpg_to_func(sink, &out, img.width(), img.height(), 3, img.rgb().data(), quality);
  QS_CHECK(ok != 0, "jpeg: stb_image_write failed to encode a {}x{} image", img.width(), img.height());
  return out;
}

void write_jpeg(const Image& img, const std::string& path, int quality) {
  io::write_file_atomic(path, encode_jpeg(img, quality));
}

Image decode_image(const std::string& bytes, const std::string& what) {
  QS_CHECK(bytes.size() <= size_t(INT32_MAX), "{}: {} bytes is more than the decoder takes", what, bytes.size());
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  int w = 0, h = 0, n = 0;
  // The header first: its dimensions are checked before a pixel buffer is sized by them.
  QS_CHECK(stbi_info_from_memory(data, int(bytes.size()), &w, &h, &n) != 0, "{}: not a PNG, JPEG or BMP image "
           "({} bytes): {}", what, bytes.size(), stbi_failure_reason());
  QS_CHECK(w >= 1 && h >= 1 && w <= 16384 && h <= 16384, "{}: the header says {} x {} pixels; images of 1..16384 "
           "per side are read", what, w, h);
  unsigned char* p = stbi_load_from_memory(data, int(bytes.size()), &w, &h, &n, 3);
  QS_CHECK(p != nullptr, "{}: cannot decode {} bytes: {}", what, bytes.size(), stbi_failure_reason());
  Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const unsigned char* q = p + (size_t(y) * w + x) * 3;
      img.set(x, y, {q[0], q[1], q[2]});
    }
  stbi_image_free(p);
  return img;
}

Image read_image(const std::string& path) {
  return decode_image(io::read_file_bounded(path, uint64_t(256) << 20, "image"), path);
}

}  // namespace qs::viz
