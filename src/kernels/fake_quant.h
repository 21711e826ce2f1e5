// Fake quantisation, shared by its reference and optimised kernels: the parameters of
// one call read once, and the per-element rules (forward through quant_math.h, the
// straight-through / LSQ gradient rules of the backward).
//
//   q_raw = round_half_even(x * (1/s in f32)) + zp        (NaN x: zp)
//   q     = clamp(q_raw, qmin, qmax)                       (= quantize_value)
//   out   = (q - zp) * s
//   inside = qmin <= q_raw <= qmax
//   d out/dx  = inside                                     (straight-through estimator)
//   d out/ds  = inside ? (q - zp) - x / s : q - zp         (LSQ, Esser et al. 2020)
//   d out/dzp = inside ? 0 : -s                            (PyTorch's learnable zero point)
//
// q is always computed in f32 (as every INT8 kernel and PyTorch do). For f32 x the
// dequantisation is f32, float(q - zp) * s; for f64 x it is f64 with the f64 scale, so
// gradcheck in f64 sees a smooth function of s between rounding steps.
#pragma once
#include <cmath>
#include <vector>

#include "kernels/quant_math.h"
#include "qiusuo/tensor.h"

namespace qs::quant {

// round_half_even(x * inv_s) + zp before saturation; NaN maps to zp (as quantize_value).
inline int64_t unsaturated_q(float x, float inv_s, int32_t zp) {
  const float y = x * inv_s;
  if (!(y == y)) return zp;
  const float r = std::nearbyint(std::clamp(y, -2147483520.0f, 2147483520.0f));
  return int64_t(r) + zp;
}

// A floating (learnable) zero point as the forward of PyTorch's
// _fake_quantize_learnable_*: rounded half to even (in f32), clamped to [qmin, qmax].
// (PyTorch's backward uses trunc(zp + 0.5) instead, which differs for negative or
// half-integer zero points; one rule for both directions here.)
inline int32_t round_zero_point(double zp, int32_t qmin, int32_t qmax) {
  return int32_t(std::clamp(std::nearbyint(float(zp)), float(qmin), float(qmax)));
}

// The parameters of one fake_quantize call (inputs x, scale, zero_point; attrs axis,
// qmin, qmax). Channel c of logical element i is (i / inner) % channels.
struct FakeQuantParams {
  std::vector<double> scale;  // as given (f64 dequantisation uses these)
  std::vector<float> scale_f, inv_s;
  std::vector<int32_t> zp;
  int32_t qmin = 0, qmax = 0;
  int64_t channels = 1, inner = 1;

  FakeQuantParams(const Tensor& x, const Tensor& s, const Tensor& z, int64_t axis, int64_t lo, int64_t hi)
      : scale(s.to_vector()), qmin(int32_t(lo)), qmax(int32_t(hi)) {
    std::vector<double> zv = z.to_vector();
    bool float_zp = z.is_floating_point();
    for (size_t k = 0; k < scale.size(); ++k) {
      scale_f.push_back(float(scale[k]));
      inv_s.push_back(inv_scale(scale_f.back()));
      zp.push_back(float_zp ? round_zero_point(zv[k], qmin, qmax) : int32_t(zv[k]));
    }
    if (axis >= 0) {
      channels = x.size(axis);
      for (int64_t d = axis + 1; d < x.dim(); ++d) inner *= x.size(d);
    }
  }
  int64_t channel(int64_t i) const { return channels == 1 ? 0 : (i / inner) % channels; }
};

}  // namespace qs::quant

namespace qs::ops {
struct OpCall;
}
namespace qs::kernels {
// Reference kernels (src/kernels/ref/quant_fake_ref.cpp).
void fake_quantize_ref(ops::OpCall& c);           // (x, scale, zero_point) -> out
void fake_quantize_backward_ref(ops::OpCall& c);  // (dy, x, scale, zero_point) -> dx, dscale, dzero_point (per element)
}  // namespace qs::kernels
