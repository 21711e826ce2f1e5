// Dynamic and weight-only quantised linears for Transformers and LM generation
// (include/qiusuo/quant/modules.h).
#include <nlohmann/json.hpp>

#include "qiusuo/autograd.h"
#include "qiusuo/quant/modules.h"
#include "quant/module_util.h"

namespace qs::quant {

DynamicQuantizedLinear::DynamicQuantizedLinear(int64_t in_features, int64_t out_features, bool bias,
                                               const std::string& granularity, bool reduce_range)
    : Module("DynamicQuantizedLinear"), granularity_(granularity), reduce_range_(reduce_range) {
  QS_CHECK(granularity == "token" || granularity == "tensor",
           "DynamicQuantizedLinear: granularity '{}' (expected token or tensor)", granularity);
  weight_ = register_buffer("weight", zeros({out_features, in_features}, DType::i8));
  scale_ = register_buffer("weight_scale", ones({out_features}));
  if (bias) bias_ = register_buffer("bias", zeros({out_features}));
}

DynamicQuantizedLinear::DynamicQuantizedLinear(const nn::Linear& lin, const std::string& granularity, bool reduce_range)
    : DynamicQuantizedLinear(lin.in_features(), lin.out_features(), lin.bias().defined(), granularity, reduce_range) {
  NoGrad ng;
  auto [q, s] = quantize_weight_per_channel(lin.weight().detach());
  weight_.copy_(q);
  scale_.copy_(s);
  if (bias_.defined()) bias_.copy_(lin.bias().detach());
}

Tensor DynamicQuantizedLinear::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  detail::require_float_input(*this, x);
  NoGrad ng;
  return dynamic_linear(x, weight_, scale_, bias_, granularity_, reduce_range_);
}

std::string DynamicQuantizedLinear::qparams_json() const {
  nlohmann::json j = {{"type", "DynamicQuantizedLinear"}, {"in_features", weight_.size(1)},
                      {"out_features", weight_.size(0)}, {"granularity", granularity_},
                      {"reduce_range", reduce_range_}, {"input", {{"dtype", "u8"}, {"scheme", "dynamic_asymmetric"}}},
                      {"weight", {{"dtype", "s8"}, {"scheme", "per_channel_symmetric"}, {"axis", 0}}}};
  return j.dump();
}

int64_t DynamicQuantizedLinear::weight_bytes() const { return detail::bytes(weight_) + detail::bytes(scale_); }

WeightOnlyLinear::WeightOnlyLinear(int64_t in_features, int64_t out_features, bool bias, int bits, int64_t group_size,
                                   const std::string& activations)
    : Module("WeightOnlyLinear"), bits_(bits), group_(bits == 4 ? group_size : 0), activations_(activations) {
  QS_CHECK(bits == 8 || bits == 4, "WeightOnlyLinear: bits = {} (expected 8 or 4)", bits);
  QS_CHECK(activations == "q8" || activations == "f32", "WeightOnlyLinear: activations '{}' (expected q8 or f32)",
           activations);
  if (bits == 4)
    QS_CHECK(group_size > 0 && group_size % 2 == 0 && in_features % group_size == 0,
             "WeightOnlyLinear: group_size {} must be even and divide in_features = {}", group_size, in_features);
  if (bits == 8) {
    weight_ = register_buffer("weight", zeros({out_features, in_features}, DType::i8));
    scale_ = register_buffer("weight_scale", ones({out_features}));
  } else {
    weight_ = register_buffer("weight", zeros({out_features, in_features / 2}, DType::u8));
    scale_ = register_buffer("weight_scale", ones({out_features, in_features / group_size}));
  }
  if (bias) bias_ = register_buffer("bias", zeros({out_features}));
}

WeightOnlyLinear::WeightOnlyLinear(const nn::Linear& lin, int bits, int64_t group_size, const std::string& activations)
    : WeightOnlyLinear(lin.in_features(), lin.out_features(), lin.bias().defined(), bits, group_size, activations) {
  NoGrad ng;
  auto [q, s] = bits == 8 ? quantize_weight_per_channel(lin.weight().detach())
                          : quantize_weight_int4_groups(lin.weight().detach(), group_size);
  weight_.copy_(q);
  scale_.copy_(s);
  if (bias_.defined()) bias_.copy_(lin.bias().detach());
}

Tensor WeightOnlyLinear::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  detail::require_float_input(*this, x);
  NoGrad ng;
  return woq_linear(x, weight_, scale_, bias_, bits_, group_, activations_);
}

std::string WeightOnlyLinear::qparams_json() const {
  int64_t K = bits_ == 8 ? weight_.size(1) : weight_.size(1) * 2;
  nlohmann::json j = {{"type", "WeightOnlyLinear"}, {"in_features", K}, {"out_features", weight_.size(0)},
                      {"bits", bits_}, {"group_size", group_}, {"activations", activations_},
                      {"weight", {{"dtype", bits_ == 8 ? "s8" : "s4"},
                                  {"scheme", bits_ == 8 ? "per_channel_symmetric" : "per_group_symmetric"},
                                  {"packing", bits_ == 8 ? "none" : "two per byte, element 2i in the low nibble"}}}};
  return j.dump();
}

int64_t WeightOnlyLinear::weight_bytes() const { return detail::bytes(weight_) + detail::bytes(scale_); }

}  // namespace qs::quant
