// Batch normalisation, f32 on contiguous tensors: one OpenMP task per channel, SIMD
// loops over each (n, c) plane; per-plane partial sums in float, totals in double.
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

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
  bool training = c.attrs.b("training");
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
#pragma omp simd
      for (int64_t i = 0; i < s.P; ++i) q[i] = p[i] * scale + shift;
    }
    mean[ch] = float(m);
    invstd[ch] = float(is);
  }
}

void batch_norm_backward_cpu(ops::OpCall& c) {
  const Tensor& x = c.in[1];
  Planes s(x);
  const float *gy = c.in[0].data_ptr<float>(), *xp = x.data_ptr<float>();
  const float* w = c.in[2].defined() ? c.in[2].data_ptr<float>() : nullptr;
  const float *mean = c.in[3].data_ptr<float>(), *invstd = c.in[4].data_ptr<float>();
  float *dx = c.out[0].data_ptr<float>(), *dw = c.out[1].data_ptr<float>(), *db = c.out[2].data_ptr<float>();
  bool training = c.attrs.b("training");
  double M = double(s.N * s.P);
#pragma omp parallel for schedule(static) if (s.N * s.C * s.P > 4096)
  for (int64_t ch = 0; ch < s.C; ++ch) {
    float m = mean[ch], is = invstd[ch];
    double sg = 0, sgd = 0;  // sum dy, sum dy (x - mean)
    for (int64_t n = 0; n < s.N; ++n) {
      const float *g = gy + (n * s.C + ch) * s.P, *p = xp + (n * s.C + ch) * s.P;
      float a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
      for (int64_t i = 0; i < s.P; ++i) {
        a += g[i];
        b += g[i] * (p[i] - m);
      }
      sg += a;
      sgd += b;
    }
    float wi = float((w ? w[ch] : 1.0f) * double(is));
    // training: dx = w is (dy - sg / M - (x - m) is^2 sgd / M)
    float k1 = training ? float(sg / M) : 0.0f, k2 = training ? float(double(is) * is * sgd / M) : 0.0f;
    for (int64_t n = 0; n < s.N; ++n) {
      const float *g = gy + (n * s.C + ch) * s.P, *p = xp + (n * s.C + ch) * s.P;
      float* q = dx + (n * s.C + ch) * s.P;
#pragma omp simd
      for (int64_t i = 0; i < s.P; ++i) q[i] = wi * (g[i] - k1 - (p[i] - m) * k2);
    }
    dw[ch] = float(sgd * is);
    db[ch] = float(sg);
  }
}

}  // namespace

void register_batch_norm_cpu(std::vector<ops::OpDef>& t) {
  ops::add_kernel(t, ops::OpKind::batch_norm, {"cpu", bn_supports, batch_norm_cpu});
  ops::add_kernel(t, ops::OpKind::batch_norm_backward, {"cpu", bn_supports, batch_norm_backward_cpu});
}

}  // namespace qs::kernels
