// Validation of a safetensors header: every check happens here, before any tensor is
// allocated, so that a malformed file costs nothing and yields a precise message.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "io/safetensors_internal.h"
#include "qiusuo/io/safetensors.h"
#include "util/json_bounded.h"

namespace qs::io::detail {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw IOError(fmt::format("safetensors: {}: {}", path, what));
}

bool dtype_from_name(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16},
      {"F16", DType::f16}, {"I8", DType::i8},   {"U8", DType::u8},
      {"I32", DType::i32}, {"I64", DType::i64}, {"BOOL", DType::b8}};
  for (const auto& [n, t] : kNames)
    if (s == n) {
      *out = t;
      return true;
    }
  return false;
}

json parse_json(const std::string& path, const char* p, uint64_t n) {
  if (n == 0 || p[0] != '{') fail(path, fmt::format("header: expected a JSON object starting with '{{', found {}",
                                             n == 0 ? std::string("an empty header") : fmt::format("byte 0x{:02x}", uint8_t(p[0]))));
  // Duplicate keys at the top level would silently shadow a tensor: reject them.
  std::set<std::string> keys;
  std::string dup;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second)
      dup = parsed.get<std::string>();
    return true;
  };
  json h;
  try {
    h = util::parse_json_bounded(std::string_view(p, n), cb);
  } catch (const json::exception& e) {
    fail(path, fmt::format("header: expected valid UTF-8 JSON, found a parse error: {}", e.what()));
  }
  if (!dup.empty()) fail(path, fmt::format("header: tensor name '{}' appears more than once", dup));
  if (!h.is_object()) fail(path, fmt::format("header: expected a JSON object, found {}", h.type_name()));
  return h;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& m) {
  if (!m.is_object())
    fail(path, fmt::format("__metadata__: expected an object of strings, found {}", m.type_name()));
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : m.items()) {
    if (!v.is_string())
      fail(path, fmt::format("__metadata__['{}']: expected a string, found {} {}", k, v.type_name(), v.dump()));
    out[k] = v.get<std::string>();
  }
  return out;
}

uint64_t get_u64(const std::string& path, const std::string& where, const json& v) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    fail(path, fmt::format("{}: expected a non-negative integer, found {}", where, v.dump()));
  return v.get<uint64_t>();
}

HeaderEntry parse_entry(const std::string& path, const std::string& name, const json& v) {
  std::string where = fmt::format("tensor '{}'", name);
  if (!v.is_object()) fail(path, fmt::format("{}: expected an object, found {}", where, v.dump()));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) fail(path, fmt::format("{}: expected a field '{}', found none", where, key));
  HeaderEntry e;
  e.name = name;
  const json& dt = v["dtype"];
  if (!dt.is_string() || !dtype_from_name(dt.get<std::string>(), &e.dtype))
    fail(path, fmt::format("{}: dtype: expected one of F32 F64 BF16 F16 I8 U8 I32 I64 BOOL, found {}",
                           where, dt.dump()));
  const json& sh = v["shape"];
  if (!sh.is_array()) fail(path, fmt::format("{}: shape: expected an array, found {}", where, sh.dump()));
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : sh) {
    uint64_t s = get_u64(path, where + ": shape", d);
    if (s > uint64_t(INT64_MAX)) fail(path, fmt::format("{}: shape: dimension {} is too large", where, s));
    e.shape.push_back(int64_t(s));
    overflow |= __builtin_mul_overflow(numel, s, &numel);
  }
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    fail(path, fmt::format("{}: data_offsets: expected [begin, end], found {}", where, off.dump()));
  e.begin = get_u64(path, where + ": data_offsets", off[0]);
  e.end = get_u64(path, where + ": data_offsets", off[1]);
  if (e.begin > e.end)
    fail(path, fmt::format("{}: data_offsets: expected begin <= end, found [{}, {}]", where, e.begin, e.end));
  uint64_t nbytes = 0;
  overflow |= __builtin_mul_overflow(numel, uint64_t(dtype_size(e.dtype)), &nbytes);
  if (overflow || nbytes != e.end - e.begin)
    fail(path, fmt::format("{}: data_offsets: expected end - begin == {} bytes (shape {} x {} bytes "
                           "per {}), found {} bytes [{}, {}]", where,
                           overflow ? std::string("(overflow)") : std::to_string(nbytes),
                           sh.dump(), dtype_size(e.dtype), dt.get<std::string>(), e.end - e.begin,
                           e.begin, e.end));
  return e;
}

// The data buffer must be tiled exactly: sorted by begin, each starts where the last ended.
void check_layout(const std::string& path, std::vector<HeaderEntry>& es, uint64_t buffer) {
  std::stable_sort(es.begin(), es.end(), [](const HeaderEntry& a, const HeaderEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const auto& e : es) {
    if (e.begin < pos)
      fail(path, fmt::format("tensor '{}': data_offsets [{}, {}] overlap the previous tensor, which ends at {}",
                             e.name, e.begin, e.end, pos));
    if (e.begin > pos)
      fail(path, fmt::format("tensor '{}': data_offsets: expected to begin at {} (contiguous), found a gap "
                             "of {} bytes before it (begin {})", e.name, pos, e.begin - pos, e.begin));
    pos = e.end;
  }
  if (pos > buffer)
    fail(path, fmt::format("data buffer: the tensors need {} bytes, found only {} after the header "
                           "(data past the end of the file)", pos, buffer));
  if (pos < buffer)
    fail(path, fmt::format("data buffer: expected the tensors to cover all {} bytes, found {} bytes "
                           "not covered by any tensor", buffer, buffer - pos));
}

}  // namespace

ParsedHeader parse_header(const std::string& path, const unsigned char* data, uint64_t size) {
  if (size < 8)
    fail(path, fmt::format("expected at least 8 bytes (the header length), found a file of {} bytes", size));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(data[i]) << (8 * i);
  if (n > kSafetensorsMaxHeader)
    fail(path, fmt::format("header length: expected at most {} bytes, found {}", kSafetensorsMaxHeader, n));
  if (n > size - 8)
    fail(path, fmt::format("header length: {} bytes declared, but only {} bytes follow the length "
                           "(truncated file?)", n, size - 8));
  json h = parse_json(path, reinterpret_cast<const char*>(data + 8), n);
  ParsedHeader out;
  out.data_start = 8 + n;
  for (const auto& [k, v] : h.items()) {
    if (k == "__metadata__")
      out.metadata = parse_metadata(path, v);
    else
      out.entries.push_back(parse_entry(path, k, v));
  }
  check_layout(path, out.entries, size - out.data_start);
  return out;
}

}  // namespace qs::io::detail
