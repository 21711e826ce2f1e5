// safetensors writer and the file-level reader; header validation is in
// safetensors_header.cpp.
#include "qiusuo/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "io/atomic_file.h"
#include "io/safetensors_internal.h"

namespace qs::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; qiusuo writes native bytes");

namespace {

Tensor contiguous_bytes(const Tensor& t) {
  Tensor d = t.detach();
  if (d.is_contiguous()) return d;
  Tensor c = empty(d.shape(), d.dtype());
  c.copy_(d);
  return c;
}

std::string build_header(const std::string& path, const NamedTensors& tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__")
      throw IOError(fmt::format("safetensors: {}: invalid tensor name '{}'", path, name));
    if (!seen.insert(name).second)
      throw IOError(fmt::format("safetensors: {}: duplicate tensor name '{}'", path, name));
    if (!t.defined())
      throw IOError(fmt::format("safetensors: {}: tensor '{}' is undefined", path, name));
    uint64_t n = uint64_t(t.numel()) * t.element_size();
    h[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
               {"shape", t.shape()},
               {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i8: return "I8";
    case DType::u8: return "U8";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::b8: return "BOOL";
  }
  return "?";
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::string header = build_header(path, tensors, metadata);
  detail::AtomicFileWriter w(path);
  uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
  w.write(len, 8);
  w.write(header.data(), header.size());
  for (const auto& [name, t] : tensors) {
    Tensor c = contiguous_bytes(t);
    w.write(c.raw_data(), size_t(c.numel()) * c.element_size());
  }
  w.commit();
}

namespace {

// A read-only mapping of a whole file, unmapped on scope exit.
struct MappedFile {
  const unsigned char* data = nullptr;
  uint64_t size = 0;
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw IOError(fmt::format("safetensors: {}: cannot open: {}", path, std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw IOError(fmt::format("safetensors: {}: expected a regular file", path));
    }
    size = uint64_t(st.st_size);
    if (size > 0) {
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        throw IOError(fmt::format("safetensors: {}: mmap of {} bytes failed: {}", path, size,
                                  std::strerror(errno)));
      }
      data = static_cast<const unsigned char*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data) ::munmap(const_cast<unsigned char*>(data), size);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
};

void check_bool_bytes(const std::string& path, const std::string& name, const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw_data());
  for (int64_t i = 0; i < t.numel(); ++i)
    if (p[i] > 1)
      throw IOError(fmt::format("safetensors: {}: tensor '{}' (BOOL): expected bytes 0 or 1, "
                                "found {} at element {}", path, name, int(p[i]), i));
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  MappedFile f(path);
  detail::ParsedHeader h = detail::parse_header(path, f.data, f.size);
  SafetensorsFile out;
  out.metadata = std::move(h.metadata);
  const unsigned char* buf = f.data + h.data_start;
  for (const auto& e : h.entries) {
    Tensor t = from_blob_copy(buf + e.begin, e.shape, e.dtype);
    if (e.dtype == DType::b8) check_bool_bytes(path, e.name, t);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace qs::io
