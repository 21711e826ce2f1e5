// Parameter initialisation, as torch.nn.init: each function fills `t` in place (through
// its handle, without recording autograd) from `gen` and returns it.
//
// fan_in / fan_out of a weight with dim >= 2: size(1) * receptive and size(0) * receptive,
// receptive = product of the sizes after the first two (1 for Linear [out, in],
// k for Conv1d [out, in, k], kh*kw for Conv2d, kd*kh*kw for Conv3d). A tensor with
// fewer than 2 dims is an error, as in PyTorch.
#pragma once
#include <string>
#include <utility>

#include "qiusuo/tensor.h"

namespace qs::nn::init {

const Tensor& uniform_(const Tensor& t, double a = 0.0, double b = 1.0, Generator& gen = default_generator());
const Tensor& normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator& gen = default_generator());
const Tensor& constant_(const Tensor& t, double value);
const Tensor& zeros_(const Tensor& t);
const Tensor& ones_(const Tensor& t);

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);
// Recommended gain for a nonlinearity: linear/conv*/sigmoid 1, tanh 5/3, relu sqrt(2),
// leaky_relu sqrt(2 / (1 + param^2)), selu 3/4. Unknown names are errors.
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

// Kaiming He: std = gain / sqrt(fan), fan chosen by mode ("fan_in" | "fan_out");
// uniform bound = sqrt(3) * std. a is the negative slope for leaky_relu.
// kaiming_uniform_(w, sqrt(5)) is PyTorch's Linear/Conv default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
const Tensor& kaiming_uniform_(const Tensor& t, double a = 0.0, const std::string& mode = "fan_in",
                               const std::string& nonlinearity = "leaky_relu", Generator& gen = default_generator());
const Tensor& kaiming_normal_(const Tensor& t, double a = 0.0, const std::string& mode = "fan_in",
                              const std::string& nonlinearity = "leaky_relu", Generator& gen = default_generator());
// Glorot: std = gain * sqrt(2 / (fan_in + fan_out)); uniform bound = sqrt(3) * std.
const Tensor& xavier_uniform_(const Tensor& t, double gain = 1.0, Generator& gen = default_generator());
const Tensor& xavier_normal_(const Tensor& t, double gain = 1.0, Generator& gen = default_generator());

}  // namespace qs::nn::init
