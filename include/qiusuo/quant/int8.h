// Integer quantisation: quantise / dequantise, INT4 packing, weight preparation and the
// integer linear and convolution ops (PyTorch's torch.quantize_per_tensor/per_channel,
// torch.ao.nn.quantized.functional.linear/conv2d, dynamic and weight-only linears).
//
// Formulas (qparams.h; every kernel uses src/kernels/quant_math.h, the one rounding rule):
//   quantise   q = clamp(round_half_even(x * (1 / scale)) + zp, qmin, qmax)
//   integer op acc = sum (xq - x_zp) * wq            exact s32 (K at most 65536)
//   f32 out    y = float(acc) * (x_scale * w_scale[n]) + bias[n]   (relu: max(y, 0))
//   u8/s8 out  q = quantise(y, out scale, out zp, out range)
// Reference and optimised kernels agree bit for bit for quantize, dequantize, qlinear,
// qconv and dynamic_linear (zero tolerance in `qiusuo check`); woq_linear sums floats in
// another order and agrees within f32 tolerance (its q8 activation codes are bit-exact).
//
// On CPUs without VNNI (AVX2 only) oneDNN's u8 x s8 kernels add pairs of products
// in s16 with saturation (vpmaddubsw): activations of 8 bits give wrong sums, 7 bits
// (u8 [0, 127], or any 128 consecutive values) cannot saturate. The optimised kernels
// therefore split 8-bit activations into a 7-bit low part and a 1-bit high part (two
// integer products, still exact); default_reduce_range() (true without VNNI) asks
// callers for 7-bit activations, which need one product.
#pragma once
#include <optional>
#include <string>
#include <utility>

#include "qiusuo/ops.h"
#include "qiusuo/quant/qparams.h"
#include "qiusuo/tensor.h"

