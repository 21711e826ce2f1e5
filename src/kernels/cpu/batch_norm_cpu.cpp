// Batch normalisation, f32 on contiguous tensors: one OpenMP task per channel, SIMD
// loops over each (n, c) plane; per-plane partial sums in float, totals in double.
// The fused ReLU (attr relu; backward input y) is applied inside the same loops.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_avx2.h"

namespace qs::kernels {

namespace {

const char* bn_supports(const ops::OpCall& c) {
  for (auto& t : c.in)
    if (t.defined() && t.dtype() != DType::f32) return "f32 only";
  for (auto& t : c.in)
    if (t.defined() && !t.is_contiguous()) return "non-contiguous operand";
  return nullptr;
}

struct Planes {
  int64_t N, C, P;
  explicit Planes(const Tensor& x) : N(x.size(0)), C(x.size(1)), P(x.numel() / std::max<int64_t>(1, x.size(0) * x.size(1))) {}
};

// sum_i (p[i] - m) and sum_i (p[i] - m)^2 over channel c.
void channel_moments(const float* x, const Planes& s, int64_t c, float m, double& s1, double& s2) {
  s1 = s2 = 0;
  for (int64_t n = 0; n < s.N; ++n) {
    const float* p = x + (n * s.C + c) * s.P;
    float a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < s.P; ++i) {
      float d = p[i] - m;
      a += d;
      b += d * d;
    }
    s1 += a;
    s2 += b;
  }
}

void batch_norm_cpu(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  Planes s(x);
  const float* xp = x.data_ptr<float>();
  const float* w = c.in[1].defined() ? c.in[1].data_ptr<float>() : nullptr;
  const float* b = c.in[2].defined() ? c.in[2].data_ptr<float>() : nullptr;
  float *y = c.out[0].data_ptr<float>(), *mean = c.out[1].data_ptr<float>(), *invstd = c.out[2].data_ptr<float>();
  bool training = c.attrs.b("training"), relu = c.attrs.b("relu", false);
  double eps = c.attrs.f("eps"), M = double(s.N * s.P);
#pragma omp parallel for schedule(static) if (s.N * s.C * s.P > 4096)
  for (int64_t ch = 0; ch < s.C; ++ch) {
    double m, v;
    if (training) {
      // Shifted by the first value, then corrected: stable for large means.
      float shift = xp[ch * s.P];
      double s1, s2;
      channel_moments(xp, s, ch, shift, s1, s2);
      m = shift + s1 / M;
      v = std::max(0.0, s2 / M - (s1 / M) * (s1 / M));
    } else {
      m = c.in[3].data_ptr<float>()[ch];
      v = c.in[4].data_ptr<float>()[ch];
    }
    double is = 1.0 / std::sqrt(v + eps);
    float scale = float(is * (w ? w[ch] : 1.0f)), shift = float((b ? b[ch] : 0.0f) - m * is * (w ? w[ch] : 1.0f));
    for (int64_t n = 0; n < s.N; ++n) {
      const float* p = xp + (n * s.C + ch) * s.P;
      float* q = y + (n * s.C + ch) * s.P;
      if (relu) {
#pragma omp simd
        for (int64_t i = 0; i < s.P; ++i) q[i] = std::max(p[i] * scale + shift, 0.0f);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < s.P; ++i) q[i] = p[i] * scale + shift;
      }
    }
    mean[ch] = float(m);
    invstd[ch] = float(is);
  }
}

// The fused ReLU's gradient: dy where y > 0, else exactly 0 (even for a NaN dy), as a
// bitwise mask (the ternary form does not vectorise).
inline __m256 relu_masked(const float* g, const float* y) {
  return _mm256_and_ps(_mm256_loadu_ps(g), _mm256_cmp_ps(_mm256_loadu_ps(y), _mm256_setzero_ps(), _CMP_GT_OQ));
}

// a = sum g', b = sum g' (x - m) over one plane, g' the masked gradient.
void masked_moments(const float* g, const float* x, const float* y, int64_t P, float m, float& a, float& b) {
  __m256 va = _mm256_setzero_ps(), vb = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
  int64_t i = 0;
  for (; i + 8 <= P; i += 8) {
    __m256 gi = relu_masked(g + i, y + i);
    va = _mm256_add_ps(va, gi);
    vb = _mm256_fmadd_ps(gi, _mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vb);
  }
  a = hsum(va);
  b = hsum(vb);
  for (; i < P; ++i) {
    float gi = y[i] > 0.0f ? g[i] : 0.0f;
    a += gi;
    b += gi * (x[i] - m);
  }
}

