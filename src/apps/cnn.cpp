#include "qiusuo/apps/cnn.h"

#include <typeinfo>

#include "qiusuo/nn/activation.h"
#include "qiusuo/ops.h"

namespace qs::apps {

FashionCNN::FashionCNN(Generator& gen) : Module("FashionCNN") {
  nn::ConvOptions same{.padding = 1};
  // Registration order (c1, b1, c2, ...) keeps the state-dict order of the peer.
  register_module("c1", std::make_shared<nn::Conv2d>(1, 32, 3, same, gen));
  register_module("b1", std::make_shared<nn::BatchNorm2d>(32));
  register_module("c2", std::make_shared<nn::Conv2d>(32, 64, 3, same, gen));
  register_module("b2", std::make_shared<nn::BatchNorm2d>(64));
  register_module("c3", std::make_shared<nn::Conv2d>(64, 128, 3, same, gen));
  register_module("b3", std::make_shared<nn::BatchNorm2d>(128));
  register_module("fc", std::make_shared<nn::Linear>(128, 10, true, gen));
  for (const char* r : {"r1", "r2", "r3"}) register_module(r, std::make_shared<nn::ReLU>());
}

std::vector<std::vector<std::string>> FashionCNN::fuse_groups() {
  return {{"c1", "b1", "r1"}, {"c2", "b2", "r2"}, {"c3", "b3", "r3"}};
}

Tensor FashionCNN::forward(const Tensor& x) {
  QS_CHECK(x.dim() == 4 && x.size(1) == 1, "FashionCNN: expected images [N, 1, H, W], got {}", shape_str(x.shape()));
  // conv -> batch-norm -> ReLU; the last two as one fused op while they are the plain
  // modules (quantisation's prepare swaps in fused or observed ones, which run as given).
  auto stage = [&](const Tensor& h, const char* c, const char* b, const char* r) {
    Tensor y = child(c)->forward(h);
    auto bn = child(b), act = child(r);
    if (typeid(*bn) == typeid(nn::BatchNorm2d) && typeid(*act) == typeid(nn::ReLU))
      return static_cast<nn::BatchNorm2d&>(*bn).forward_relu(y);
    return child(r)->forward(child(b)->forward(y));
  };
  Tensor h = max_pool2d(stage(x, "c1", "b1", "r1"), 2);
  h = max_pool2d(stage(h, "c2", "b2", "r2"), 2);
  h = stage(h, "c3", "b3", "r3");
  return child("fc")->forward(adaptive_avg_pool2d(h, 1).flatten(1));
}

CNN3D::CNN3D(Generator& gen) : Module("CNN3D") {
  nn::ConvOptions same{.padding = 1};
  c1_ = register_module("c1", std::make_shared<nn::Conv3d>(1, 16, 3, same, gen));
  b1_ = register_module("b1", std::make_shared<nn::BatchNorm3d>(16));
  c2_ = register_module("c2", std::make_shared<nn::Conv3d>(16, 32, 3, same, gen));
  b2_ = register_module("b2", std::make_shared<nn::BatchNorm3d>(32));
  c3_ = register_module("c3", std::make_shared<nn::Conv3d>(32, 64, 3, same, gen));
  b3_ = register_module("b3", std::make_shared<nn::BatchNorm3d>(64));
  fc_ = register_module("fc", std::make_shared<nn::Linear>(64, 2, true, gen));
}

Tensor CNN3D::forward(const Tensor& x) {
  QS_CHECK(x.dim() == 5 && x.size(1) == 1, "CNN3D: expected volumes [N, 1, D, H, W], got {}", shape_str(x.shape()));
  Tensor h = max_pool3d(b1_->forward_relu((*c1_)(x)), 2);
  h = max_pool3d(b2_->forward_relu((*c2_)(h)), 2);
  h = b3_->forward_relu((*c3_)(h));
  return (*fc_)(mean(h, {2, 3, 4}));
}

}  // namespace qs::apps
