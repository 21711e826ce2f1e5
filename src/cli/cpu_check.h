// The CPU check that runs before anything else in the `qiusuo` binary: qiusuo is built
// for x86-64-v3 (AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE; CMakeLists.txt), and on an older
// CPU its first AVX2 instruction would die with SIGILL. cpu_check.cpp is compiled for
// plain x86-64 and runs as a priority constructor, before the static initialisers of the
// x86-64-v3 code, so the user gets a message instead.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace qs::cli {

// The x86-64-v3 features `has` (a __builtin_cpu_supports name -> bool) reports missing.
std::vector<std::string> missing_x86_64_v3(const std::function<bool(const char*)>& has);

}  // namespace qs::cli
