// The CT nodule classifier (include/qiusuo/apps/ct_model.h).
#include "qiusuo/apps/ct_model.h"

#include <nlohmann/json.hpp>

#include "nn/config_json.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::apps {

namespace {
nn::ConvOptions same3() { return nn::ConvOptions{.padding = 1}; }
}  // namespace

ResBlock3d::ResBlock3d(int64_t in, int64_t out, Generator& gen) : Module("ResBlock3d") {
  conv1_ = register_module("conv1", std::make_shared<nn::Conv3d>(in, out, 3, same3(), gen));
  bn1_ = register_module("bn1", std::make_shared<nn::BatchNorm3d>(out));
  conv2_ = register_module("conv2", std::make_shared<nn::Conv3d>(out, out, 3, same3(), gen));
  bn2_ = register_module("bn2", std::make_shared<nn::BatchNorm3d>(out));
  if (in != out) {
    skip_ = register_module("skip", std::make_shared<nn::Conv3d>(in, out, 1, nn::ConvOptions{.bias = false}, gen));
    skip_bn_ = register_module("skip_bn", std::make_shared<nn::BatchNorm3d>(out));
  }
}

Tensor ResBlock3d::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  Tensor h = bn2_->forward((*conv2_)(bn1_->forward_relu((*conv1_)(x))));
  return relu(h + (skip_ ? skip_bn_->forward((*skip_)(x)) : x));
}

AttentionGate3d::AttentionGate3d(int64_t fx, int64_t fg, int64_t inner, Generator& gen) : Module("AttentionGate3d") {
  theta_ = register_module("theta", std::make_shared<nn::Conv3d>(fx, inner, 2, nn::ConvOptions{.stride = 2, .bias = false}, gen));
  phi_ = register_module("phi", std::make_shared<nn::Conv3d>(fg, inner, 1, nn::ConvOptions{}, gen));
  psi_ = register_module("psi", std::make_shared<nn::Conv3d>(inner, 1, 1, nn::ConvOptions{}, gen));
}

Tensor AttentionGate3d::forward(const Tensor&) {
  QS_FAIL("AttentionGate3d: call gate(x, g): the gate needs its gating signal");
}

std::pair<Tensor, Tensor> AttentionGate3d::gate(const Tensor& x, const Tensor& g) {
  nn::ModuleScope scope(*this);
  QS_CHECK(x.dim() == 5 && g.dim() == 5 && x.size(2) == 2 * g.size(2) && x.size(3) == 2 * g.size(3) &&
               x.size(4) == 2 * g.size(4),
           "AttentionGate3d: x {} must be twice g {} in D, H, W", shape_str(x.shape()), shape_str(g.shape()));
  Tensor a = sigmoid((*psi_)(relu((*theta_)(x) + (*phi_)(g))));
  a = interpolate(a, {x.size(2), x.size(3), x.size(4)}, "trilinear");
  return {x * a, a};
}

nlohmann::json CtNetConfig::to_json() const {
  return {{"variant", variant}, {"width", width}, {"classes", classes}, {"patch", patch}};
}

CtNetConfig CtNetConfig::from_json(const nlohmann::json& j) {
  CtNetConfig c;
  const char* what = "CtNet config";
  nn::detail::json_check_keys(j, c.to_json(), what);
  nn::detail::json_read(j, what, "variant", c.variant), nn::detail::json_read(j, what, "width", c.width);
  nn::detail::json_read(j, what, "classes", c.classes), nn::detail::json_read(j, what, "patch", c.patch);
  return c;
}