namespace qs::quant {

bool cpu_has_vnni();          // oneDNN's effective ISA has VNNI (AVX512-VNNI, AVX-VNNI, AMX): backend::exact_u8s8()
bool default_reduce_range();  // !cpu_has_vnni(): 7-bit activations are the fast exact path

// x f32|f64 of any shape -> i8 (dtype s8 or s4, s4 values in [-8, 7]) or u8, same shape.
// Per channel: p.axis < x.dim() and p.scale.size() == x.size(axis). f64 values are first
// rounded to f32. Errors: invalid p (QParams::validate), group-wise p (use
// quantize_weight_int4_groups), wrong dtype, axis or scale count.
Tensor quantize(const Tensor& x, const QParams& p);
// q i8|u8 (matching p.dtype; s4 is i8) -> f32: (q - zp) * scale.
Tensor dequantize(const Tensor& q, const QParams& p);

// q i8 [..., K] with values in [-8, 7] -> u8 [..., ceil(K / 2)]: element 2i in the low
// nibble of byte i, 2i + 1 in the high nibble (0 when K is odd). Errors: dtype, range.
Tensor pack_int4(const Tensor& q);
// The inverse: u8 [..., ceil(K / 2)] -> i8 [..., K]. Errors: dtype, K not matching.
Tensor unpack_int4(const Tensor& packed, int64_t numel_last_dim);

// Weights quantised for the integer ops: q (i8, or u8 packed s4) and f32 scales.
struct QuantizedWeight {
  Tensor q;
  Tensor scale;
};
// Symmetric s8 per channel along `axis`, as PyTorch's per_channel_symmetric with the
// brief's rounding: scale[c] = max(max |w_c| / 127, FLT_EPSILON), q in [-127, 127].
// w f32|f64 of rank >= 1 ([N, K] linear, [O, C/groups, k...] convolution).
QuantizedWeight quantize_weight_per_channel(const Tensor& w, int64_t axis = 0);
// Symmetric s4 per group of `group` consecutive inputs: w [N, K] with K % group == 0,
// group even -> q u8 [N, K / 2] (packed), scale f32 [N, K / group] = max(max |w_g| / 7, eps).
QuantizedWeight quantize_weight_int4_groups(const Tensor& w, int64_t group);

// The epilogue of qlinear / qconv: f32 output (out empty) or a requantised per-tensor
// u8/s8 output with parameters `out` (its quant_min/quant_max narrow the range).
struct QOutput {
  bool relu = false;
  std::optional<QParams> out;
};

// xq [..., K] (u8 or i8 as x.dtype; x per tensor), wq i8 [N, K], w_scale f32 [N], bias f32
// [N] or undefined -> [..., N] f32, u8 or i8 (as o.out). Errors: dtypes, shapes, scale
// count, zero points out of range, K > 65536.
Tensor qlinear(const Tensor& xq, const QParams& x, const Tensor& wq, const Tensor& w_scale, const Tensor& bias,
               const QOutput& o = {});

struct QConvOptions {
  SizeArg stride = 1;
  SizeArg padding = 0;
  SizeArg dilation = 1;
  int64_t groups = 1;
  // Chained quantised layers (include/qiusuo/quant/modules.h):
  // x_from: xq (u8) holds codes in these per-tensor u8 parameters (the producing layer's
  // output), not in x's: each code is first requantised to x, exactly as dequantize then
  // quantize would (bit-identical to the f32 hand-over). Unset: xq is already in x.
  std::optional<QParams> x_from;
  // The output [N, O, out...] is channels-last in memory ([N, out..., O], strides of the
  // permuted view), as the next chained layer and the u8 max_pool take it.
  bool channels_last_out = false;
};
// xq [N, C, spatial...] (1 to 3 spatial dims; any strides, channels-last is read in place),
// wq i8 [O, C / groups, k...], w_scale [O], bias [O] or undefined -> [N, O, out...]
// (conv2d's output size). Padding is the real value 0 (the zero point). Errors: as
// qlinear, plus conv2d's geometry errors, x_from not per-tensor u8 or xq not u8 with it.
Tensor qconv(const Tensor& xq, const QParams& x, const Tensor& wq, const Tensor& w_scale, const Tensor& bias,
             const QConvOptions& conv = {}, const QOutput& o = {});

// x f32 [..., K], wq i8 [N, K], w_scale [N], bias [N] or undefined -> f32 [..., N].
// Activations quantised on the fly to u8 asymmetric ([0, 127] with reduce_range, else
// [0, 255]) per row ("token") or for the whole tensor ("tensor"), range from min/max with
// 0 included; then y = float(acc) * (x_scale * w_scale[n]) + bias[n] with acc exact.
Tensor dynamic_linear(const Tensor& x, const Tensor& wq, const Tensor& w_scale, const Tensor& bias,
                      const std::string& granularity = "token", bool reduce_range = default_reduce_range());

// Weight-only: x f32 [..., K]; bits 8: w i8 [N, K], scales [N]; bits 4: w u8 packed [N, K/2],
// scales [N, K / group_size] -> f32 [..., N] = x^ (q * scale)^T + bias.
// activations "f32": x^ = x (the weights are dequantised on the fly). "q8": x^ is x quantised
// per block of 32 along K to codes in [-127, 127] times the block's max |x| / 127, as llama.cpp
// does for Q8_0 / Q4_0 weights; at batch 1 the products are then integer dot products (VNNI),
// faster where the weights stream from memory at a few bytes per cycle.
Tensor woq_linear(const Tensor& x, const Tensor& w, const Tensor& scales, const Tensor& bias, int bits,
                  int64_t group_size = 0, const std::string& activations = "f32");

// Pre-packed weights (oneDNN's blocked layouts, weight column sums) are cached by weight
// storage, shape and a sample of its bytes. After writing into a quantised weight in
// place, call this (load_state_dict of the quantised modules does).
void clear_packed_weights();

}  // namespace qs::quant
