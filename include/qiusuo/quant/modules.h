// Quantised layers (torch.ao.nn.quantized.Linear / Conv2d / Conv3d, dynamic.Linear, and a
// weight-only linear for LM generation), built from their float twins.
//
// Contract
// - Weights: symmetric s8 per output channel (quantize_weight_per_channel), or s4 in groups
//   (WeightOnlyLinear with bits 4). The float layer is read, not kept.
// - QuantizedLinear / QuantizedConv take the activation parameters (per tensor u8 or s8)
//   of their input and, optionally, their output. forward(f32) quantises the input, runs
//   the integer op and returns f32 (dequantising a quantised output).
// - One rule for every quantised module that takes activations (QuantizedLinear,
//   QuantizedConv, DynamicQuantizedLinear, WeightOnlyLinear): float input. A u8/i8 tensor
//   carries no scale, so it is refused with an error naming the module type and the remedy
//   (pass f32; dequantize codes you hold), unless the module is a QuantizedConv marked as
//   chained below. QuantizedLinear has no chain mark: in the models here it follows f32 ops
//   that do not commute with quantisation (the CNN's average pool, the LM's GELU, attention
//   and norms), and between two QuantizedLinears the f32 hand-over is already exact
//   (quantize(dequantize(q)) == q in the same parameters).
// - QuantizedConv chains only where quant::chain_quantized_layers (convert.h) marked it:
//   * chained output (set_chained_output): forward returns the u8 codes of its output
//     parameters (u8 per tensor) as a tensor of logical shape [N, O, out...] with
//     channels-last strides (memory [N, out..., O], PyTorch's channels_last), instead of
//     dequantising them;
//   * chained input (set_chained_input(producer)): forward also takes a u8 tensor, read as
//     codes in the producer's output parameters (read at each call, so a later
//     load_state_dict is seen), in any layout (channels-last is read in place, without a
//     transpose). When those differ from this layer's input parameters the integer
//     convolution requantises each code exactly as dequantize + quantize would
//     (QConvOptions::x_from), so the chain is bit-identical to the f32 hand-over.
//   * A u8/i8 input to a layer not marked as chained is an error naming the remedy, as is
//     a chained input whose producer is gone (replaced in the model). f32 inputs are always
//     accepted (f64 too, except by DynamicQuantizedLinear and WeightOnlyLinear: f32 only).
//     The marks are run-time wiring, not state: not saved, not in state_dict().
// - Buffers, so state_dict() and io::save_safetensors round-trip them exactly: "weight"
//   (i8, or u8 packed s4), "weight_scale" f32, "bias" f32 (if any), and per activation
//   "input_scale" f32 [1], "input_zero_point" i32 [1], "input_qrange" i32 [3] = (dtype
//   code 0 s8 / 1 u8, qmin, qmax), likewise "output_*". qparams_json() (also extra_repr)
//   describes all of it for a file's metadata. Buffers are read at each forward: after
//   load_state_dict, invalid parameters are errors naming the buffer.
// - weight_bytes(): bytes of the quantised weight and its scales (not the bias), to set
//   against 4 bytes per weight in f32.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/quant/int8.h"

namespace qs::quant {

class QuantizedLinear : public nn::Module {
 public:
  QuantizedLinear(const nn::Linear& lin, const QParams& input, std::optional<QParams> output = std::nullopt,
                  bool relu = false);
  // An empty shell of the same structure, for load_state_dict.
  QuantizedLinear(int64_t in_features, int64_t out_features, bool bias, const QParams& input,
                  std::optional<QParams> output = std::nullopt, bool relu = false);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override { return qparams_json(); }
  std::string qparams_json() const;
  int64_t weight_bytes() const;
  QParams input_qparams() const;
  std::optional<QParams> output_qparams() const;

 private:
  bool relu_;
  Tensor weight_, scale_, bias_;
};

class QuantizedConv : public nn::Module {
 public:
  QuantizedConv(const nn::ConvNd& conv, const QParams& input, std::optional<QParams> output = std::nullopt,
                bool relu = false);
  // Shell: weight shape [O, C / groups, k...] gives the rank (1 to 3 spatial dims).
  QuantizedConv(const Shape& weight_shape, const nn::ConvOptions& opt, const QParams& input,
                std::optional<QParams> output = std::nullopt, bool relu = false);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override { return qparams_json(); }
  std::string qparams_json() const;
  int64_t weight_bytes() const;
  QParams input_qparams() const;
  std::optional<QParams> output_qparams() const;

  // Chaining (see the contract above). Errors: a chained output without u8 per-tensor
  // output parameters; a chained input when this layer's input parameters are not u8, or
  // the producer's output is not chained-capable. nullptr / false clear the marks.
  void set_chained_input(const std::shared_ptr<const QuantizedConv>& producer);
  void set_chained_output(bool on);
  bool chained_input() const { return chained_in_; }
  bool chained_output() const { return chain_out_; }

 private:
  nn::ConvOptions opt_;
  bool relu_;
  Tensor weight_, scale_, bias_;
  bool chained_in_ = false, chain_out_ = false;
  std::weak_ptr<const QuantizedConv> producer_;
};

// y = dynamic_linear(x, ...): f32 in and out, activations quantised per token (or tensor).
class DynamicQuantizedLinear : public nn::Module {
 public:
  explicit DynamicQuantizedLinear(const nn::Linear& lin, const std::string& granularity = "token",
                                  bool reduce_range = default_reduce_range());
  DynamicQuantizedLinear(int64_t in_features, int64_t out_features, bool bias, const std::string& granularity = "token",
                         bool reduce_range = default_reduce_range());
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override { return qparams_json(); }
  std::string qparams_json() const;
  int64_t weight_bytes() const;

 private:
  std::string granularity_;
  bool reduce_range_;
  Tensor weight_, scale_, bias_;
};

// y = woq_linear(x, ...): bits 8 (per channel) or 4 (groups of group_size, 32 or 128 typical);
// activations "q8" (quantised per block of 32 at run time: integer products) or "f32".
class WeightOnlyLinear : public nn::Module {
 public:
  WeightOnlyLinear(const nn::Linear& lin, int bits, int64_t group_size = 128, const std::string& activations = "q8");
  WeightOnlyLinear(int64_t in_features, int64_t out_features, bool bias, int bits, int64_t group_size = 128,
                   const std::string& activations = "q8");
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override { return qparams_json(); }
  std::string qparams_json() const;
  int64_t weight_bytes() const;

 private:
  int bits_;
  int64_t group_;
  std::string activations_;
  Tensor weight_, scale_, bias_;
};

// f32 -> u8/i8 codes with fixed parameters, and codes -> f32 (to store or inspect
// activations as integers). The quantised layers above do not take these codes: give them
// DeQuantize's f32.
class Quantize : public nn::Module {
 public:
  explicit Quantize(const QParams& p);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  Tensor scale_, zp_, range_;
};
class DeQuantize : public nn::Module {
 public:
  explicit DeQuantize(const QParams& p);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  Tensor scale_, zp_, range_;
};

}  // namespace qs::quant
