// erf and exp for f32 written as straight-line arithmetic, so that `omp simd` loops (gelu,
// softmax, attention) vectorise instead of calling scalar libm erff/expf per element.
// The f64 overloads are std::erf / std::exp: the reference kernels and gradcheck keep
// libm's precision.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace qs::kernels {

// erf(x) ~ x P(x^2) / Q(x^2) on [-4, 4] (the rational approximation Eigen and XLA use);
// beyond 4 erf rounds to +-1 in f32. Measured against libm on a 1/8192 grid of [-6, 6]:
// at most 5.4 f32 ulp (3.2e-7 absolute, near |x| = 3.9), about 1 ulp near 0
// (P(0)/Q(0) = 2/sqrt(pi)); gelu's absolute error stays below 1e-6.
inline float fast_erf(float x) {
  x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return x * p / q;
}
inline double fast_erf(double x) { return std::erf(x); }

// exp(x) = 2^n e^r with n = round(x / ln 2), |r| <= ln(2)/2, and e^r = 1 + r + r^2 P(r), P of
// degree 5 (Cephes expf), 2^n written into the exponent bits. The one f32 exp of the fast
// kernels (gelu, softmax, log_softmax's gradient, fused attention). Measured against libm on a
// 1/4096 grid of [-87, 88]: at most 1.01 ulp (relative 8.5e-8). Edges:
//   x < -87.3 (and -inf): exactly 0, so masked scores (-inf) get exactly zero weight (the
//                         true value there is below 1.22e-38, about the smallest normal f32)
//   x > 88 (and +inf):    exp(88) ~ 1.65e38, finite (callers subtract a maximum first, so
//                         this is reached only by inputs that are already broken)
//   NaN:                  NaN
// No float-to-int conversion: n is read from the bits of x / ln 2 + 1.5 * 2^23, so NaN and
// infinities flow through defined arithmetic to the final select.
inline float fast_exp(float x) {
  const float xc = x > 88.0f ? 88.0f : x;              // NaN compares false and passes through
  constexpr float kRound = 12582912.0f;                // 1.5 * 2^23: adding it rounds to an integer
  const float t = xc * 1.44269504088896341f + kRound;  // kRound + n, n in the low mantissa bits
  const float n = t - kRound;
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 in two parts (Cody-Waite)
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const uint32_t two_n = (std::bit_cast<uint32_t>(t) - std::bit_cast<uint32_t>(kRound) + 127u) << 23;
  const float y = (p * r * r + r + 1.0f) * std::bit_cast<float>(two_n);
  return x < -87.3f ? 0.0f : y;
}
inline double fast_exp(double x) { return std::exp(x); }

}  // namespace qs::kernels
