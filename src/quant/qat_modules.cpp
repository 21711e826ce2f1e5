// Conv-bn folding and the prepared layers (include/qiusuo/quant/qat.h).
#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/qat.h"

namespace qs::quant {

namespace {

// [C] -> [C, 1, 1, ...] (rank r) or [1, C, 1, ...]: per-output-channel broadcasting.
Tensor channel_view(const Tensor& v, int64_t rank, int64_t dim) {
  Shape s(size_t(rank), 1);
  s[size_t(dim)] = v.size(0);
  return v.reshape(s);
}

Tensor bias_or_zeros(const Tensor& b, int64_t n, DType dt) { return b.defined() ? b : zeros({n}, dt); }

const char* type_for(PreparedLayer::Kind k, bool relu, int dims) {
  static const char* names[3][2][4] = {
      {{"QatLinear", "", "", ""}, {"QatLinearReLU", "", "", ""}},
      {{"", "QatConv1d", "QatConv2d", "QatConv3d"}, {"", "QatConvReLU1d", "QatConvReLU2d", "QatConvReLU3d"}},
      {{"", "QatConvBn1d", "QatConvBn2d", "QatConvBn3d"}, {"", "QatConvBnReLU1d", "QatConvBnReLU2d", "QatConvBnReLU3d"}}};
  return names[int(k)][relu ? 1 : 0][dims];
}

}  // namespace

std::pair<Tensor, Tensor> fold_conv_bn_weights(const Tensor& w, const Tensor& b, const nn::BatchNorm& bn) {
  NoGrad ng;
  int64_t O = w.size(0);
  QS_CHECK(bn.running_mean().numel() == O, "fold_conv_bn: the batch norm has {} channels but the convolution has {} "
           "output channels", bn.running_mean().numel(), O);
  Tensor gamma = bn.weight().defined() ? bn.weight().detach() : ones({O}, w.dtype());
  Tensor beta = bn.bias().defined() ? bn.bias().detach() : zeros({O}, w.dtype());
  Tensor factor = gamma / sqrt(bn.running_var() + bn.eps());
  Tensor wf = w.detach() * channel_view(factor, w.dim(), 0);
  Tensor bf = (bias_or_zeros(b.defined() ? b.detach() : b, O, w.dtype()) - bn.running_mean()) * factor + beta;
  return {wf.contiguous(), bf.contiguous()};
}

std::shared_ptr<nn::ConvNd> fold_conv_bn(const nn::ConvNd& conv, const nn::BatchNorm& bn) {
  const Tensor& w = conv.weight();
  Shape k(w.shape().begin() + 2, w.shape().end());
  nn::ConvOptions opt = conv.options();
  opt.bias = true;
  Generator scratch(0);  // the initial values are overwritten below
  auto out = std::make_shared<nn::ConvNd>(int(w.dim() - 2), conv.in_channels(), conv.out_channels(), SizeArg(k), opt,
                                          scratch);
  auto [wf, bf] = fold_conv_bn_weights(w, conv.bias(), bn);
  NoGrad ng;
  Tensor(out->weight()).copy_(wf);
  Tensor(out->bias()).copy_(bf);
  return out;
}

// ---- PreparedLayer

PreparedLayer::PreparedLayer(std::string type_name, Kind kind, bool relu, int dims)
    : Module(std::move(type_name)), kind_(kind), relu_(relu), dims_(dims) {}

void PreparedLayer::add_fake_quants(const LayerQConfig& cfg, int64_t out_channels) {
  const FakeQuantConfig &a = cfg.activation, &w = cfg.weight;
  input_fq_ = register_module("input_fake_quant",
                              std::make_shared<FakeQuantize>(a.observer, a.observer_options(), a.learnable_scale));
  weight_fq_ = register_module("weight_fake_quant", std::make_shared<FakeQuantize>(
                                                        w.observer, w.observer_options(0, out_channels), w.learnable_scale));
  output_fq_ = register_module("activation_post_process",
                               std::make_shared<FakeQuantize>(a.observer, a.observer_options(), a.learnable_scale));
}

Tensor PreparedLayer::folded_bias() const { return bias_or_zeros(bias_, weight_.size(0), weight_.dtype()).detach(); }

std::string PreparedLayer::extra_repr() const {
  return fmt::format("weight={}, bias={}", shape_str(weight_.shape()), bias_.defined());
}

Tensor PreparedLayer::conv_forward(const Tensor& x, const Tensor& w, const Tensor& b) const {
  const nn::ConvOptions& o = conv_opt_;
  if (dims_ == 1) return conv1d(x, w, b, o.stride, o.padding, o.dilation, o.groups);
  if (dims_ == 2) return conv2d(x, w, b, o.stride, o.padding, o.dilation, o.groups);
  return conv3d(x, w, b, o.stride, o.padding, o.dilation, o.groups);
}

// ---- QatLinear

QatLinear::QatLinear(const nn::Linear& linear, const LayerQConfig& cfg, bool relu)
    : PreparedLayer(type_for(Kind::linear, relu, 0), Kind::linear, relu, 0) {
  weight_ = register_parameter("weight", linear.weight());
  if (linear.bias().defined()) bias_ = register_parameter("bias", linear.bias());
  add_fake_quants(cfg, linear.out_features());
}

Tensor QatLinear::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  Tensor y = linear((*input_fq_)(x), (*weight_fq_)(weight_), bias_);
  return (*output_fq_)(relu_ ? qs::relu(y) : y);
}

