// Whole files read into memory with a bound: a path such as /dev/zero, a FIFO or a file that
// keeps growing must not be read until memory runs out (issue 19: `--tokenizer /dev/zero`).
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "qiusuo/error.h"

namespace qs::io {

// The file's bytes; IOError naming `what`, the file and the limit when it holds more than
// max_bytes, cannot be opened or fails to read.
inline std::string read_file_bounded(const std::string& path, uint64_t max_bytes, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IOError(fmt::format("{}: {}: cannot open the file", what, path));
  std::string out;
  char buf[1 << 16];
  while (f) {
    f.read(buf, sizeof buf);
    const std::streamsize got = f.gcount();
    if (got <= 0) break;
    if (out.size() + uint64_t(got) > max_bytes)
      throw IOError(fmt::format("{}: {}: more than {} bytes (a device or a growing file?); not read further", what,
                                path, max_bytes));
    out.append(buf, size_t(got));
  }
  if (f.bad()) throw IOError(fmt::format("{}: {}: read failed", what, path));
  return out;
}

}  // namespace qs::io
