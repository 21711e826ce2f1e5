// Optimised fake quantisation: contiguous x split into runs that share one (scale, zero
// point), AVX2 over each run for f32 and OpenMP over runs. Bit-exact with the reference:
// the same f32 product x * (1/s), round half to even by _mm256_round_ps (nearbyint under
// the default MXCSR), and integer-valued f32 arithmetic that is exact for |q| < 2^24
// (the op's meta bounds qmin/qmax to that). Compiled without FMA contraction (quant*.cpp).
#include <immintrin.h>
#include <omp.h>

#include <type_traits>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/fake_quant.h"

namespace qs::kernels {

namespace {

using quant::FakeQuantParams;
constexpr int64_t kPiece = 16384;  // elements per parallel work item

// Calls fn(start, length, channel) over pieces of the contiguous tensor, in parallel.
template <class Fn> void for_runs(const FakeQuantParams& p, int64_t numel, Fn fn) {
  int64_t inner = p.channels == 1 ? numel : p.inner;
  if (numel == 0 || inner == 0) return;
  int64_t rows = numel / inner, chunks = (inner + kPiece - 1) / kPiece;
#pragma omp parallel for if (numel > 2 * kPiece)
  for (int64_t w = 0; w < rows * chunks; ++w) {
    int64_t r = w / chunks, c0 = (w % chunks) * kPiece;
    fn(r * inner + c0, std::min(kPiece, inner - c0), p.channels == 1 ? 0 : r % p.channels);
  }
}

void fq_run_f32(const float* x, float* y, int64_t n, float s, float inv, int32_t zp, int32_t qmin, int32_t qmax) {
  const __m256 vinv = _mm256_set1_ps(inv), vs = _mm256_set1_ps(s), vzp = _mm256_set1_ps(float(zp));
  const __m256 vlo = _mm256_set1_ps(float(qmin)), vhi = _mm256_set1_ps(float(qmax));
  const __m256 big = _mm256_set1_ps(2147483520.0f), nbig = _mm256_set1_ps(-2147483520.0f);
  const __m256 nan_q = _mm256_set1_ps(float(std::clamp(zp, qmin, qmax)));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    __m256 is_nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    v = _mm256_min_ps(_mm256_max_ps(v, nbig), big);
    __m256 q = _mm256_add_ps(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vzp);
    q = _mm256_blendv_ps(_mm256_min_ps(_mm256_max_ps(q, vlo), vhi), nan_q, is_nan);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(q, vzp), vs));
  }
  for (; i < n; ++i) y[i] = quant::dequantize_value(quant::quantize_value(x[i], inv, zp, qmin, qmax), s, zp);
}

void fake_quantize_cpu(ops::OpCall& c) {
  const Tensor &x = c.in[0], &out = c.out[0];
  FakeQuantParams p(x, c.in[1], c.in[2], c.attrs.i("axis"), c.attrs.i("qmin"), c.attrs.i("qmax"));
  if (x.dtype() == DType::f32) {
    const float* xp = x.data_ptr<float>();
    float* yp = out.data_ptr<float>();
    for_runs(p, x.numel(), [&](int64_t at, int64_t n, int64_t ch) {
      fq_run_f32(xp + at, yp + at, n, p.scale_f[size_t(ch)], p.inv_s[size_t(ch)], p.zp[size_t(ch)], p.qmin, p.qmax);
    });
    return;
  }
  const double* xp = x.data_ptr<double>();
  double* yp = out.data_ptr<double>();
  for_runs(p, x.numel(), [&](int64_t at, int64_t n, int64_t ch) {
    const float inv = p.inv_s[size_t(ch)];
    const double s = p.scale[size_t(ch)];
    const int32_t zp = p.zp[size_t(ch)];
    for (int64_t i = at; i < at + n; ++i)
      yp[i] = double(quant::quantize_value(float(xp[i]), inv, zp, p.qmin, p.qmax) - zp) * s;
  });
}

// dx only (the usual case: activations and weights with a fixed scale). The decision
// qmin <= round(x * inv) + zp <= qmax in f32: exact as in the forward kernel, NaN as zp.
inline float dx_keep(float x, float inv, float zp, float lo, float hi) {
  float y = x * inv;
  y = y != y ? 0.0f : std::min(std::max(y, -2147483520.0f), 2147483520.0f);
  float q = std::nearbyint(y) + zp;
  return (q >= lo && q <= hi) ? 1.0f : 0.0f;
}