// ---- QatConv

QatConv::QatConv(const nn::ConvNd& conv, const LayerQConfig& cfg, bool relu)
    : PreparedLayer(type_for(Kind::conv, relu, int(conv.weight().dim() - 2)), Kind::conv, relu,
                    int(conv.weight().dim() - 2)) {
  conv_opt_ = conv.options();
  weight_ = register_parameter("weight", conv.weight());
  if (conv.bias().defined()) bias_ = register_parameter("bias", conv.bias());
  add_fake_quants(cfg, conv.out_channels());
}

Tensor QatConv::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  Tensor y = conv_forward((*input_fq_)(x), (*weight_fq_)(weight_), bias_);
  return (*output_fq_)(relu_ ? qs::relu(y) : y);
}

// ---- QatConvBn

QatConvBn::QatConvBn(const nn::ConvNd& conv, std::shared_ptr<nn::BatchNorm> bn, const LayerQConfig& cfg, bool relu)
    : PreparedLayer(type_for(Kind::conv_bn, relu, int(conv.weight().dim() - 2)), Kind::conv_bn, relu,
                    int(conv.weight().dim() - 2)) {
  QS_CHECK(bn->running_mean().numel() == conv.out_channels(), "QatConvBn: the batch norm has {} channels but the "
           "convolution has {} output channels", bn->running_mean().numel(), conv.out_channels());
  conv_opt_ = conv.options();
  weight_ = register_parameter("weight", conv.weight());
  if (conv.bias().defined()) bias_ = register_parameter("bias", conv.bias());
  bn_ = register_module("bn", std::move(bn));
  add_fake_quants(cfg, conv.out_channels());
}

Tensor QatConvBn::bn_scale_factor() const {
  Tensor gamma = bn_->weight().defined() ? bn_->weight() : ones({weight_.size(0)}, weight_.dtype());
  return gamma / sqrt(bn_->running_var() + bn_->eps());
}

// PyTorch's _ConvBnNd._forward: conv with fq(w * factor) and a zero bias, divided back
// by the factor, plus the conv bias, then the batch norm with its own statistics.
Tensor QatConvBn::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  int64_t rank = weight_.dim();
  Tensor factor = bn_scale_factor();
  Tensor w = (*weight_fq_)(weight_ * channel_view(factor, rank, 0));
  Tensor y = conv_forward((*input_fq_)(x), w, Tensor()) / channel_view(factor, rank, 1);
  if (bias_.defined()) y = y + channel_view(bias_, rank, 1);
  bool was = bn_->is_training();
  bn_->train(is_training() && !frozen_);
  try {
    y = (*bn_)(y);
  } catch (...) {
    bn_->train(was);
    throw;
  }
  bn_->train(was);
  return (*output_fq_)(relu_ ? qs::relu(y) : y);
}

Tensor QatConvBn::folded_weight() const { return fold_conv_bn_weights(weight_, bias_, *bn_).first; }
Tensor QatConvBn::folded_bias() const { return fold_conv_bn_weights(weight_, bias_, *bn_).second; }

}  // namespace qs::quant
