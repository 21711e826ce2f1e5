// Fake quantisation: quantise then dequantise in floating point, so training sees the
// rounding and clipping of INT8 inference (torch.fake_quantize_per_tensor_affine /
// per_channel_affine, and _fake_quantize_learnable_* for LSQ).
#pragma once
#include <cstdint>

#include "qiusuo/quant/qparams.h"
#include "qiusuo/tensor.h"

namespace qs::quant {

// out = (clamp(round_half_even(x * (1/s)) + zp, qmin, qmax) - zp) * s, with 1/s in f32 and
// q computed in f32 exactly as every INT8 kernel does (src/kernels/quant_math.h).
//
// x:          f32 or f64, any shape and strides; out has x's shape and dtype (contiguous).
// scale:      floating [C] (axis >= 0, C = x.size(axis)) or [1] (axis = -1: per tensor);
//             every value finite and > 0 (else qs::Error naming the index).
// zero_point: i32 [C] or [1] in [qmin, qmax]; or floating (a learnable zero point), used
//             as PyTorch's forward does: round half to even, clamped to [qmin, qmax].
// qmin < qmax: the integer range (e.g. -128..127, 0..255, 0..127 with reduce_range).
//
// Gradients (the op records them when an input requires grad):
//   x:     straight-through: dy where qmin <= round(x/s) + zp <= qmax, 0 outside.
//   scale: LSQ (Esser et al. 2020): dy * ((q - zp) - x/s) inside, dy * (qmin - zp) or
//          dy * (qmax - zp) outside, summed per channel. The LSQ gradient-scale factor
//          1/sqrt(numel_per_scale * qmax) is NOT applied here: FakeQuantize applies it
//          (a gradient hook on the scale) when its scale is learnable.
//   zero_point (floating): 0 inside, -dy * s outside (PyTorch's learnable zero point).
// For f64 x the dequantisation (q - zp) * s is done in f64 with the f64 scale.
Tensor fake_quantize(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis, int64_t qmin,
                     int64_t qmax);

// The same with the parameters of a QParams (validated; per tensor or per channel, not
// group-wise): fake_quantize(x, qp.scale, qp.zero_point, qp.axis, qp.qmin(), qp.qmax()).
Tensor fake_quantize(const Tensor& x, const QParams& qp);

}  // namespace qs::quant
