// Helpers shared by the test suites: fresh temporary directories and raw file writers.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace qs::testing {

// Removed when the test program exits.
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    std::error_code ec;
    for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
  }
};

inline std::string temp_dir(const std::string& tag) {
  static TempDirs all;
  auto p = std::filesystem::temp_directory_path() /
           ("qs_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  all.dirs.push_back(p.string());
  return p.string();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A safetensors file byte by byte: 8-byte LE length (declared_len, or the real one
// when negative), the header text, then the data bytes.
inline std::string safetensors_bytes(const std::string& header, const std::string& data,
                                     int64_t declared_len = -1) {
  uint64_t n = declared_len < 0 ? header.size() : uint64_t(declared_len);
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(char(uint8_t(n >> (8 * i))));
  return out + header + data;
}

// The message of the exception f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace qs::testing
