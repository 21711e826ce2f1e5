// rope and topk beyond the generic harness: the rope formula written out, its inverse,
// the relative-position property; topk tie-breaking, NaN, unsorted order and the
// gradient, on both the reference and the optimised kernel; errors.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

std::pair<Tensor, Tensor> tables(int64_t n, int64_t h, DType dt, int64_t first = 0) {
  Tensor pos = arange(double(first), double(first + n), 1, dt).reshape({n, 1});
  std::vector<double> f;
  for (int64_t j = 0; j < h; ++j) f.push_back(std::pow(10000.0, -double(j) / double(h)));
  Tensor ang = pos * from_vector(f, {1, h}, dt);
  return {cos(ang), sin(ang)};
}

TEST(Rope, MatchesTheRotateHalfFormulaOnAHeadSlice) {
  Generator g(1);
  // [b, n, 3, H, d] -> k heads as [b, H, n, d]: last dim contiguous, the rest strided.
  Tensor qkv = randn({2, 5, 3, 4, 8}, DType::f64, &g);
  Tensor k = qkv.select(2, 1).permute({0, 2, 1, 3});
  auto [c, s] = tables(5, 4, DType::f64);
  Tensor got = rope(k, c, s);
  EXPECT_TRUE(got.is_contiguous());
  auto K = k.contiguous().to_vector(), G = got.to_vector(), C = c.to_vector(), S = s.to_vector();
  for (int64_t r = 0; r < 2 * 4 * 5; ++r) {
    int64_t t = r % 5;
    for (int64_t j = 0; j < 4; ++j) {
      double x1 = K[size_t(r * 8 + j)], x2 = K[size_t(r * 8 + j + 4)];
      double cs = C[size_t(t * 4 + j)], sn = S[size_t(t * 4 + j)];
      EXPECT_NEAR(G[size_t(r * 8 + j)], x1 * cs - x2 * sn, 1e-14);
      EXPECT_NEAR(G[size_t(r * 8 + j + 4)], x1 * sn + x2 * cs, 1e-14);
    }
  }
}

TEST(Rope, RotatingBackByMinusSinIsTheInverse) {
  Generator g(2);
  Tensor x = randn({3, 17, 34}, DType::f32, &g);
  auto [c, s] = tables(17, 17, DType::f32);
  Tensor back = rope(rope(x, c, s), c, neg(s));
  EXPECT_LT(amax(abs(back - x)).item(), 1e-5);
}

// The point of RoPE: <rope(q, m), rope(k, n)> depends on m - n only.
TEST(Rope, ScoresDependOnRelativePositionOnly) {
  Generator g(3);
  Tensor q = randn({1, 16}, DType::f64, &g), k = randn({1, 16}, DType::f64, &g);
  auto score = [&](int64_t m, int64_t n) {
    auto [cm, sm] = tables(1, 8, DType::f64, m);
    auto [cn, sn] = tables(1, 8, DType::f64, n);
    return sum(rope(q, cm, sm) * rope(k, cn, sn)).item();
  };
  EXPECT_NEAR(score(3, 1), score(12, 10), 1e-10);
  EXPECT_NEAR(score(0, 7), score(20, 27), 1e-10);
}

TEST(Rope, Errors) {
  auto [c, s] = tables(4, 3, DType::f32);
  auto msg = [](auto f) {
    try {
      f();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg([&] { rope(zeros({4, 5}), c, s); }).find("d even"), std::string::npos);
  EXPECT_NE(msg([&] { rope(zeros({5, 6}), c, s); }).find("[n, d / 2] = [5, 3]"), std::string::npos);
  EXPECT_NE(msg([&] { rope(zeros({4, 6}, DType::f64), c, s); }).find("dtype"), std::string::npos);
  EXPECT_NE(msg([&] { rope(zeros({6}), c, s); }).find("[..., n, d]"), std::string::npos);
}

// Runs topk with one named kernel ("ref" or "cpu").
ValuesIndices topk_with(const std::string& impl, const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted) {
  ops::OpCall call{ops::OpKind::topk, {x}, Attrs().set("k", k).set("dim", dim).set("largest", largest).set("sorted", sorted), {}};
  for (auto& sp : ops::run_meta(call)) call.out.push_back(empty(sp.shape, sp.dtype));
  ops::run_kernel(call, impl);
  return {call.out[0], call.out[1]};
}

std::vector<int64_t> ints(const Tensor& t) { return t.to_vector_as<int64_t>(); }

TEST(Topk, TiesGoToTheLowerIndexInBothKernels) {
  Tensor x = from_vector({1, 3, 3, 2, 3, 1}, {6});
  for (std::string impl : {"ref", "cpu"}) {
    auto r = topk_with(impl, x, 2, 0, true, true);
    EXPECT_EQ(ints(r.indices), (std::vector<int64_t>{1, 2})) << impl;
    auto s = topk_with(impl, x, 3, 0, false, true);
    EXPECT_EQ(ints(s.indices), (std::vector<int64_t>{0, 5, 3})) << impl;
    EXPECT_EQ(s.values.to_vector(), (std::vector<double>{1, 1, 2})) << impl;
  }
}

TEST(Topk, NaNIsLargestAndUnsortedKeepsIndexOrder) {
  Tensor x = from_vector({0.5, NAN, -1, 2, 0.7}, {5});
  for (std::string impl : {"ref", "cpu"}) {
    auto r = topk_with(impl, x, 2, 0, true, true);
    EXPECT_EQ(ints(r.indices), (std::vector<int64_t>{1, 3})) << impl;
    EXPECT_TRUE(std::isnan(r.values.to_vector()[0]));
    auto low = topk_with(impl, x, 4, 0, false, true);
    EXPECT_EQ(ints(low.indices), (std::vector<int64_t>{2, 0, 4, 3})) << impl;
    auto u = topk_with(impl, x, 3, 0, true, false);
    EXPECT_EQ(ints(u.indices), (std::vector<int64_t>{1, 3, 4})) << impl;
  }
}

TEST(Topk, AlongAMiddleDimOfAView) {
  Generator g(4);
  Tensor x = randn({4, 9, 3}, DType::f32, &g).transpose(0, 2);  // [3, 9, 4], strided
  auto r = topk(x, 3, 1);
  ASSERT_EQ(r.values.shape(), (Shape{3, 3, 4}));
  auto [mv, mi] = max(x, 1);
  EXPECT_EQ(ints(r.indices.select(1, 0)), ints(mi));
  Tensor picked = gather(x, 1, r.indices);
  EXPECT_EQ(picked.to_vector(), r.values.to_vector());
}

TEST(Topk, GradientGoesToTheSelectedPositions) {
  Tensor x = from_vector({0.1, 0.9, 0.4, 0.8, 0.2}, {5}, DType::f64).requires_grad_();
  auto r = topk(x, 2);
  sum(r.values * from_vector({3, 5}, {2}, DType::f64)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 3, 0, 5, 0}));
  EXPECT_FALSE(r.indices.requires_grad());
}

TEST(Topk, Errors) {
  EXPECT_THROW(topk(zeros({3, 4}), 5, 1), Error);
  EXPECT_THROW(topk(zeros({3, 4}), -1, 1), Error);
  EXPECT_THROW(topk(zeros({3, 4}), 1, 2), Error);
  EXPECT_THROW(topk(zeros({3}, DType::b8), 1), Error);
  EXPECT_THROW(topk(scalar_tensor(1.0), 1), Error);
}

}  // namespace
}  // namespace qs
