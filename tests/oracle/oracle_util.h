// Running the PyTorch oracle scripts (Debian python3-torch) from a test.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "qiusuo/tensor.h"
#include "test_util.h"

namespace qs::testing {

// Runs `/usr/bin/python3 tests/oracle/<script> <args>`; fails the test on error.
inline void run_oracle(const std::string& script, const std::string& args) {
  std::string cmd = "/usr/bin/python3 " + std::string(QS_SOURCE_DIR) + "/tests/oracle/" +
                    script + " " + args;
  int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "oracle failed: " << cmd << "\nhint: scripts/install-deps.sh installs python3-torch";
}

// max |a - b| - (atol + rtol |b|) <= 0 elementwise, with the worst element in the message.
inline ::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, double atol, double rtol) {
  if (a.shape() != b.shape()) return ::testing::AssertionFailure() << "shape " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  auto x = a.to_vector(), y = b.to_vector();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double excess = std::abs(x[i] - y[i]) - (atol + rtol * std::abs(y[i]));
    if (!(excess <= worst)) {
      worst = excess;
      at = i;
    }
  }
  if (worst > 0 || std::isnan(worst))
    return ::testing::AssertionFailure() << "element " << at << ": " << x[at] << " vs " << y[at] << " (atol " << atol
                                         << ", rtol " << rtol << ")";
  return ::testing::AssertionSuccess();
}

}  // namespace qs::testing
