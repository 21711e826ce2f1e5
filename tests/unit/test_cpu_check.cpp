// The start-up CPU check of the qiusuo binary (src/cli/cpu_check.h): which x86-64-v3
// features a CPU lacks, named for the message.
#include <gtest/gtest.h>

#include <set>

#include "cli/cpu_check.h"

TEST(CpuCheck, NamesEveryMissingX86_64V3Feature) {
  auto all = [](const char*) { return true; };
  EXPECT_TRUE(qs::cli::missing_x86_64_v3(all).empty());
  // An AVX-only CPU (Sandy Bridge): everything of v3 but AVX is missing.
  auto sandy = [](const char* f) { return std::string(f) == "avx"; };
  EXPECT_EQ(qs::cli::missing_x86_64_v3(sandy),
            (std::vector<std::string>{"avx2", "fma", "f16c", "bmi", "bmi2", "lzcnt", "movbe"}));
  auto no_fma = [](const char* f) { return std::string(f) != "fma"; };
  EXPECT_EQ(qs::cli::missing_x86_64_v3(no_fma), std::vector<std::string>{"fma"});
}

TEST(CpuCheck, ThisMachinePasses) {
  __builtin_cpu_init();
  EXPECT_TRUE(qs::cli::missing_x86_64_v3([](const char*) { return __builtin_cpu_supports("x86-64-v3") > 0; }).empty());
}
