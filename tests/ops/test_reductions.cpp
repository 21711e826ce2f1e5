// Values of the reference-only reductions against numbers computed by PyTorch 1.13.
#include <gtest/gtest.h>

#include "oracle_util.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

using namespace qs;
using qs::test::expect_near;

namespace {
// x=torch.tensor([[1.0,3.0,-2.0,3.0],[0.5,0.25,4.0,-1.0],[2.0,2.0,2.0,-7.0]],dtype=torch.float64)
Tensor x34() { return from_vector({1.0, 3.0, -2.0, 3.0, 0.5, 0.25, 4.0, -1.0, 2.0, 2.0, 2.0, -7.0}, {3, 4}, DType::f64); }
}  // namespace

// torch.var(x,1); torch.var(x,0,correction=0); torch.var(x)
TEST(Reductions, Var) {
  expect_near(var(x34(), {1}), {5.5833333333, 4.5989583333, 20.25}, 1e-9);
  expect_near(var(x34(), {0}, 0.0), {0.3888888889, 1.2916666667, 6.2222222222, 16.8888888889}, 1e-9);
  expect_near(var(x34()), {8.7552083333}, 1e-9);
  EXPECT_EQ(var(x34(), {1}, 1.0, true).shape(), (Shape{3, 1}));
}

// a=torch.amax(x,1); a.backward(torch.tensor([1.0,2.0,3.0])); x.grad  (ties share the gradient)
TEST(Reductions, AmaxSplitsTies) {
  Tensor x = x34().requires_grad_();
  Tensor a = amax(x, {1});
  expect_near(a, {3, 4, 2}, 0);
  a.backward(from_vector({1, 2, 3}, {3}, DType::f64));
  expect_near(x.grad(), {0, 0.5, 0, 0.5, 0, 0, 2, 0, 1, 1, 1, 0}, 1e-12);
  expect_near(amin(x34(), {0, 1}), {-7}, 0);
  EXPECT_THROW(amax(zeros({0, 3}), {0}), Error);
}

// torch.max(x,1); torch.min(x,0,keepdim=True); torch.argmax(x,1), torch.argmax(x), torch.argmax(x,0)
TEST(Reductions, MaxMinWithIndicesAndArgmax) {
  auto [v, i] = max(x34(), 1);
  expect_near(v, {3, 4, 2}, 0);
  EXPECT_EQ(i.dtype(), DType::i64);
  expect_near(i, {1, 2, 0}, 0);  // the first of tied maxima
  auto mn = min(x34(), 0, true);
  EXPECT_EQ(mn.values.shape(), (Shape{1, 4}));
  expect_near(mn.values, {0.5, 0.25, -2, -7}, 0);
  expect_near(mn.indices, {1, 1, 0, 2}, 0);
  expect_near(argmax(x34(), 1), {1, 2, 0}, 0);
  expect_near(argmax(x34()), {6}, 0);
  expect_near(argmax(x34(), 0), {2, 0, 1, 0}, 0);
  // The gradient of max's values goes to the returned index only.
  Tensor x = x34().requires_grad_();
  sum(max(x, 1).values).backward();
  expect_near(x.grad(), {0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0}, 0);
}

// torch.logsumexp(torch.tensor([[1000.0,1001.0,999.0],[-1.0,0.0,float('-inf')]],dtype=torch.float64),1)
// torch.logsumexp(torch.tensor([float('-inf')]*3),0)
TEST(Reductions, LogSumExpIsStable) {
  Tensor x = from_vector({1000.0, 1001.0, 999.0, -1.0, 0.0, -INFINITY}, {2, 3}, DType::f64);
  expect_near(logsumexp(x, {1}), {1.0014076060e+03, 3.1326168752e-01}, 1e-9);
  expect_near(logsumexp(full({3}, -INFINITY), {0}), {-INFINITY}, 0);
}

// Optimised sum/mean over inner, outer, middle and mixed dims agree with a double loop.
TEST(Reductions, SumOverEveryLayout) {
  Tensor x = uniform({6, 5, 300}, -1, 1, DType::f32);
  std::vector<double> xv = x.to_vector();
  auto at = [&](int a, int b, int c) { return xv[size_t((a * 5 + b) * 300 + c)]; };
  std::vector<double> s02(5, 0), s1(6 * 300, 0);
  for (int a = 0; a < 6; ++a)
    for (int b = 0; b < 5; ++b)
      for (int c = 0; c < 300; ++c) s02[size_t(b)] += at(a, b, c), s1[size_t(a * 300 + c)] += at(a, b, c);
  expect_near(sum(x, {0, 2}), s02, 1e-5);
  expect_near(sum(x, {1}), s1, 1e-5);
  std::vector<double> m1(s1.size());  // [c, a] order: the permuted input keeps (c, a)
  for (int a = 0; a < 6; ++a)
    for (int c = 0; c < 300; ++c) m1[size_t(c * 6 + a)] = s1[size_t(a * 300 + c)] / 5;
  expect_near(mean(x.permute({2, 0, 1}), {2}), m1, 1e-5);  // strided input
}
