// The validated form of a safetensors header (internal to src/io).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::io::detail {

struct HeaderEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // relative to the data buffer
};

struct ParsedHeader {
  std::vector<HeaderEntry> entries;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N
};

// Validates the complete header of a file of `size` bytes at `data` (see
// load_safetensors for the list); throws qs::IOError naming `path`.
ParsedHeader parse_header(const std::string& path, const unsigned char* data, uint64_t size);

}  // namespace qs::io::detail
