// Compiled for plain x86-64 (CMakeLists.txt): see cpu_check.h.
#include "cli/cpu_check.h"

#include <unistd.h>

#include <cstdio>

namespace qs::cli {

std::vector<std::string> missing_x86_64_v3(const std::function<bool(const char*)>& has) {
  std::vector<std::string> missing;
  for (const char* f : {"avx", "avx2", "fma", "f16c", "bmi", "bmi2", "lzcnt", "movbe"})
    if (!has(f)) missing.push_back(f);
  return missing;
}

namespace {

bool cpu_has(const char* f) {
  // __builtin_cpu_supports takes literal names only.
  const std::string s(f);
  if (s == "avx") return __builtin_cpu_supports("avx");
  if (s == "avx2") return __builtin_cpu_supports("avx2");
  if (s == "fma") return __builtin_cpu_supports("fma");
  if (s == "f16c") return __builtin_cpu_supports("f16c");
  if (s == "bmi") return __builtin_cpu_supports("bmi");
  if (s == "bmi2") return __builtin_cpu_supports("bmi2");
  if (s == "lzcnt") return __builtin_cpu_supports("lzcnt");
  if (s == "movbe") return __builtin_cpu_supports("movbe");
  return false;
}

__attribute__((constructor(101))) void require_x86_64_v3() {
  __builtin_cpu_init();
  std::vector<std::string> missing = missing_x86_64_v3(cpu_has);
  if (missing.empty()) return;
  std::string list;
  for (auto& m : missing) list += (list.empty() ? "" : ", ") + m;
  std::fprintf(stderr,
               "qiusuo: this CPU lacks %s. qiusuo is built for x86-64-v3 (AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE: "
               "Intel Haswell, AMD Excavator/Zen or newer) and cannot run here.\n",
               list.c_str());
  _exit(3);
}

}  // namespace
}  // namespace qs::cli