CtNet::CtNet(const CtNetConfig& cfg, Generator& gen) : Module("CtNet"), cfg_(cfg) {
  QS_CHECK(cfg.variant == "base" || cfg.variant == "fusion" || cfg.variant == "fusion+gates",
           "CtNet: unknown variant '{}' (base, fusion, fusion+gates)", cfg.variant);
  QS_CHECK(cfg.width >= 1 && cfg.classes >= 2 && cfg.patch >= 8 && cfg.patch % 4 == 0,
           "CtNet: width >= 1, classes >= 2 and a patch that is a multiple of 4 (>= 8), got {}, {}, {}", cfg.width,
           cfg.classes, cfg.patch);
  const int64_t w = cfg.width;
  stem_ = register_module("stem", std::make_shared<nn::Conv3d>(1, w, 3, same3(), gen));
  stem_bn_ = register_module("stem_bn", std::make_shared<nn::BatchNorm3d>(w));
  s1_ = register_module("s1", std::make_shared<ResBlock3d>(w, w, gen));
  s2_ = register_module("s2", std::make_shared<ResBlock3d>(w, 2 * w, gen));
  s3_ = register_module("s3", std::make_shared<ResBlock3d>(2 * w, 4 * w, gen));
  if (cfg.variant == "base") {
    fc_ = register_module("fc", std::make_shared<nn::Linear>(4 * w, cfg.classes, true, gen));
    return;
  }
  lat2_ = register_module("lat2", std::make_shared<nn::Conv3d>(6 * w, 2 * w, 1, nn::ConvOptions{.bias = false}, gen));
  lat2_bn_ = register_module("lat2_bn", std::make_shared<nn::BatchNorm3d>(2 * w));
  lat1_ = register_module("lat1", std::make_shared<nn::Conv3d>(3 * w, w, 1, nn::ConvOptions{.bias = false}, gen));
  lat1_bn_ = register_module("lat1_bn", std::make_shared<nn::BatchNorm3d>(w));
  if (cfg.variant == "fusion+gates") {
    gate2_ = register_module("gate2", std::make_shared<AttentionGate3d>(2 * w, 4 * w, 2 * w, gen));
    gate1_ = register_module("gate1", std::make_shared<AttentionGate3d>(w, 2 * w, w, gen));
  }
  fc_ = register_module("fc", std::make_shared<nn::Linear>(7 * w, cfg.classes, true, gen));
}

Tensor CtNet::forward(const Tensor& x) { return forward_gates(x, nullptr); }

Tensor CtNet::forward_gates(const Tensor& x, std::vector<Tensor>* gates, Tensor* features) {
  nn::ModuleScope scope(*this);
  const int64_t S = cfg_.patch;
  QS_CHECK(x.dim() == 5 && x.size(1) == 1 && x.size(2) == S && x.size(3) == S && x.size(4) == S,
           "CtNet: expected patches [N, 1, {}, {}, {}], got {}", S, S, S, shape_str(x.shape()));
  if (gates) gates->clear();
  Tensor h1 = s1_->forward(stem_bn_->forward_relu((*stem_)(x)));  // [N, w, S]
  Tensor h2 = s2_->forward(max_pool3d(h1, 2));                      // [N, 2w, S/2]
  Tensor h3 = s3_->forward(max_pool3d(h2, 2));                      // [N, 4w, S/4]
  if (features) *features = h3;
  if (cfg_.variant == "base") return (*fc_)(mean(h3, {2, 3, 4}));
  if (gate2_) {
    auto [g2, a2] = gate2_->gate(h2, h3);
    h2 = g2;
    if (gates) gates->push_back(a2);
  }
  Tensor f2 = lat2_bn_->forward_relu((*lat2_)(cat({h2, interpolate(h3, {S / 2, S / 2, S / 2}, "trilinear")}, 1)));
  if (gate1_) {
    auto [g1, a1] = gate1_->gate(h1, f2);
    h1 = g1;
    if (gates) gates->push_back(a1);
  }
  Tensor f1 = lat1_bn_->forward_relu((*lat1_)(cat({h1, interpolate(f2, {S, S, S}, "trilinear")}, 1)));
  return (*fc_)(cat({mean(f1, {2, 3, 4}), mean(f2, {2, 3, 4}), mean(h3, {2, 3, 4})}, 1));
}

Tensor grad_cam(CtNet& model, const Tensor& x, int64_t cls) {
  nn::EvalScope eval(model);
  Tensor h3;
  const Tensor logits = model.forward_gates(x, nullptr, &h3);
  const Tensor g = grad(sum(logits.narrow(1, cls, 1)), {h3})[0];
  NoGrad ng;
  const int64_t S = model.config().patch;
  Tensor cam = relu(sum(mean(g, {2, 3, 4}, true) * h3, {1}, true));
  cam = interpolate(cam, {S, S, S}, "trilinear");
  const Tensor top = amax(cam, {1, 2, 3, 4}, true);
  return cam / (top + 1e-12);
}

}  // namespace qs::apps
