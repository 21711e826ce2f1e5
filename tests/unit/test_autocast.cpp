#include <gtest/gtest.h>

#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

using namespace qs;

TEST(Autocast, LinearRunsInBf16AndReturnsF32) {
  Generator g(3);
  Tensor x = randn({8, 64}, DType::f32, &g);
  Tensor w = randn({16, 64}, DType::f32, &g).requires_grad_();
  Tensor b = randn({16}, DType::f32, &g).requires_grad_();
  Tensor ref = linear(x, w, b);
  Tensor y;
  {
    Autocast ac;
    EXPECT_TRUE(autocast_active());
    y = linear(x, w, b);
  }
  EXPECT_FALSE(autocast_active());
  EXPECT_EQ(y.dtype(), DType::f32);
  // Same as multiplying bf16-rounded operands in f32.
  Tensor xr = x.to(DType::bf16).to(DType::f32), wr = w.detach().to(DType::bf16).to(DType::f32);
  Tensor expect = linear(xr, wr, b.detach());
  auto got = y.to_vector(), want = expect.to_vector(), full = ref.to_vector();
  double worst_vs_f32 = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-4 * (1 + std::abs(want[i])));
    worst_vs_f32 = std::max(worst_vs_f32, std::abs(got[i] - full[i]));
  }
  EXPECT_GT(worst_vs_f32, 0.0);  // it really ran on rounded operands
  // Gradients reach the f32 master weights, in f32.
  sum(y).backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_EQ(w.grad().shape(), w.shape());
  EXPECT_EQ(b.grad().dtype(), DType::f32);
}

// The f32 weight gradient of a bf16 product is kept in f32: 1 + 2^-8 is exact in f32 and
// a tie between two bf16 values, so a gradient rounded to the bf16 copy's dtype on its way
// back (as before) would read 1.
TEST(Autocast, WeightGradientOfABf16CopyIsNotRoundedToBf16) {
  Tensor w = full({1, 1}, 0.5).requires_grad_();
  Tensor x = from_vector({1.0, 1.0 / 256}, {2, 1});  // both exact in bf16
  Tensor y;
  {
    Autocast ac;
    y = linear(x, w);
  }
  sum(y).backward();
  ASSERT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_EQ(w.grad().to_vector()[0], 1.0 + 1.0 / 256);
}

TEST(Autocast, ReductionsStayF32) {
  Tensor x = randn({4, 5});
  Autocast ac;
  Tensor y = matmul(x, x.t());
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_EQ(sum(y).dtype(), DType::f32);
}

TEST(Autocast, ScopeMaySpanTrainingSteps) {
  Generator g(5);
  Tensor w = randn({4, 8}, DType::f32, &g).requires_grad_();
  Tensor x = randn({3, 8}, DType::f32, &g);
  Autocast ac;
  Tensor first;
  for (int step = 0; step < 3; ++step) {
    Tensor y = linear(x, w);
    if (step == 0) first = y.detach().clone();
    sum(y).backward();  // a fresh graph every step
    NoGrad ng;
    w.copy_(w - w.grad() * 0.5);  // the update must be seen by the next forward
    w.zero_grad();
  }
  Tensor again = linear(x, w);
  EXPECT_NE(again.to_vector(), first.to_vector());
}