// dx = wi (g' - k1 - (x - m) k2) over one plane.
void masked_dx(const float* g, const float* x, const float* y, int64_t P, float m, float wi, float k1, float k2,
               float* dx) {
  const __m256 vm = _mm256_set1_ps(m), vw = _mm256_set1_ps(wi), v1 = _mm256_set1_ps(k1), v2 = _mm256_set1_ps(k2);
  int64_t i = 0;
  for (; i + 8 <= P; i += 8) {
    __m256 t = _mm256_fnmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), v2, _mm256_sub_ps(relu_masked(g + i, y + i), v1));
    _mm256_storeu_ps(dx + i, _mm256_mul_ps(vw, t));
  }
  for (; i < P; ++i) dx[i] = wi * ((y[i] > 0.0f ? g[i] : 0.0f) - k1 - (x[i] - m) * k2);
}

// sum dy and sum dy (x - m) over channel ch, dy masked by y > 0 when y is given.
void grad_moments(const float* gy, const float* xp, const float* y, const Planes& s, int64_t ch, float m, double& sg,
                  double& sgd) {
  sg = sgd = 0;
  for (int64_t n = 0; n < s.N; ++n) {
    const int64_t o = (n * s.C + ch) * s.P;
    const float *g = gy + o, *p = xp + o;
    float a = 0, b = 0;
    if (y) {
      masked_moments(g, p, y + o, s.P, m, a, b);
    } else {
#pragma omp simd reduction(+ : a, b)
      for (int64_t i = 0; i < s.P; ++i) {
        a += g[i];
        b += g[i] * (p[i] - m);
      }
    }
    sg += a;
    sgd += b;
  }
}

void batch_norm_backward_cpu(ops::OpCall& c) {
  const Tensor& x = c.in[1];
  Planes s(x);
  const float *gy = c.in[0].data_ptr<float>(), *xp = x.data_ptr<float>();
  const float* w = c.in[2].defined() ? c.in[2].data_ptr<float>() : nullptr;
  const float *mean = c.in[3].data_ptr<float>(), *invstd = c.in[4].data_ptr<float>();
  const float* y = c.in[5].defined() ? c.in[5].data_ptr<float>() : nullptr;
  float *dx = c.out[0].data_ptr<float>(), *dw = c.out[1].data_ptr<float>(), *db = c.out[2].data_ptr<float>();
  bool training = c.attrs.b("training");
  double M = double(s.N * s.P);
#pragma omp parallel for schedule(static) if (s.N * s.C * s.P > 4096)
  for (int64_t ch = 0; ch < s.C; ++ch) {
    float m = mean[ch], is = invstd[ch];
    double sg, sgd;  // sum dy, sum dy (x - mean)
    grad_moments(gy, xp, y, s, ch, m, sg, sgd);
    float wi = float((w ? w[ch] : 1.0f) * double(is));
    // training: dx = w is (dy - sg / M - (x - m) is^2 sgd / M)
    float k1 = training ? float(sg / M) : 0.0f, k2 = training ? float(double(is) * is * sgd / M) : 0.0f;
    for (int64_t n = 0; n < s.N; ++n) {
      const int64_t o = (n * s.C + ch) * s.P;
      const float *g = gy + o, *p = xp + o;
      float* q = dx + o;
      if (y) {
        masked_dx(g, p, y + o, s.P, m, wi, k1, k2, q);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < s.P; ++i) q[i] = wi * (g[i] - k1 - (p[i] - m) * k2);
      }
    }
    dw[ch] = float(sgd * is);
    db[ch] = float(sg);
  }
}

}  // namespace

void register_batch_norm_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::batch_norm, {"cpu", bn_supports, batch_norm_cpu});
  ops::add_kernel(t, ops::OpKind::batch_norm_backward, {"cpu", bn_supports, batch_norm_backward_cpu});
}

}  // namespace qs::kernels
