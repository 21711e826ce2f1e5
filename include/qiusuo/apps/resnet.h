// ResNet-18/34/50 (He et al. 2016, "Deep Residual Learning for Image Recognition") as
// torchvision builds it (torchvision.models.resnet, v1.5: the stride of a bottleneck's
// stage sits on its 3x3 convolution), with torchvision's parameter names, so a state dict
// converted from torchvision loads as it is (load_torchvision_resnet):
//
//   conv1 (7x7, stride 2, no bias) bn1 relu maxpool (3x3, stride 2, padding 1)
//   layer1 .. layer4: blocks "layerL.B" of
//     BasicBlock (18, 34):  conv1 3x3 (stride s) bn1 relu conv2 3x3 bn2 (+ downsample) relu
//     Bottleneck (50):      conv1 1x1 bn1 relu conv2 3x3 (stride s) bn2 relu conv3 1x1 (4x) bn3
//                           (+ downsample) relu
//   downsample = Sequential(conv 1x1 stride s, no bias; BatchNorm) where the shape changes
//   avgpool, fc (when classes > 0)
//
// Stages of 64, 128, 256, 512 channels (times 4 for Bottleneck) at strides 4, 8, 16, 32;
// blocks per stage: 18 = 2 2 2 2, 34 = 3 4 6 3, 50 = 3 4 6 3. `width` scales the channel
// counts (64 is torchvision's); `in_channels` 1 takes grey images (NEU-DET's).
#pragma once
#include <memory>
#include <vector>

#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/nn/sequential.h"

namespace qs::apps {

struct ResNetConfig {
  int depth = 18;            // 18 | 34 | 50
  int64_t in_channels = 3;
  int64_t width = 64;        // channels of the stem and the first stage
  int64_t classes = 0;       // 0: a backbone (no avgpool / fc)
};

class BasicBlock : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t in, int64_t planes, int64_t stride, Generator& gen);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Conv2d> conv1_, conv2_;
  std::shared_ptr<nn::BatchNorm2d> bn1_, bn2_;
  std::shared_ptr<nn::Sequential> downsample_;
};

class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t in, int64_t planes, int64_t stride, Generator& gen);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<nn::BatchNorm2d> bn1_, bn2_, bn3_;
  std::shared_ptr<nn::Sequential> downsample_;
};

class ResNet : public nn::Module {
 public:
  explicit ResNet(const ResNetConfig& cfg, Generator& gen = default_generator());
  // x [N, in_channels, H, W]: class logits [N, classes], or with classes = 0 the last
  // stage's features [N, channels(4), H/32, W/32].
  Tensor forward(const Tensor& x) override;
  // The four stages' outputs {C2, C3, C4, C5} at strides 4, 8, 16, 32 (a detector's
  // feature pyramid reads them).
  std::vector<Tensor> stages(const Tensor& x);
  // Output channels of stage 1..4.
  int64_t channels(int stage) const;
  const ResNetConfig& config() const { return cfg_; }

 private:
  ResNetConfig cfg_;
  std::shared_ptr<nn::Conv2d> conv1_;
  std::shared_ptr<nn::BatchNorm2d> bn1_;
  std::vector<std::shared_ptr<nn::Sequential>> layers_;
  std::shared_ptr<nn::Linear> fc_;
};

// Loads a state dict converted from torchvision's resnet18/34/50 (the same names; PyTorch's
// "num_batches_tracked" included or not). A 3-channel conv1.weight loads into a 1-channel
// model as the sum over its input channels (a grey image fed to all three channels), and
// fc.* is skipped when the model has no classifier or another number of classes. Errors:
// a missing tensor, a shape that differs otherwise, a depth that does not match.
void load_torchvision_resnet(ResNet& model, const nn::StateDict& state);

}  // namespace qs::apps
