// Helpers for tests that compare against numbers computed by PyTorch.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::test {

inline void expect_near(const Tensor& t, const std::vector<double>& want, double tol) {
  std::vector<double> got = t.contiguous().to_vector();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], want[i]) << "element " << i;
      continue;
    }
    EXPECT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << "element " << i;
  }
}

}  // namespace qs::test
