// ResNet-18/34/50: torchvision's architecture (parameter counts, names, stage shapes) and
// the loading of torchvision state dicts, into grey (1-channel) models too.
#include <gtest/gtest.h>

#include <set>

#include "qiusuo/apps/resnet.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "test_util.h"

using namespace qs;
using apps::ResNet;
using apps::ResNetConfig;

namespace {
int64_t parameters(const nn::Module& m) {
  int64_t n = 0;
  for (const auto& [name, p] : m.named_parameters()) n += p.numel();
  return n;
}
}  // namespace

// torchvision's resnet18/34/50 with 1000 classes have 11,689,512 / 21,797,672 / 25,557,032
// parameters (sum(p.numel() for p in m.parameters())).
TEST(ResNet, ParameterCountsAreTorchvisions) {
  EXPECT_EQ(parameters(ResNet(ResNetConfig{.depth = 18, .classes = 1000})), 11689512);
  EXPECT_EQ(parameters(ResNet(ResNetConfig{.depth = 34, .classes = 1000})), 21797672);
  EXPECT_EQ(parameters(ResNet(ResNetConfig{.depth = 50, .classes = 1000})), 25557032);
}

TEST(ResNet, NamesAndStagesAreTorchvisions) {
  Generator g(3);
  ResNet m(ResNetConfig{.depth = 18, .in_channels = 1, .width = 8}, g);
  std::set<std::string> names;
  for (const auto& [n, t] : m.state_dict()) names.insert(n);
  for (const char* n : {"conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
                        "layer1.1.bn2.bias", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
                        "layer4.1.conv2.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_FALSE(names.count("layer1.0.downsample.0.weight"));  // stage 1 keeps its shape
  EXPECT_FALSE(names.count("fc.weight"));                      // a backbone
  NoGrad ng;
  const auto s = m.stages(randn({2, 1, 64, 48}, DType::f32, &g));
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].shape(), (Shape{2, 8, 16, 12}));
  EXPECT_EQ(s[1].shape(), (Shape{2, 16, 8, 6}));
  EXPECT_EQ(s[2].shape(), (Shape{2, 32, 4, 3}));
  EXPECT_EQ(s[3].shape(), (Shape{2, 64, 2, 2}));
  ResNet b(ResNetConfig{.depth = 50, .in_channels = 1, .width = 4}, g);
  EXPECT_EQ(b.channels(1), 16);
  EXPECT_EQ(b.channels(4), 128);
  b.eval();  // one image of 1 x 1 at stride 32: training-mode batch norm has one value per channel
  EXPECT_EQ(b(randn({1, 1, 32, 32}, DType::f32, &g)).shape(), (Shape{1, 128, 1, 1}));
  EXPECT_NE(qs::testing::error_of([] { ResNet(ResNetConfig{.depth = 20}); }).find("18, 34 or 50"), std::string::npos);
}

// A 3-channel state dict into a grey model: conv1 summed over its input channels, so a grey
// image gives what the 3-channel model gives on that image in all three channels; the
// classifier of another class count is left out; a dict of another depth is refused.
TEST(ResNet, LoadsTorchvisionStateDictsIntoGreyModels) {
  Generator g(5);
  ResNet rgb(ResNetConfig{.depth = 18, .in_channels = 3, .width = 8, .classes = 6}, g);
  ResNet grey(ResNetConfig{.depth = 18, .in_channels = 1, .width = 8, .classes = 4}, g);
  apps::load_torchvision_resnet(grey, rgb.state_dict());
  ResNet backbone(ResNetConfig{.depth = 18, .in_channels = 1, .width = 8}, g);
  apps::load_torchvision_resnet(backbone, rgb.state_dict());
  NoGrad ng;
  rgb.eval(), grey.eval(), backbone.eval();
  const Tensor x = randn({2, 1, 32, 32}, DType::f32, &g);
  const Tensor want = rgb.stages(cat({x, x, x}, 1)).back();
  const auto a = grey.stages(x).back().to_vector(), b = want.to_vector(), c = backbone(x).to_vector();
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_NEAR(a[i], b[i], 1e-4 * (1 + std::abs(b[i])));
    EXPECT_NEAR(c[i], b[i], 1e-4 * (1 + std::abs(b[i])));
  }
  ResNet deeper(ResNetConfig{.depth = 34, .in_channels = 3, .width = 8}, g);
  EXPECT_NE(qs::testing::error_of([&] { apps::load_torchvision_resnet(deeper, rgb.state_dict()); }).find("lacks"),
            std::string::npos);
  EXPECT_NE(qs::testing::error_of([&] { apps::load_torchvision_resnet(rgb, deeper.state_dict()); }).find("has not"),
            std::string::npos);
}
