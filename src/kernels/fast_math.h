// erf and exp for f32 written as straight-line arithmetic, so that `omp simd` loops
// (gelu and its gradient) vectorise instead of calling scalar libm erff/expf per element.
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

// exp(x) = 2^n e^r with n = round(x / ln 2), |r| <= ln(2)/2, e^r by a degree-6 polynomial
// (Cephes expf coefficients); relative error below 1e-7 (about 1 ulp). Inputs are clamped to
// [-87.3, 88] (2^n stays a normal number), so very negative x gives ~1e-38 rather than 0.
inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  return er * std::bit_cast<float>(uint32_t(int32_t(n) + 127) << 23);
}
inline double fast_exp(double x) { return std::exp(x); }

}  // namespace qs::kernels
