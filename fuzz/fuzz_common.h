// Shared by the libFuzzer targets (fuzz/*.cpp, the `fuzz` CMake preset, scripts/fuzz.sh):
// loaders that read a path get each input through one file in the fuzzer's memory-backed
// scratch directory; every qiusuo Error is an accepted outcome (a refusal), anything else
// (a crash, a sanitizer report, another exception type, a huge allocation) is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "qiusuo/error.h"

namespace qs::fuzz {

// A file holding the input, rewritten for every run (one per process and name).
inline std::string as_file(const uint8_t* data, size_t size, const char* name) {
  static const std::string dir = [] {
    const char* shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(shm) + "/qs_fuzz_" + std::to_string(getpid());
  }();
  static const bool made = [] { return std::system(("mkdir -p " + dir).c_str()) == 0; }();
  (void)made;
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f) {
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  return path;
}

// Runs fn; a qiusuo Error (IOError included) is the expected answer to bad input.
template <class Fn> void refusals_ok(Fn&& fn) {
  try {
    fn();
  } catch (const qs::Error&) {
  }
}

}  // namespace qs::fuzz
