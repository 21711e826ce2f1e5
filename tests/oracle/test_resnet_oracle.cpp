// ResNet-18 and ResNet-50 against torchvision itself (resnet_oracle.py): torchvision's state
// dict loads by name (load_torchvision_resnet) and the logits agree, in evaluation mode
// (running statistics) and in training mode (batch statistics).
#include <gtest/gtest.h>

#include <map>

#include "oracle_util.h"
#include "qiusuo/apps/resnet.h"
#include "qiusuo/autograd.h"
#include "qiusuo/io/safetensors.h"
#include "test_util.h"

using namespace qs;
using qs::testing::all_close;

TEST(OracleResNet, TorchvisionWeightsGiveTorchvisionLogits) {
  const std::string path = qs::testing::temp_dir("resnet_oracle") + "/resnet_oracle.safetensors";
  qs::testing::run_oracle("resnet_oracle.py", path);
  auto file = io::load_safetensors(path);
  std::map<std::string, Tensor> t(file.tensors.begin(), file.tensors.end());
  for (int depth : {18, 50}) {
    SCOPED_TRACE("ResNet-" + std::to_string(depth));
    const std::string p = "r" + std::to_string(depth) + ".";
    nn::StateDict sd;
    for (auto& [k, v] : file.tensors)
      if (k.rfind(p + "state.", 0) == 0) sd.emplace_back(k.substr(p.size() + 6), v);
    apps::ResNet model(apps::ResNetConfig{.depth = depth, .in_channels = 3, .width = 64, .classes = 10});
    apps::load_torchvision_resnet(model, sd);
    NoGrad ng;
    model.eval();
    // oneDNN's f32 convolutions sum in another order than PyTorch's through 50 layers.
    EXPECT_TRUE(all_close(model(t.at(p + "input")), t.at(p + "eval_logits"), 2e-4, 2e-3));
    model.train();
    EXPECT_TRUE(all_close(model(t.at(p + "input")), t.at(p + "train_logits"), 2e-4, 2e-3));
  }
}
