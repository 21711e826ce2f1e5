// PNG encoding and decoding with stb (the implementations of the single-header libraries
// live here and in font.cpp, once each; libstb.so is not linked).
#include <fmt/format.h>

#include "io/atomic_file.h"
#include "qiusuo/error.h"
#include "qiusuo/viz/image.h"

#include <zlib.h>

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
  int w = 0, h = 0, n = 0;
  unsigned char* p = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()), int(bytes.size()),
                                           &w, &h, &n, 3);
  QS_CHECK(p != nullptr, "png: cannot decode {} bytes: {}", bytes.size(), stbi_failure_reason());
  Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const unsigned char* q = p + (size_t(y) * w + x) * 3;
      img.set(x, y, {q[0], q[1], q[2]});
    }
  stbi_image_free(p);
  return img;
}

}  // namespace qs::viz
