// Image files. Encoding PNG and JPEG with stb_image_write (our own figures and frames);
// decoding, where the bytes may be hostile: JPEG with libjpeg-turbo and PNG with libpng
// (Debian's, fuzzed upstream by OSS-Fuzz), BMP with stb_image. Debian's stb_image
// (2022-09) is not used for JPEG or PNG: fuzz_image found an out-of-bounds write in its
// JPEG Huffman tables within ten inputs (docs/reliability.md). The implementations of the
// single-header libraries live here and in font.cpp, once each; libstb.so is not linked.
#include <fmt/format.h>

#include "io/atomic_file.h"
#include "io/read_file.h"
#include "qiusuo/error.h"
#include "qiusuo/viz/image.h"

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

namespace {

constexpr int kMaxSide = 16384;                  // the Image limit
constexpr int64_t kMaxPixels = int64_t(1) << 26;  // 64 Mi pixels (8192 x 8192): 192 MiB of RGB

// The size checks every decoder makes on the header, before sizing anything by it.
std::string size_problem(int64_t w, int64_t h) {
  if (w < 1 || h < 1 || w > kMaxSide || h > kMaxSide || w * h > kMaxPixels)
    return fmt::format("the header says {} x {} pixels; images of 1..{} per side and at most {} pixels are read", w, h,
                       kMaxSide, kMaxPixels);
  return "";
}

// libjpeg reports errors through error_exit, which must not return: a longjmp back to the
// decoder's setjmp. Warnings (corrupt data, a premature end of the file: libjpeg fills in
// grey and goes on) are errors here too: a truncated image is refused, not half read.
struct JpegError {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};
void jpeg_fail(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}
void jpeg_note(j_common_ptr c, int level) {
  if (level < 0) jpeg_fail(c);  // a warning
}

// Decodes into malloc'd RGB (w * h * 3) or fills `msg`. No C++ object with a destructor
// lives between setjmp and a longjmp here.
bool decode_jpeg_c(const unsigned char* data, size_t size, int* w, int* h, unsigned char** out, char* msg, size_t msg_size) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  unsigned char* volatile buf = nullptr;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_fail;
  err.pub.emit_message = jpeg_note;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::free(buf);
    std::snprintf(msg, msg_size, "%s", err.message);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (const std::string bad = size_problem(cinfo.image_width, cinfo.image_height); !bad.empty()) {
    std::snprintf(msg, msg_size, "%s", bad.c_str());
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const size_t stride = size_t(cinfo.output_width) * 3;
  buf = static_cast<unsigned char*>(std::malloc(stride * cinfo.output_height));
  if (buf == nullptr) {
    std::snprintf(msg, msg_size, "out of memory");
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = buf + size_t(cinfo.output_scanline) * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  *w = int(cinfo.output_width), *h = int(cinfo.output_height);
  jpeg_destroy_decompress(&cinfo);
  *out = buf;
  return true;
}

Image from_rgb(const unsigned char* p, int w, int h) {
  Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const unsigned char* q = p + (size_t(y) * size_t(w) + size_t(x)) * 3;
      img.set(x, y, {q[0], q[1], q[2]});
    }
  return img;
}

Image decode_jpeg(const std::string& bytes, const std::string& what) {
  int w = 0, h = 0;
  unsigned char* p = nullptr;
  char msg[JMSG_LENGTH_MAX + 128] = {};
  QS_CHECK(decode_jpeg_c(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), &w, &h, &p, msg, sizeof msg),
           "{}: cannot decode the JPEG ({} bytes): {}", what, bytes.size(), msg);
  Image img = from_rgb(p, w, h);
  std::free(p);
  return img;
}

