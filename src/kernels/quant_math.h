// The one rounding rule of every INT8/INT4 kernel, reference and optimised alike, so that
// they agree bit for bit (include/qiusuo/quant/qparams.h has the formulas).
//
// Everything is f32 arithmetic in a fixed order with no fused multiply-add: compile the
// files that use these helpers normally (the project does not pass -ffast-math) and do
// not contract `a * b + c` into an FMA by hand in a vectorised copy. A vectorised kernel
// must use _mm256_cvtps_epi32 (round half to even under the default MXCSR), which equals
// std::nearbyint here.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace qs::quant {

// 1/scale in f32: computed once per tensor or channel.
inline float inv_scale(float scale) { return 1.0f / scale; }

// round_half_even(x * inv_s) + zp, saturated to [qmin, qmax]. NaN maps to zp.
inline int32_t quantize_value(float x, float inv_s, int32_t zp, int32_t qmin, int32_t qmax) {
  const float y = x * inv_s;
  if (!(y == y)) return std::clamp(zp, qmin, qmax);
  const float r = std::nearbyint(std::clamp(y, -2147483520.0f, 2147483520.0f));
  const int64_t q = int64_t(r) + zp;
  return int32_t(std::clamp<int64_t>(q, qmin, qmax));
}

inline float dequantize_value(int32_t q, float scale, int32_t zp) { return float(q - zp) * scale; }

// The requantisation epilogue of an integer matmul/convolution:
//   real = float(acc) * acc_scale + bias   (acc_scale = input scale * weight scale of the channel)
//   relu: real = max(real, 0)
//   q    = quantize_value(real, inv_out_scale, out_zp, qmin, qmax)
inline int32_t requantize(int32_t acc, float acc_scale, float bias, bool relu, float inv_out_scale, int32_t out_zp,
                          int32_t qmin, int32_t qmax) {
  float real = float(acc) * acc_scale;
  real = real + bias;
  if (relu) real = std::max(real, 0.0f);
  return quantize_value(real, inv_out_scale, out_zp, qmin, qmax);
}

// The same epilogue for a real (f32) output: dynamic quantisation and weight-only kernels.
inline float dequantize_acc(int32_t acc, float acc_scale, float bias, bool relu) {
  float real = float(acc) * acc_scale;
  real = real + bias;
  return relu ? std::max(real, 0.0f) : real;
}

// Weight-only linears with q8 activations (woq_linear, activations "q8"; llama.cpp's Q8_0
// activation blocks): x is cut along K into blocks of kActBlock (the last one shorter when K is
// not a multiple), and each block is stored as codes q in [-127, 127] and one scale
//   d = max |x| / 127,   q = quantize_value(x, 1 / d, 0, -127, 127)   (all codes 0 when d is 0),
// so the block stands for q * d. A NaN or infinite x makes d NaN, so that every output the block
// feeds is NaN (as with f32 activations) instead of a finite value that hides the bad input.
constexpr int64_t kActBlock = 32;
inline float act_block_scale(const float* x, int64_t n) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    finite = finite && a <= 3.40282347e38f;  // false for NaN and inf
    amax = std::max(amax, a);
  }
  return finite ? amax / 127.0f : std::nanf("");
}
// Codes of one block given its scale d; returns their sum.
inline int32_t quantize_act_block(const float* x, int64_t n, float d, int8_t* q) {
  const float inv = d > 0.0f ? inv_scale(d) : 0.0f;  // 0 for d = 0 and for NaN
  int32_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += q[i] = int8_t(quantize_value(x[i], inv, 0, -127, 127));
  return sum;
}

}  // namespace qs::quant
