// ResNet-18/34/50 with torchvision's names (include/qiusuo/apps/resnet.h).
#include "qiusuo/apps/resnet.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "qiusuo/autograd.h"
#include "qiusuo/error.h"
#include "qiusuo/ops.h"

namespace qs::apps {

namespace {

std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t k, int64_t stride, Generator& gen) {
  return std::make_shared<nn::Conv2d>(in, out, k, nn::ConvOptions{.stride = stride, .padding = k / 2, .bias = false}, gen);
}

// conv 1x1 (stride s) + batch norm, where a block changes shape; null otherwise.
std::shared_ptr<nn::Sequential> downsample(int64_t in, int64_t out, int64_t stride, Generator& gen) {
  if (stride == 1 && in == out) return nullptr;
  return std::make_shared<nn::Sequential>(
      std::initializer_list<std::shared_ptr<nn::Module>>{conv(in, out, 1, stride, gen), std::make_shared<nn::BatchNorm2d>(out)});
}

std::vector<int> blocks_of(int depth) {
  switch (depth) {
    case 18: return {2, 2, 2, 2};
    case 34:
    case 50: return {3, 4, 6, 3};
    default: QS_CHECK(false, "ResNet: depth must be 18, 34 or 50, got {}", depth);
  }
  return {};
}

}  // namespace

BasicBlock::BasicBlock(int64_t in, int64_t planes, int64_t stride, Generator& gen) : Module("BasicBlock") {
  conv1_ = register_module("conv1", conv(in, planes, 3, stride, gen));
  bn1_ = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  conv2_ = register_module("conv2", conv(planes, planes, 3, 1, gen));
  bn2_ = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  if (auto d = downsample(in, planes * kExpansion, stride, gen)) downsample_ = register_module("downsample", d);
}

Tensor BasicBlock::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  Tensor h = bn2_->forward((*conv2_)(bn1_->forward_relu((*conv1_)(x))));
  return relu(h + (downsample_ ? (*downsample_)(x) : x));
}

Bottleneck::Bottleneck(int64_t in, int64_t planes, int64_t stride, Generator& gen) : Module("Bottleneck") {
  conv1_ = register_module("conv1", conv(in, planes, 1, 1, gen));
  bn1_ = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  conv2_ = register_module("conv2", conv(planes, planes, 3, stride, gen));
  bn2_ = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  conv3_ = register_module("conv3", conv(planes, planes * kExpansion, 1, 1, gen));
  bn3_ = register_module("bn3", std::make_shared<nn::BatchNorm2d>(planes * kExpansion));
  if (auto d = downsample(in, planes * kExpansion, stride, gen)) downsample_ = register_module("downsample", d);
}

Tensor Bottleneck::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  Tensor h = bn2_->forward_relu((*conv2_)(bn1_->forward_relu((*conv1_)(x))));
  h = bn3_->forward((*conv3_)(h));
  return relu(h + (downsample_ ? (*downsample_)(x) : x));
}

ResNet::ResNet(const ResNetConfig& cfg, Generator& gen) : Module("ResNet"), cfg_(cfg) {
  const std::vector<int> blocks = blocks_of(cfg.depth);
  QS_CHECK(cfg.in_channels >= 1 && cfg.width >= 1 && cfg.classes >= 0, "ResNet: in_channels {} and width {} must be "
           ">= 1 and classes {} >= 0", cfg.in_channels, cfg.width, cfg.classes);
  conv1_ = register_module("conv1", std::make_shared<nn::Conv2d>(
                                        cfg.in_channels, cfg.width, 7, nn::ConvOptions{.stride = 2, .padding = 3, .bias = false}, gen));
  bn1_ = register_module("bn1", std::make_shared<nn::BatchNorm2d>(cfg.width));
  const bool bottleneck = cfg.depth == 50;
  int64_t in = cfg.width;
  for (int s = 0; s < 4; ++s) {
    auto layer = std::make_shared<nn::Sequential>();
    const int64_t planes = cfg.width << s, stride = s == 0 ? 1 : 2;
    for (int b = 0; b < blocks[size_t(s)]; ++b) {
      if (bottleneck) {
        layer->push_back(std::make_shared<Bottleneck>(in, planes, b == 0 ? stride : 1, gen));
        in = planes * Bottleneck::kExpansion;
      } else {
        layer->push_back(std::make_shared<BasicBlock>(in, planes, b == 0 ? stride : 1, gen));
        in = planes * BasicBlock::kExpansion;
      }
    }
    layers_.push_back(register_module(fmt::format("layer{}", s + 1), layer));
  }
  if (cfg.classes > 0) fc_ = register_module("fc", std::make_shared<nn::Linear>(in, cfg.classes, true, gen));
}

int64_t ResNet::channels(int stage) const {
  QS_CHECK(stage >= 1 && stage <= 4, "ResNet: stage must be 1..4, got {}", stage);
  return (cfg_.width << (stage - 1)) * (cfg_.depth == 50 ? Bottleneck::kExpansion : BasicBlock::kExpansion);
}

std::vector<Tensor> ResNet::stages(const Tensor& x) {
  QS_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_channels, "ResNet: expected images [N, {}, H, W], got {}",
           cfg_.in_channels, shape_str(x.shape()));
  Tensor h = max_pool2d(bn1_->forward_relu((*conv1_)(x)), 3, 2, 1);
  std::vector<Tensor> out;
  for (auto& layer : layers_) {
    h = (*layer)(h);
    out.push_back(h);
  }
  return out;
}

Tensor ResNet::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  Tensor c5 = stages(x).back();
  if (!fc_) return c5;
  return (*fc_)(mean(c5, {2, 3}));
}

void load_torchvision_resnet(ResNet& model, const nn::StateDict& state) {
  std::map<std::string, Shape> own;
  for (const auto& [n, t] : model.state_dict()) own.emplace(n, t.shape());
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  nn::StateDict in;
  for (const auto& [n, t] : state) {
    auto it = own.find(n);
    if (n.rfind("fc.", 0) == 0 && (it == own.end() || it->second != t.shape()))
      continue;  // no classifier here, or one for another number of classes: not loaded
    QS_CHECK(it != own.end(), "ResNet-{}: the state dict has '{}', which this model has not (a ResNet of another "
             "depth?)", model.config().depth, n);
    if (n == "conv1.weight" && t.dim() == 4 && t.size(1) == 3 && model.config().in_channels == 1) {
      NoGrad ng;
      in.emplace_back(n, sum(t, {1}, true));  // a grey image on all three channels
      continue;
    }
    in.emplace_back(n, t);
  }
  // Everything the model has must come (but its classifier, and the batch counters that
  // older PyTorch files lack); shapes are checked by load_state_dict, before any copy.
  std::set<std::string> given;
  for (const auto& [n, t] : in) given.insert(n);
  std::vector<std::string> missing;
  for (const auto& [n, shape] : own)
    if (!given.count(n) && n.rfind("fc.", 0) != 0 && !ends_with(n, ".num_batches_tracked")) missing.push_back(n);
  QS_CHECK(missing.empty(), "ResNet-{}: the state dict lacks {} of its tensors, e.g. {} (a ResNet of another depth?)",
           model.config().depth, missing.size(), missing.empty() ? "" : missing.front());
  model.load_state_dict(in, /*strict=*/false);
}

}  // namespace qs::apps
