#include <gtest/gtest.h>

#include "qiusuo/ops.h"
#include "qiusuo/tensor.h"

using namespace qs;

TEST(Tensor, FactoriesShapesStrides) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(z.numel(), 6);
  EXPECT_TRUE(z.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(z.raw_data()) % 64, 0u);
  Tensor a = arange(0, 6).view({2, 3});
  EXPECT_EQ(a.to_vector(), (std::vector<double>{0, 1, 2, 3, 4, 5}));
  EXPECT_DOUBLE_EQ(full({1}, 2.5).item(), 2.5);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor a = arange(0, 12).view({3, 4});
  Tensor t = a.t();
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  EXPECT_EQ(t.storage(), a.storage());
  EXPECT_EQ(t.to_vector(), (std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  Tensor n = a.narrow(1, 1, 2);
  EXPECT_EQ(n.to_vector(), (std::vector<double>{1, 2, 5, 6, 9, 10}));
  n.fill_(-1);
  EXPECT_EQ(a.select(0, 0).to_vector(), (std::vector<double>{0, -1, -1, 3}));
  Tensor s = a.slice(1, 0, 4, 2);
  EXPECT_EQ(s.shape(), (Shape{3, 2}));
  Tensor e = arange(0, 3).view({3, 1}).expand({3, 4});
  EXPECT_EQ(e.strides()[1], 0);
  EXPECT_EQ(e.contiguous().to_vector(), (std::vector<double>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}));
  EXPECT_EQ(a.unsqueeze(0).shape(), (Shape{1, 3, 4}));
  EXPECT_EQ(a.unsqueeze(0).squeeze(0).shape(), (Shape{3, 4}));
  EXPECT_EQ(a.permute({1, 0}).shape(), (Shape{4, 3}));
}

TEST(Tensor, ViewOfNonContiguousNeedsReshape) {
  Tensor a = arange(0, 12).view({3, 4}).t();
  EXPECT_THROW(a.view({12}), Error);
  Tensor r = a.reshape({12});
  EXPECT_EQ(r.to_vector()[1], 4);
}

TEST(Tensor, Broadcasting) {
  Tensor a = arange(0, 3).view({3, 1});
  Tensor b = arange(0, 4).view({1, 4});
  Tensor c = a + b;
  EXPECT_EQ(c.shape(), (Shape{3, 4}));
  EXPECT_EQ(c.to_vector()[7], 1 + 3);
  EXPECT_THROW(arange(0, 3) + arange(0, 4), Error);
}

TEST(Tensor, DtypeConversions) {
  Tensor a = from_vector({1.5, -2.25, 3.0}, {3});
  EXPECT_EQ(a.to(DType::f64).to_vector(), a.to_vector());
  EXPECT_EQ(a.to(DType::bf16).to(DType::f32).to_vector(), a.to_vector());
  EXPECT_EQ(a.to(DType::f16).to(DType::f32).to_vector(), a.to_vector());
  EXPECT_EQ(a.to(DType::i32).to_vector(), (std::vector<double>{1, -2, 3}));
  EXPECT_NEAR(f16_to_f32(f32_to_f16(65504.f)), 65504.f, 0);
  EXPECT_NEAR(f16_to_f32(f32_to_f16(1e-7f)), 1.19209e-07f, 1e-9);  // subnormal
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.00390625f)), 1.0f);          // ties to even
}

TEST(Tensor, RandomIsSeeded) {
  Generator g1(7), g2(7);
  EXPECT_EQ(randn({5}, DType::f32, &g1).to_vector(), randn({5}, DType::f32, &g2).to_vector());
  Tensor r = randint(0, 10, {1000}, DType::i64, &g1);
  for (double v : r.to_vector()) EXPECT_TRUE(v >= 0 && v < 10);
  Tensor u = rand({10000}, DType::f64, &g1);
  EXPECT_NEAR(mean(u).item(), 0.5, 0.02);
  auto st = g1.state();
  double x = g1.next_normal();
  g2.set_state(st);
  EXPECT_EQ(g2.next_normal(), x);
}

TEST(Tensor, PrintingAndErrors) {
  Tensor a = arange(0, 4).view({2, 2});
  EXPECT_NE(a.to_string().find("shape=[2, 2]"), std::string::npos);
  try {
    matmul(zeros({2, 3}), zeros({4, 5}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inner dimensions differ"), std::string::npos);
  }
}

TEST(Ops, MatmulShapes) {
  Tensor a = randn({2, 3, 4}), b = randn({4, 5});
  EXPECT_EQ(matmul(a, b).shape(), (Shape{2, 3, 5}));
  EXPECT_EQ(matmul(randn({4}), randn({4})).dim(), 0);
  EXPECT_EQ(matmul(randn({3, 4}), randn({4})).shape(), (Shape{3}));
  EXPECT_EQ(linear(randn({2, 7, 4}), randn({6, 4}), randn({6})).shape(), (Shape{2, 7, 6}));
}
