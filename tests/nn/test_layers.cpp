// The layer modules beside the functional ops: shapes, PyTorch's parameter names and
// initialisation bounds, train/eval behaviour, errors.
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/ops.h"

using namespace qs;

namespace {
double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}
}  // namespace

TEST(Layers, ConvShapesNamesAndInit) {
  Generator g(1);
  nn::Conv1d c1(3, 8, 5, {.padding = 2}, g);
  EXPECT_EQ(c1(randn({2, 3, 20})).shape(), (Shape{2, 8, 20}));
  nn::Conv2d c2(4, 6, 3, {.stride = 2, .groups = 2}, g);
  EXPECT_EQ(c2.weight().shape(), (Shape{6, 2, 3, 3}));
  EXPECT_EQ(c2(randn({1, 4, 9, 9})).shape(), (Shape{1, 6, 4, 4}));
  nn::Conv3d c3(2, 4, 3, {.padding = 1, .bias = false}, g);
  EXPECT_FALSE(c3.bias().defined());
  EXPECT_EQ(c3(randn({1, 2, 5, 6, 7})).shape(), (Shape{1, 4, 5, 6, 7}));
  auto names = c2.named_parameters();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].first, "weight");
  EXPECT_EQ(names[1].first, "bias");
  // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 2 * 3 * 3.
  double bound = 1 / std::sqrt(18.0);
  EXPECT_LE(max_abs(c2.weight()), bound);
  EXPECT_GT(max_abs(c2.weight()), 0.8 * bound);
  EXPECT_LE(max_abs(c2.bias()), bound);
  EXPECT_NE(c2.to_string().find("Conv2d(4, 6, kernel_size=[3, 3], stride=2, groups=2)"), std::string::npos)
      << c2.to_string();
  EXPECT_THROW(nn::Conv2d(3, 4, 3, {.groups = 2}), Error);
  EXPECT_THROW(c2(randn({1, 3, 9, 9})), Error);  // wrong channel count
}

TEST(Layers, BatchNormTracksStatisticsInTrainingOnly) {
  nn::BatchNorm2d bn(3);
  auto buffers = bn.named_buffers();
  ASSERT_EQ(buffers.size(), 3u);
  EXPECT_EQ(buffers[0].first, "running_mean");
  EXPECT_EQ(buffers[2].first, "num_batches_tracked");
  Tensor x = randn({4, 3, 5, 5}) * 2.0 + 1.0;
  Tensor y = bn(x);
  EXPECT_NEAR(mean(y).item(), 0.0, 1e-5);
  EXPECT_EQ(bn.named_buffers()[2].second.item(), 1);
  double rm = mean(bn.running_mean()).item();
  EXPECT_NEAR(rm, 0.1 * mean(x).item(), 1e-5);
  bn.eval();
  Tensor before = bn.running_mean().clone();
  bn(x);
  EXPECT_EQ(bn.running_mean().to_vector(), before.to_vector());
  EXPECT_THROW(bn(randn({4, 2, 5, 5})), Error);
  nn::BatchNorm1d b1(5);
  EXPECT_EQ(b1(randn({8, 5})).shape(), (Shape{8, 5}));
}

TEST(Layers, LayerNormRmsNormDropout) {
  nn::LayerNorm ln({8});
  Tensor x = randn({3, 8}) * 3.0;
  Tensor y = ln(x);
  EXPECT_NEAR(mean(y).item(), 0.0, 1e-5);
  EXPECT_EQ(ln.named_parameters().size(), 2u);
  nn::RMSNorm rms({8});
  Tensor r = rms(x);
  EXPECT_NEAR(mean(r * r).item(), 1.0, 1e-3);
  nn::Dropout d(0.5);
  Tensor ones_in = ones({1000});
  Tensor kept = d(ones_in);
  double zeros_frac = 0;
  for (double v : kept.to_vector()) zeros_frac += v == 0;
  EXPECT_NEAR(zeros_frac / 1000, 0.5, 0.07);
  d.eval();
  EXPECT_EQ(d(ones_in).to_vector(), ones_in.to_vector());
  EXPECT_THROW(nn::Dropout(1.0), Error);
}

TEST(Layers, PoolingModules) {
  Tensor x = randn({2, 3, 8, 8});
  EXPECT_EQ(nn::MaxPool2d(2)(x).shape(), (Shape{2, 3, 4, 4}));
  EXPECT_EQ(nn::AvgPool2d(2)(x).shape(), (Shape{2, 3, 4, 4}));
  EXPECT_EQ(nn::AdaptiveAvgPool2d(1)(x).shape(), (Shape{2, 3, 1, 1}));
  Tensor v = randn({1, 2, 4, 4, 4});
  EXPECT_EQ(nn::MaxPool3d(2)(v).shape(), (Shape{1, 2, 2, 2, 2}));
  EXPECT_EQ(nn::AdaptiveAvgPool3d(1)(v).shape(), (Shape{1, 2, 1, 1, 1}));
}
