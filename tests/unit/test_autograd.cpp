#include <gtest/gtest.h>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

using namespace qs;

TEST(Autograd, SimpleChain) {
  Tensor x = from_vector({1, 2, 3}, {3}).requires_grad_();
  Tensor y = sum(x * x * 3.0);
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 12, 18}));
}

TEST(Autograd, AccumulatesAndBroadcasts) {
  Tensor w = ones({3}).requires_grad_();
  Tensor x = arange(0, 6).view({2, 3});
  sum(x * w).backward();
  sum(x * w).backward();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{6, 10, 14}));
  w.zero_grad();
  EXPECT_FALSE(w.grad().defined());
}

TEST(Autograd, NonScalarNeedsGradient) {
  Tensor x = ones({2}).requires_grad_();
  Tensor y = x * 2.0;
  EXPECT_THROW(y.backward(), Error);
  y.backward(from_vector({1, 10}, {2}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 20}));
}

TEST(Autograd, SecondBackwardThroughFreedGraphFails) {
  Tensor x = ones({2}).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward();
  try {
    y.backward();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos);
  }
  Tensor z = sum(exp(x));
  z.backward({}, true);
  z.backward();  // retained: fine
}

TEST(Autograd, NoGradAndDetach) {
  Tensor x = ones({2}).requires_grad_();
  {
    NoGrad ng;
    EXPECT_FALSE((x * 2.0).requires_grad());
  }
  EXPECT_TRUE((x * 2.0).requires_grad());
  EXPECT_FALSE(x.detach().requires_grad());
  EXPECT_THROW(sum(x.detach()).backward(), Error);
}

TEST(Autograd, HooksSeeAndReplaceGradients) {
  Tensor x = ones({2}).requires_grad_();
  Tensor y = x * 3.0;
  Tensor seen;
  y.register_hook([&](const Tensor& g) {
    seen = g;
    return g * 2.0;
  });
  sum(y).backward();
  EXPECT_EQ(seen.to_vector(), (std::vector<double>{1, 1}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 6}));
  Tensor w = ones({2}).requires_grad_();
  w.register_hook([](const Tensor& g) { return g * 0.0; });
  sum(w * 5.0).backward();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{0, 0}));
}

TEST(Autograd, NotDifferentiableIsAnError) {
  Tensor x = ones({2}).requires_grad_();
  EXPECT_FALSE(gt(x, zeros({2})).requires_grad());  // bool output: no gradient at all
}

TEST(Autograd, GradFunctionAndViews) {
  Tensor x = arange(0, 6, 1, DType::f64).view({2, 3}).requires_grad_();
  Tensor y = sum(x.t().slice(0, 1, 3) * 2.0);
  auto g = grad(y, {x});
  EXPECT_EQ(g[0].to_vector(), (std::vector<double>{0, 2, 2, 0, 2, 2}));
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, MatmulGradient) {
  Tensor a = randn({3, 4}, DType::f64).requires_grad_();
  Tensor b = randn({4, 2}, DType::f64).requires_grad_();
  sum(matmul(a, b)).backward();
  // d/da sum(a b) = 1 b^T
  Tensor expect = matmul(ones({3, 2}, DType::f64), b.detach().t());
  auto ga = a.grad().to_vector(), ge = expect.to_vector();
  for (size_t i = 0; i < ga.size(); ++i) EXPECT_NEAR(ga[i], ge[i], 1e-12);
}
