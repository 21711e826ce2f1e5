#include "qiusuo/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

namespace qs::data {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw IOError(fmt::format("idx: {}: {}", path, what));
}

struct GzFile {
  gzFile f = nullptr;
  std::string path;
  explicit GzFile(const std::string& p) : path(p) {
    f = gzopen(p.c_str(), "rb");  // transparently reads uncompressed files too
    if (!f) fail(p, fmt::format("cannot open: {}", std::strerror(errno)));
    // Fewer, larger reads than zlib's 8 KiB default, but no larger than the file: zlib
    // allocates three times this size per open (input, and twice it for output).
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(p, ec);
    gzbuffer(f, unsigned(ec ? 8192 : std::clamp<uintmax_t>(size, 8192, 1 << 18)));
  }
  ~GzFile() {
    if (f) gzclose(f);
  }
  // Reads up to n bytes; returns how many were read (short only at end of stream).
  size_t read(void* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      unsigned chunk = unsigned(std::min<size_t>(n - got, 1u << 30));
      int r = gzread(f, static_cast<char*>(dst) + got, chunk);
      if (r < 0) {
        int err = 0;
        const char* msg = gzerror(f, &err);
        fail(path, fmt::format("corrupt or unreadable stream after {} bytes: {}", got, msg));
      }
      if (r == 0) break;
      got += size_t(r);
    }
    return got;
  }
};

struct IdxType {
  DType out;
  size_t file_size;  // bytes per element in the file
};

bool idx_type(uint8_t code, IdxType* t) {
  switch (code) {
    case 0x08: *t = {DType::u8, 1}; return true;
    case 0x09: *t = {DType::i8, 1}; return true;
    case 0x0B: *t = {DType::i32, 2}; return true;
    case 0x0C: *t = {DType::i32, 4}; return true;
    case 0x0D: *t = {DType::f32, 4}; return true;
    case 0x0E: *t = {DType::f64, 8}; return true;
  }
  return false;
}

// Big-endian file elements -> native elements of the output dtype.
void convert(const std::vector<uint8_t>& src, const IdxType& t, void* dst, size_t n) {
  if (n == 0) return;  // an empty tensor: memcpy from an empty vector's null data is undefined (fuzz_idx)
  if (t.file_size == 1) {
    std::memcpy(dst, src.data(), n);
    return;
  }
  const uint8_t* p = src.data();
  for (size_t i = 0; i < n; ++i, p += t.file_size) {
    uint64_t v = 0;
    for (size_t b = 0; b < t.file_size; ++b) v = (v << 8) | p[b];
    if (t.file_size == 2)
      static_cast<int32_t*>(dst)[i] = int16_t(uint16_t(v));
    else if (t.file_size == 4)
      std::memcpy(static_cast<char*>(dst) + 4 * i, &v, 4);  // little-endian host: low 4 bytes
    else
      std::memcpy(static_cast<char*>(dst) + 8 * i, &v, 8);
  }
}

}  // namespace

Tensor read_idx(const std::string& path) {
  GzFile f(path);
  uint8_t magic[4];
  size_t got = f.read(magic, 4);
  if (got < 4) fail(path, fmt::format("truncated: expected a 4-byte magic number, found {} bytes", got));
  IdxType t{};
  if (magic[0] != 0 || magic[1] != 0 || !idx_type(magic[2], &t))
    fail(path, fmt::format("bad magic: expected 0x00 0x00 <type 0x08|0x09|0x0B|0x0C|0x0D|0x0E> <ndims>, "
                           "found 0x{:02x} 0x{:02x} 0x{:02x} 0x{:02x} (not an IDX file?)",
                           magic[0], magic[1], magic[2], magic[3]));
  int ndims = magic[3];
  Shape shape;
  uint64_t bytes = t.file_size, nonzero_bytes = t.file_size;
  for (int d = 0; d < ndims; ++d) {
    uint8_t b[4];
    got = f.read(b, 4);
    if (got < 4) fail(path, fmt::format("truncated header: expected {} dimension sizes, found {}", ndims, d));
    uint64_t s = (uint64_t(b[0]) << 24) | (uint64_t(b[1]) << 16) | (uint64_t(b[2]) << 8) | b[3];
    shape.push_back(int64_t(s));
    // Counted with empty dims as 1: a zero dim must not hide huge others (found by fuzz_idx).
    if (__builtin_mul_overflow(nonzero_bytes, std::max<uint64_t>(s, 1), &nonzero_bytes) || nonzero_bytes > kIdxMaxBytes)
      fail(path, fmt::format("dims {}: the data would exceed the {} byte limit", shape_str(shape), kIdxMaxBytes));
    bytes *= s;  // <= nonzero_bytes: cannot overflow
  }
  // Read what the stream really holds, in chunks that double from 64 KiB to 4 MiB, so a
  // lying header cannot make us allocate (or zero) much more than the data that exists.
  std::vector<uint8_t> buf;
  constexpr size_t kFirstChunk = size_t(1) << 16, kChunk = size_t(1) << 22;
  while (buf.size() < bytes) {
    const size_t chunk = std::clamp(buf.size(), kFirstChunk, kChunk);
    size_t want = size_t(std::min<uint64_t>(chunk, bytes - buf.size()));
    size_t old = buf.size();
    buf.resize(old + want);
    size_t r = f.read(buf.data() + old, want);
    buf.resize(old + r);
    if (r < want) break;
  }
  if (buf.size() < bytes)
    fail(path, fmt::format("truncated data: dims {} need {} bytes, found {}", shape_str(shape), bytes, buf.size()));
  uint8_t extra;
  if (f.read(&extra, 1) != 0)
    fail(path, fmt::format("trailing data: dims {} need {} bytes, found more", shape_str(shape), bytes));
  Tensor out = empty(shape, t.out);
  convert(buf, t, out.raw_data(), size_t(bytes / t.file_size));
  return out;
}

}  // namespace qs::data
