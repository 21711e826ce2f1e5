// Parameter initialisation (torch.nn.init formulas).
#include "qiusuo/nn/init.h"

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::nn::init {

namespace {
const Tensor& fill_from(const Tensor& t, const Tensor& values) {
  NoGrad ng;
  Tensor(t).copy_(values);
  return t;
}
}  // namespace

const Tensor& uniform_(const Tensor& t, double a, double b, Generator& gen) {
  return fill_from(t, uniform(t.shape(), a, b, t.dtype(), &gen));
}
const Tensor& normal_(const Tensor& t, double mean, double std, Generator& gen) {
  NoGrad ng;
  return fill_from(t, randn(t.shape(), DType::f64, &gen) * std + mean);
}
const Tensor& constant_(const Tensor& t, double value) {
  NoGrad ng;
  Tensor(t).fill_(value);
  return t;
}
const Tensor& zeros_(const Tensor& t) { return constant_(t, 0.0); }
const Tensor& ones_(const Tensor& t) { return constant_(t, 1.0); }

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  QS_CHECK(t.dim() >= 2, "calculate_fan_in_and_fan_out: needs a tensor with at least 2 dims, got shape {}",
           shape_str(t.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "sigmoid" || nl.rfind("conv", 0) == 0) return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 0.75;
  QS_FAIL("calculate_gain: unknown nonlinearity '{}' (expected linear, conv1d/2d/3d, sigmoid, tanh, relu, leaky_relu, selu)", nl);
}

namespace {
double kaiming_std(const Tensor& t, double a, const std::string& mode, const std::string& nonlinearity) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  QS_CHECK(mode == "fan_in" || mode == "fan_out", "kaiming init: mode must be 'fan_in' or 'fan_out', got '{}'", mode);
  int64_t fan = mode == "fan_in" ? fan_in : fan_out;
  QS_CHECK(fan > 0, "kaiming init: {} is 0 for shape {}", mode, shape_str(t.shape()));
  return calculate_gain(nonlinearity, a) / std::sqrt(double(fan));
}
double xavier_std(const Tensor& t, double gain) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  QS_CHECK(fan_in + fan_out > 0, "xavier init: fan_in + fan_out is 0 for shape {}", shape_str(t.shape()));
  return gain * std::sqrt(2.0 / double(fan_in + fan_out));
}
}  // namespace

const Tensor& kaiming_uniform_(const Tensor& t, double a, const std::string& mode, const std::string& nonlinearity,
                               Generator& gen) {
  double bound = std::sqrt(3.0) * kaiming_std(t, a, mode, nonlinearity);
  return uniform_(t, -bound, bound, gen);
}
const Tensor& kaiming_normal_(const Tensor& t, double a, const std::string& mode, const std::string& nonlinearity,
                              Generator& gen) {
  return normal_(t, 0.0, kaiming_std(t, a, mode, nonlinearity), gen);
}
const Tensor& xavier_uniform_(const Tensor& t, double gain, Generator& gen) {
  double bound = std::sqrt(3.0) * xavier_std(t, gain);
  return uniform_(t, -bound, bound, gen);
}
const Tensor& xavier_normal_(const Tensor& t, double gain, Generator& gen) { return normal_(t, 0.0, xavier_std(t, gain), gen); }

}  // namespace qs::nn::init
