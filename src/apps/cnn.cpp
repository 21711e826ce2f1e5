#include "qiusuo/apps/cnn.h"

#include <algorithm>
#include <typeinfo>

#include "qiusuo/nn/activation.h"
#include "qiusuo/ops.h"

namespace qs::apps {

CnnWidths CnnWidths::from_config(const nlohmann::json& config) {
  CnnWidths w;
  if (!config.is_object() || !config.contains("widths")) return w;
  const auto& j = config["widths"];
  QS_CHECK(j.is_array() && j.size() == 3 && std::all_of(j.begin(), j.end(), [](const nlohmann::json& v) {
             return v.is_number_integer() && v.get<int64_t>() > 0 && v.get<int64_t>() <= (int64_t(1) << 20);
           }),
           "FashionCNN: config widths {} must be three positive channel counts (at most 2^20)", j.dump());
  return CnnWidths{j[0].get<int64_t>(), j[1].get<int64_t>(), j[2].get<int64_t>()};
}

FashionCNN::FashionCNN(const CnnWidths& w, Generator& gen) : Module("FashionCNN"), widths_(w) {
  QS_CHECK(w.c1 > 0 && w.c2 > 0 && w.c3 > 0, "FashionCNN: widths {}, {}, {} must be positive", w.c1, w.c2, w.c3);
  nn::ConvOptions same{.padding = 1};
  // Registration order (c1, b1, c2, ...) keeps the state-dict order of the peer.
  register_module("c1", std::make_shared<nn::Conv2d>(1, w.c1, 3, same, gen));
  register_module("b1", std::make_shared<nn::BatchNorm2d>(w.c1));
  register_module("c2", std::make_shared<nn::Conv2d>(w.c1, w.c2, 3, same, gen));
  register_module("b2", std::make_shared<nn::BatchNorm2d>(w.c2));
  register_module("c3", std::make_shared<nn::Conv2d>(w.c2, w.c3, 3, same, gen));
  register_module("b3", std::make_shared<nn::BatchNorm2d>(w.c3));
  register_module("fc", std::make_shared<nn::Linear>(w.c3, 10, true, gen));
  for (const char* r : {"r1", "r2", "r3"}) register_module(r, std::make_shared<nn::ReLU>());
}

CnnWidths FashionCNN::widths_of(const nn::StateDict& state) {
  int64_t c[3] = {0, 0, 0};
  for (const auto& [name, t] : state)
    for (int i = 0; i < 3; ++i)
      if (name == fmt::format("c{}.weight", i + 1)) {
        QS_CHECK(t.dim() == 4, "FashionCNN: {} has shape {}, expected [out, in, 3, 3]", name, shape_str(t.shape()));
        c[i] = t.size(0);
      }
  for (int i = 0; i < 3; ++i) QS_CHECK(c[i] > 0, "FashionCNN: the state dict has no c{}.weight", i + 1);
  return CnnWidths{c[0], c[1], c[2]};
}

std::vector<std::vector<std::string>> FashionCNN::fuse_groups() {
  return {{"c1", "b1", "r1"}, {"c2", "b2", "r2"}, {"c3", "b3", "r3"}};
}

Tensor FashionCNN::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
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
  nn::ModuleScope scope(*this);
  QS_CHECK(x.dim() == 5 && x.size(1) == 1, "CNN3D: expected volumes [N, 1, D, H, W], got {}", shape_str(x.shape()));
  Tensor h = max_pool3d(b1_->forward_relu((*c1_)(x)), 2);
  h = max_pool3d(b2_->forward_relu((*c2_)(h)), 2);
  h = b3_->forward_relu((*c3_)(h));
  return (*fc_)(mean(h, {2, 3, 4}));
}

}  // namespace qs::apps