// libpng's simplified API (no longjmp reaches this code). Warnings count as errors.
Image decode_png_bytes(const std::string& bytes, const std::string& what) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  QS_CHECK(png_image_begin_read_from_memory(&img, bytes.data(), bytes.size()) != 0, "{}: cannot decode the PNG ({} "
           "bytes): {}", what, bytes.size(), img.message);
  if (const std::string bad = size_problem(img.width, img.height); !bad.empty()) {
    png_image_free(&img);
    QS_CHECK(false, "{}: {}", what, bad);
  }
  img.format = PNG_FORMAT_RGB;
  std::vector<unsigned char> px(PNG_IMAGE_SIZE(img));
  const bool ok = png_image_finish_read(&img, nullptr, px.data(), 0, nullptr) != 0;
  const std::string message = img.message;
  const bool warned = (img.warning_or_error & PNG_IMAGE_WARNING) != 0;
  png_image_free(&img);
  QS_CHECK(ok && !warned, "{}: cannot decode the PNG ({} bytes): {}", what, bytes.size(), message);
  return from_rgb(px.data(), int(img.width), int(img.height));
}

Image decode_bmp(const std::string& bytes, const std::string& what) {
  QS_CHECK(bytes.size() <= size_t(INT32_MAX), "{}: {} bytes is more than the decoder takes", what, bytes.size());
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  int w = 0, h = 0, n = 0;
  // The header first: its dimensions are checked before a pixel buffer is sized by them.
  QS_CHECK(stbi_info_from_memory(data, int(bytes.size()), &w, &h, &n) != 0, "{}: cannot decode the BMP ({} bytes): {}",
           what, bytes.size(), stbi_failure_reason());
  const std::string bad = size_problem(w, h);
  QS_CHECK(bad.empty(), "{}: {}", what, bad);
  // stb reads uncompressed BMPs (BI_RGB, BI_BITFIELDS) and pads a short file with zeros:
  // the rows the header promises must be in the file, or 70 bytes would decode as a
  // 15872 x 11281 image (found by fuzz_image).
  // stb also reads a header cut short as if zeros followed it (a 32-byte file passed for 11325
  // x 188 pixels, 0.3 s a run in fuzz_image): the header the file declares must be whole.
  auto u16 = [&](size_t at) { return uint32_t(data[at]) | uint32_t(data[at + 1]) << 8; };
  auto u32 = [&](size_t at) { return u16(at) | u16(at + 2) << 16; };
  QS_CHECK(bytes.size() >= 18 && bytes.size() - 14 >= u32(14), "{}: the BMP's header is cut short ({} bytes in the "
           "file)", what, bytes.size());
  const bool core = u32(14) < 40;  // BITMAPCOREHEADER (12 bytes): 16-bit sizes, no compression field
  const uint32_t bpp = core ? u16(24) : u16(28), compression = core ? 0 : u32(30), offset = u32(10);
  QS_CHECK(compression == 0 || compression == 3, "{}: BMP compression {} is not read (uncompressed only)", what,
           compression);
  const uint64_t row = (uint64_t(bpp) * uint64_t(w) + 31) / 32 * 4;
  QS_CHECK(uint64_t(offset) + row * uint64_t(h) <= bytes.size(), "{}: the BMP header promises {} rows of {} bytes "
           "from offset {}, but the file has {} bytes", what, h, row, offset, bytes.size());
  unsigned char* p = stbi_load_from_memory(data, int(bytes.size()), &w, &h, &n, 3);
  QS_CHECK(p != nullptr, "{}: cannot decode the BMP ({} bytes): {}", what, bytes.size(), stbi_failure_reason());
  Image img = from_rgb(p, w, h);
  stbi_image_free(p);
  return img;
}

}  // namespace

Image decode_image(const std::string& bytes, const std::string& what) {
  auto starts = [&](const char* sig, size_t n) { return bytes.size() >= n && std::memcmp(bytes.data(), sig, n) == 0; };
  if (starts("\xff\xd8\xff", 3)) return decode_jpeg(bytes, what);
  if (starts("\x89PNG\r\n\x1a\n", 8)) return decode_png_bytes(bytes, what);
  if (starts("BM", 2)) return decode_bmp(bytes, what);
  QS_CHECK(false, "{}: not a PNG, JPEG or BMP image ({} bytes, none of their signatures)", what, bytes.size());
  return Image();
}

Image read_image(const std::string& path) {
  return decode_image(io::read_file_bounded(path, uint64_t(256) << 20, "image"), path);
}

}  // namespace qs::viz
