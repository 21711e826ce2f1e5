// Activation parameters as module buffers (include/qiusuo/quant/modules.h) and their JSON.
#pragma once
#include <nlohmann/json.hpp>

#include "qiusuo/nn/module.h"
#include "qiusuo/quant/qparams.h"

namespace qs::quant::detail {

// Registers "<prefix>_scale" f32 [1], "<prefix>_zero_point" i32 [1], "<prefix>_qrange"
// i32 [3] (dtype code 0 s8 / 1 u8, qmin, qmax). p must be per tensor u8 or s8.
void register_act(nn::Module& m, const std::string& prefix, const QParams& p);
// Reads them back (validated); errors name the module and the buffer.
QParams read_act(const nn::Module& m, const std::string& prefix);
bool has_act(const nn::Module& m, const std::string& prefix);
nlohmann::json act_json(const QParams& p);
// The buffer `name` of m (not of its children); error if absent.
Tensor buffer(const nn::Module& m, const std::string& name);
int64_t bytes(const Tensor& t);
// The rule of every quantised module that takes activations: float in. A u8/i8 tensor carries
// no scale, so reading it as codes in some parameters would be a guess; only a QuantizedConv
// marked by quant::chain_quantized_layers takes codes (and checks that itself). Errors name
// the module type, what it found and what to pass instead.
void require_float_input(const nn::Module& m, const Tensor& x);
// Parent module types whose forward() reaches their Linear children through child(name)
// (MultiheadAttention, GeluMLP, SwiGLU, Sequential), so replace_child takes effect even
// though they also keep typed member pointers to them.
bool forwards_through_child(const std::string& parent_type);

}  // namespace qs::quant::detail