void dx_run_f32(const float* dy, const float* x, float* dx, int64_t n, float inv, float zp, float lo, float hi) {
  const __m256 vinv = _mm256_set1_ps(inv), vzp = _mm256_set1_ps(zp), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256 big = _mm256_set1_ps(2147483520.0f), nbig = _mm256_set1_ps(-2147483520.0f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    __m256 ok = _mm256_cmp_ps(y, y, _CMP_ORD_Q);
    y = _mm256_and_ps(_mm256_min_ps(_mm256_max_ps(y, nbig), big), ok);  // NaN -> 0 (q = zp)
    __m256 q = _mm256_add_ps(_mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vzp);
    __m256 in = _mm256_and_ps(_mm256_cmp_ps(q, vlo, _CMP_GE_OQ), _mm256_cmp_ps(q, vhi, _CMP_LE_OQ));
    _mm256_storeu_ps(dx + i, _mm256_blendv_ps(zero, _mm256_loadu_ps(dy + i), in));
  }
  for (; i < n; ++i) dx[i] = dx_keep(x[i], inv, zp, lo, hi) != 0 ? dy[i] : 0.0f;
}

template <class T> void fq_backward_dx(ops::OpCall& c, const FakeQuantParams& p) {
  const T* dy = c.in[0].data_ptr<T>();
  const T* x = c.in[1].data_ptr<T>();
  T* dx = c.out[0].data_ptr<T>();
  for_runs(p, c.in[1].numel(), [&](int64_t at, int64_t n, int64_t ch) {
    const float inv = p.inv_s[size_t(ch)], zp = float(p.zp[size_t(ch)]), lo = float(p.qmin), hi = float(p.qmax);
    if constexpr (std::is_same_v<T, float>) {
      dx_run_f32(dy + at, x + at, dx + at, n, inv, zp, lo, hi);
    } else {
      for (int64_t i = at; i < at + n; ++i) dx[i] = dx_keep(float(x[i]), inv, zp, lo, hi) != 0 ? dy[i] : T(0);
    }
  });
}

template <class T> void fq_backward(ops::OpCall& c, const FakeQuantParams& p) {
  if (c.out[1].numel() == 0) return fq_backward_dx<T>(c, p);
  const T* dy = c.in[0].data_ptr<T>();
  const T* x = c.in[1].data_ptr<T>();
  T *dx = c.out[0].data_ptr<T>(), *ds = c.out[1].data_ptr<T>(), *dz = c.out[2].data_ptr<T>();
  for_runs(p, c.in[1].numel(), [&](int64_t at, int64_t n, int64_t ch) {
    const float inv = p.inv_s[size_t(ch)];
    const double s = p.scale[size_t(ch)];
    const int32_t zp = p.zp[size_t(ch)], lo = p.qmin, hi = p.qmax;
    for (int64_t i = at; i < at + n; ++i) {
      double g = double(dy[i]), xv = double(x[i]);
      int64_t q_raw = quant::unsaturated_q(float(x[i]), inv, zp);
      bool inside = lo <= q_raw && q_raw <= hi;
      double q = double(std::clamp<int64_t>(q_raw, lo, hi));
      dx[i] = inside ? dy[i] : T(0);
      ds[i] = T(g * (inside ? (q - zp) - xv / s : q - zp));
      dz[i] = inside ? T(0) : T(-g * s);
    }
  });
}

void fake_quantize_backward_cpu(ops::OpCall& c) {
  FakeQuantParams p(c.in[1], c.in[2], c.in[3], c.attrs.i("axis"), c.attrs.i("qmin"), c.attrs.i("qmax"));
  if (c.in[1].dtype() == DType::f32)
    fq_backward<float>(c, p);
  else
    fq_backward<double>(c, p);
}

const char* fq_supports(const ops::OpCall& c) {
  if (!c.in[0].is_contiguous()) return "x is not contiguous";
  return nullptr;
}
const char* fq_backward_supports(const ops::OpCall& c) {
  if (!c.in[0].is_contiguous() || !c.in[1].is_contiguous()) return "dy or x is not contiguous";
  return nullptr;
}

}  // namespace

void register_fake_quant_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::fake_quantize, {"cpu", fq_supports, fake_quantize_cpu});
  ops::add_kernel(t, ops::OpKind::fake_quantize_backward, {"cpu", fq_backward_supports, fake_quantize_backward_cpu});
}

}  // namespace qs::kernels
