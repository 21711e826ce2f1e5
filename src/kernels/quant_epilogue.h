// The attributes of the integer matmul/convolution rows (qlinear, qconv) read once, and
// the per-token parameters of dynamic_linear: shared by the reference and optimised
// kernels so both apply the same f32 operations in the same order (quant_math.h).
#pragma once
#include <cfloat>
#include <string>

#include "kernels/quant_math.h"
#include "qiusuo/attrs.h"
#include "qiusuo/dtype.h"

namespace qs::quant {

struct QEpilogue {
  float x_scale = 1.0f;
  int32_t x_zp = 0;
  bool real_out = true;  // out = "f32"
  bool relu = false;
  float inv_out_scale = 1.0f;
  int32_t out_zp = 0, out_qmin = 0, out_qmax = 0;

  static QEpilogue from(const Attrs& a) {
    QEpilogue e;
    e.x_scale = float(a.f("x_scale"));
    e.x_zp = int32_t(a.i("x_zp", 0));
    const std::string out = a.has("out") ? a.s("out") : "f32";
    e.real_out = out == "f32";
    e.relu = a.b("relu", false);
    if (!e.real_out) {
      e.inv_out_scale = inv_scale(float(a.f("out_scale")));
      e.out_zp = int32_t(a.i("out_zp", 0));
      e.out_qmin = int32_t(a.i("out_qmin", out == "u8" ? 0 : -128));
      e.out_qmax = int32_t(a.i("out_qmax", out == "u8" ? 255 : 127));
    }
    return e;
  }
  // acc_scale of output channel n: x_scale * w_scale[n] in f32.
  float acc_scale(float w_scale) const { return x_scale * w_scale; }
  // Element i of a contiguous output (f32, u8 or i8) from the exact accumulator.
  void store(int32_t acc, float acc_scale, float bias, void* out, DType dt, int64_t i) const {
    if (real_out) {
      static_cast<float*>(out)[i] = dequantize_acc(acc, acc_scale, bias, relu);
      return;
    }
    int32_t q = requantize(acc, acc_scale, bias, relu, inv_out_scale, out_zp, out_qmin, out_qmax);
    if (dt == DType::u8)
      static_cast<uint8_t*>(out)[i] = uint8_t(q);
    else
      static_cast<int8_t*>(out)[i] = int8_t(q);
  }
};

// qconv's optional input requantisation (attrs x_from_scale, x_from_zp, x_qmin, x_qmax; u8
// input): the codes arrive in the parameters (from_scale, from_zp) of the layer that made
// them, and each code q becomes
//   quantize_value(dequantize_value(q, from_scale, from_zp), 1 / x_scale, x_zp, x_qmin, x_qmax)
// i.e. exactly what dequantize followed by quantize computes on the f32 hand-over.
struct QInputRemap {
  bool on = false;
  float from_scale = 1.0f;
  int32_t from_zp = 0, qmin = 0, qmax = 255;
  static QInputRemap from(const Attrs& a) {
    QInputRemap r;
    r.on = a.has("x_from_scale");
    if (!r.on) return r;
    r.from_scale = float(a.f("x_from_scale"));
    r.from_zp = int32_t(a.i("x_from_zp", 0));
    r.qmin = int32_t(a.i("x_qmin", 0));
    r.qmax = int32_t(a.i("x_qmax", 255));
    return r;
  }
  int32_t code(int32_t q, const QEpilogue& e) const {
    if (!on) return q;
    return quantize_value(dequantize_value(q, from_scale, from_zp), inv_scale(e.x_scale), e.x_zp, qmin, qmax);
  }
};

// dynamic_linear's activation parameters for one row (or the whole tensor) with min lo and
// max hi: u8 asymmetric over [min(lo, 0), max(hi, 0)], as PyTorch's dynamic quantisation
// (scale at least FLT_EPSILON, so an all-zero row is exact and never divides by zero).
struct DynamicQParams {
  float scale;
  int32_t zp;
};
inline DynamicQParams dynamic_qparams(float lo, float hi, int32_t qmax) {
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  float scale = (hi - lo) / float(qmax);
  if (!(scale >= FLT_EPSILON)) scale = FLT_EPSILON;
  float z = std::nearbyint(lo / scale);  // in [-qmax, 0]; NaN or inf inputs land on a bound
  if (!(z >= -float(qmax))) z = -float(qmax);
  if (z > 0.0f) z = 0.0f;
  return {scale, int32_t(-z)};
}

}  // namespace qs::quant
