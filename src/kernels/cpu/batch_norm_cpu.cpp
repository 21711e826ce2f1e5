// Batch normalisation on contiguous tensors, f32, or bf16 activations with f32 per-channel
// vectors (autocast), in two passes (Planes says in which order the planes are walked):
//   1. per-plane partial sums (float SIMD over the plane, kept as double per plane), then
//      per channel their total over n in a fixed order: the same numbers for any thread
//      count;
//   2. per plane, the elementwise result with its channel's coefficients.
// One set of loops serves both dtypes, in an 8-lane (AVX2) and a 16-lane (AVX-512) build:
// bf16 is widened in registers as it is loaded and rounded once as it is stored. The fused
// ReLU (attr relu; backward input y) is applied inside them.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/simd_avx512.h"

namespace qs::kernels {

namespace {

// Activations (x, y, dy, dx) f32 or bf16; everything else f32.
const char* bn_supports(const ops::OpCall& c) {
  for (auto& t : c.in)
    if (t.defined() && t.dtype() != DType::f32 && t.dtype() != DType::bf16) return "f32 or bf16 only";
  for (auto& t : c.in)
    if (t.defined() && !t.is_contiguous()) return "non-contiguous operand";
  return nullptr;
}

// The fused ReLU's gradient: dy where y > 0, else exactly 0 (even for a NaN dy), as a
// bitwise mask (the ternary form does not vectorise).
inline __m256 relu_masked(__m256 g, __m256 y) { return _mm256_and_ps(g, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ)); }
inline float relu_masked(float g, float y) { return y > 0.0f ? g : 0.0f; }

// sum (x - m) and sum (x - m)^2 over one plane of P values.
// (Two accumulators each: one chain of adds would wait on its latency, not on memory.)
template <class T> void moments(const T* x, int64_t P, float m, float& a, float& q) {
  __m256 va = _mm256_setzero_ps(), vq = _mm256_setzero_ps(), va2 = va, vq2 = vq, vm = _mm256_set1_ps(m);
  int64_t i = 0;
  for (; i + 16 <= P; i += 16) {
    __m256 d = _mm256_sub_ps(load8(x + i), vm), d2 = _mm256_sub_ps(load8(x + i + 8), vm);
    va = _mm256_add_ps(va, d);
    vq = _mm256_fmadd_ps(d, d, vq);
    va2 = _mm256_add_ps(va2, d2);
    vq2 = _mm256_fmadd_ps(d2, d2, vq2);
  }
  for (; i + 8 <= P; i += 8) {
    __m256 d = _mm256_sub_ps(load8(x + i), vm);
    va = _mm256_add_ps(va, d);
    vq = _mm256_fmadd_ps(d, d, vq);
  }
  a = hsum(_mm256_add_ps(va, va2));
  q = hsum(_mm256_add_ps(vq, vq2));
  for (; i < P; ++i) {
    float d = to_f32(x[i]) - m;
    a += d;
    q += d * d;
  }
}

// y = x k + h (then max(., 0) with relu) over one plane.
template <class T, bool Relu> void normalise(const T* x, int64_t P, float k, float h, T* y) {
  const __m256 vk = _mm256_set1_ps(k), vh = _mm256_set1_ps(h), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= P; i += 8) {
    __m256 v = _mm256_fmadd_ps(load8(x + i), vk, vh);
    store8(y + i, Relu ? _mm256_max_ps(v, zero) : v);
  }
  for (; i < P; ++i) {
    float v = to_f32(x[i]) * k + h;
    from_f32(y + i, Relu ? std::max(v, 0.0f) : v);
  }
}

// a = sum g', q = sum g' (x - m) over one plane, g' the gradient (masked by y > 0 with y).
template <class T> void grad_moments(const T* g, const T* x, const T* y, int64_t P, float m, float& a, float& q) {
  __m256 va = _mm256_setzero_ps(), vq = _mm256_setzero_ps(), va2 = va, vq2 = vq, vm = _mm256_set1_ps(m);
  auto grad = [&](int64_t i) { return y ? relu_masked(load8(g + i), load8(y + i)) : load8(g + i); };
  int64_t i = 0;
  for (; i + 16 <= P; i += 16) {
    __m256 g1 = grad(i), g2 = grad(i + 8);
    va = _mm256_add_ps(va, g1);
    vq = _mm256_fmadd_ps(g1, _mm256_sub_ps(load8(x + i), vm), vq);
    va2 = _mm256_add_ps(va2, g2);
    vq2 = _mm256_fmadd_ps(g2, _mm256_sub_ps(load8(x + i + 8), vm), vq2);
  }
  for (; i + 8 <= P; i += 8) {
    __m256 gi = grad(i);
    va = _mm256_add_ps(va, gi);
    vq = _mm256_fmadd_ps(gi, _mm256_sub_ps(load8(x + i), vm), vq);
  }
  a = hsum(_mm256_add_ps(va, va2));
  q = hsum(_mm256_add_ps(vq, vq2));
  for (; i < P; ++i) {
    float gi = y ? relu_masked(to_f32(g[i]), to_f32(y[i])) : to_f32(g[i]);
    a += gi;
    q += gi * (to_f32(x[i]) - m);
  }
}

// dx = wi (g' - k1 - (x - m) k2) over one plane.
template <class T>
void grad_x(const T* g, const T* x, const T* y, int64_t P, float m, float wi, float k1, float k2, T* dx) {
  const __m256 vm = _mm256_set1_ps(m), vw = _mm256_set1_ps(wi), v1 = _mm256_set1_ps(k1), v2 = _mm256_set1_ps(k2);
  int64_t i = 0;
  for (; i + 8 <= P; i += 8) {
    __m256 gi = y ? relu_masked(load8(g + i), load8(y + i)) : load8(g + i);
    __m256 t = _mm256_fnmadd_ps(_mm256_sub_ps(load8(x + i), vm), v2, _mm256_sub_ps(gi, v1));
    store8(dx + i, _mm256_mul_ps(vw, t));
  }
  for (; i < P; ++i) {
    float gi = y ? relu_masked(to_f32(g[i]), to_f32(y[i])) : to_f32(g[i]);
    from_f32(dx + i, wi * (gi - k1 - (to_f32(x[i]) - m) * k2));
  }
}

// The same four loops 16 lanes wide (AVX-512), where backend::avx512_loops says so: half the
// instructions per value, which is what bf16 (widened and rounded in registers) was short
// of. The CNN's first batch norm, [128, 32, 28, 28] + ReLU, training, 2 threads, Zen 5
// (`qiusuo bench batch_norm_b128`): bf16 forward 0.50 -> 0.27 ms (the 8-lane one was slower
// than f32's 0.37), backward 0.86 -> 0.51 ms. Tails (planes of 49 or 196) go one value at a
// time, as the 8-lane loops' do: no masked loads or stores (slow on Zen 5).
template <class T> QS_TARGET_AVX512 void moments16(const T* x, int64_t P, float m, float& a, float& q) {
  __m512 va = _mm512_setzero_ps(), vq = _mm512_setzero_ps(), va2 = va, vq2 = vq, vm = _mm512_set1_ps(m);
  int64_t i = 0;
  for (; i + 32 <= P; i += 32) {
    __m512 d = _mm512_sub_ps(load16(x + i), vm), d2 = _mm512_sub_ps(load16(x + i + 16), vm);
    va = _mm512_add_ps(va, d);
    vq = _mm512_fmadd_ps(d, d, vq);
    va2 = _mm512_add_ps(va2, d2);
    vq2 = _mm512_fmadd_ps(d2, d2, vq2);
  }
  for (; i + 16 <= P; i += 16) {
    __m512 d = _mm512_sub_ps(load16(x + i), vm);
    va = _mm512_add_ps(va, d);
    vq = _mm512_fmadd_ps(d, d, vq);
  }
  a = _mm512_reduce_add_ps(_mm512_add_ps(va, va2));
  q = _mm512_reduce_add_ps(_mm512_add_ps(vq, vq2));
  for (; i < P; ++i) {
    float d = to_f32(x[i]) - m;
    a += d;
    q += d * d;
  }
}

template <class T, bool Relu> QS_TARGET_AVX512 void normalise16(const T* x, int64_t P, float k, float h, T* y) {
  const __m512 vk = _mm512_set1_ps(k), vh = _mm512_set1_ps(h), zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= P; i += 16) {
    __m512 v = _mm512_fmadd_ps(load16(x + i), vk, vh);
    store16(y + i, Relu ? _mm512_max_ps(v, zero) : v);
  }
  for (; i < P; ++i) {
    float v = to_f32(x[i]) * k + h;
    from_f32(y + i, Relu ? std::max(v, 0.0f) : v);
  }
}

// relu_masked, 16 lanes: dy where y > 0, else exactly 0.
QS_TARGET_AVX512 inline __m512 relu_masked16(__m512 g, __m512 y) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), g);
}

template <class T>
QS_TARGET_AVX512 void grad_moments16(const T* g, const T* x, const T* y, int64_t P, float m, float& a, float& q) {
  __m512 va = _mm512_setzero_ps(), vq = _mm512_setzero_ps(), va2 = va, vq2 = vq, vm = _mm512_set1_ps(m);
  int64_t i = 0;
  for (; i + 32 <= P; i += 32) {
    __m512 g1 = load16(g + i), g2 = load16(g + i + 16);
    if (y) {
      g1 = relu_masked16(g1, load16(y + i));
      g2 = relu_masked16(g2, load16(y + i + 16));
    }
    va = _mm512_add_ps(va, g1);
    vq = _mm512_fmadd_ps(g1, _mm512_sub_ps(load16(x + i), vm), vq);
    va2 = _mm512_add_ps(va2, g2);
    vq2 = _mm512_fmadd_ps(g2, _mm512_sub_ps(load16(x + i + 16), vm), vq2);
  }
  for (; i + 16 <= P; i += 16) {
    __m512 gi = y ? relu_masked16(load16(g + i), load16(y + i)) : load16(g + i);
    va = _mm512_add_ps(va, gi);
    vq = _mm512_fmadd_ps(gi, _mm512_sub_ps(load16(x + i), vm), vq);
  }
  a = _mm512_reduce_add_ps(_mm512_add_ps(va, va2));
  q = _mm512_reduce_add_ps(_mm512_add_ps(vq, vq2));
  for (; i < P; ++i) {
    float gi = y ? relu_masked(to_f32(g[i]), to_f32(y[i])) : to_f32(g[i]);
    a += gi;
    q += gi * (to_f32(x[i]) - m);
  }
}

template <class T>
QS_TARGET_AVX512 void grad_x16(const T* g, const T* x, const T* y, int64_t P, float m, float wi, float k1, float k2,
                               T* dx) {
  const __m512 vm = _mm512_set1_ps(m), vw = _mm512_set1_ps(wi), v1 = _mm512_set1_ps(k1), v2 = _mm512_set1_ps(k2);
  int64_t i = 0;
  for (; i + 16 <= P; i += 16) {
    __m512 gi = y ? relu_masked16(load16(g + i), load16(y + i)) : load16(g + i);
    __m512 t = _mm512_fnmadd_ps(_mm512_sub_ps(load16(x + i), vm), v2, _mm512_sub_ps(gi, v1));
    store16(dx + i, _mm512_mul_ps(vw, t));
  }
  for (; i < P; ++i) {
    float gi = y ? relu_masked(to_f32(g[i]), to_f32(y[i])) : to_f32(g[i]);
    from_f32(dx + i, wi * (gi - k1 - (to_f32(x[i]) - m) * k2));
  }
}

// Which build the loops run (QS_VERBOSE=dispatch names it).
bool bn_wide() {
  static const bool wide = backend::avx512_loops("batch-norm rows");
  return wide;
}

// x as [N, C, P], walked in one of two orders (measured on the CNNs' training steps, Zen 4,
// 2 threads):
//   memory order  planes shorter than 16 KiB (the 2-D CNN's 28 x 28 and smaller): each pass
//                 splits all N C planes among the threads in order, so each streams through
//                 memory; the second pass re-reads what the first read, from the last-level
//                 cache where the tensor fits. Channel by channel these planes were runs too
//                 short for the prefetchers (bf16 no faster than f32).
//   by channel    longer planes (the 3-D CNN's 32^3 = 128 KiB): one task per channel runs both
//                 passes over its N planes, so the second finds them in cache (a 16 MiB layer
//                 streamed twice from memory cost that step 11% in f32).
// Either way pass 1 keeps a partial sum per plane and each channel's total adds them over n
// in order: the same numbers for any thread count and either order.
struct Planes {
  int64_t N, C, P;
  bool by_channel;
  Planes(const Tensor& x, size_t elem_bytes)
      : N(x.size(0)), C(x.size(1)), P(x.numel() / std::max<int64_t>(1, x.size(0) * x.size(1))),
        by_channel(int64_t(elem_bytes) * P >= 16384) {}
  // Per-plane values [N * C] summed over n in order, for channels [c0, c1).
  void per_channel(int64_t c0, int64_t c1, const std::vector<double>& v, std::vector<double>& out) const {
    for (int64_t c = c0; c < c1; ++c) out[size_t(c)] = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) out[size_t(c)] += v[size_t(n * C + c)];
  }
  // Runs plane(n, c, offset) over every plane, then coeffs(c0, c1) once per channel range
  // whose partial sums are complete, then apply(n, c, offset) over every plane, in this
  // struct's order (see above).
  template <class Plane, class Coeffs, class Apply>
  void two_passes(bool par, Plane&& plane, Coeffs&& coeffs, Apply&& apply) const {
    if (by_channel) {
#pragma omp parallel for schedule(static) if (par)
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t n = 0; n < N; ++n) plane(n, c, (n * C + c) * P);
        coeffs(c, c + 1);
        for (int64_t n = 0; n < N; ++n) apply(n, c, (n * C + c) * P);
      }
      return;
    }
#pragma omp parallel for schedule(static) if (par)
    for (int64_t nc = 0; nc < N * C; ++nc) plane(nc / C, nc % C, nc * P);
    coeffs(0, C);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t nc = 0; nc < N * C; ++nc) apply(nc / C, nc % C, nc * P);
  }
};

// Threads only for tensors worth them.
inline bool parallel(int64_t numel) { return numel > 4096; }

template <class T> void batch_norm_cpu(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  const Planes s(x, sizeof(T));
  const T* xp = x.data_ptr<T>();
  const float* w = c.in[1].defined() ? c.in[1].data_ptr<float>() : nullptr;
  const float* b = c.in[2].defined() ? c.in[2].data_ptr<float>() : nullptr;
  const float* run_mean = c.in[3].defined() ? c.in[3].data_ptr<float>() : nullptr;
  const float* run_var = c.in[4].defined() ? c.in[4].data_ptr<float>() : nullptr;
  T* y = c.out[0].data_ptr<T>();
  float *mean = c.out[1].data_ptr<float>(), *invstd = c.out[2].data_ptr<float>();
  const bool training = c.attrs.b("training"), relu = c.attrs.b("relu", false), wide = bn_wide();
  const double eps = c.attrs.f("eps"), M = double(s.N * s.P);
  // Per plane: sums of x - x[0, c, 0] (shifted by the channel's first value, then
  // corrected: stable for large means) and of its square.
  std::vector<double> s1(size_t(s.N * s.C)), s2(size_t(s.N * s.C)), c1(size_t(s.C)), c2(size_t(s.C));
  std::vector<float> scale(size_t(s.C)), shift(size_t(s.C));
  s.two_passes(
      parallel(x.numel()),
      [&](int64_t n, int64_t ch, int64_t o) {
        if (!training) return;
        float a, q;
        (wide ? moments16<T> : moments<T>)(xp + o, s.P, to_f32(xp[ch * s.P]), a, q);
        s1[size_t(n * s.C + ch)] = a;
        s2[size_t(n * s.C + ch)] = q;
      },
      [&](int64_t ch0, int64_t ch1) {
        if (training) {
          s.per_channel(ch0, ch1, s1, c1);
          s.per_channel(ch0, ch1, s2, c2);
        }
        for (int64_t ch = ch0; ch < ch1; ++ch) {
          double m, is;
          if (training) {
            const double d = c1[size_t(ch)] / M;
            m = to_f32(xp[ch * s.P]) + d;
            is = 1.0 / std::sqrt(std::max(0.0, c2[size_t(ch)] / M - d * d) + eps);
          } else {
            m = run_mean[ch];
            is = 1.0 / std::sqrt(double(run_var[ch]) + eps);
          }
          mean[ch] = float(m);
          invstd[ch] = float(is);
          const double wc = w ? w[ch] : 1.0;
          scale[size_t(ch)] = float(double(invstd[ch]) * wc);
          shift[size_t(ch)] = float((b ? b[ch] : 0.0) - double(mean[ch]) * double(invstd[ch]) * wc);
        }
      },
      [&](int64_t, int64_t ch, int64_t o) {
        auto fn = wide ? (relu ? normalise16<T, true> : normalise16<T, false>)
                       : (relu ? normalise<T, true> : normalise<T, false>);
        fn(xp + o, s.P, scale[size_t(ch)], shift[size_t(ch)], y + o);
      });
}

template <class T> void batch_norm_backward_cpu(ops::OpCall& c) {
  const Tensor& x = c.in[1];
  const Planes s(x, sizeof(T));
  const T *gy = c.in[0].data_ptr<T>(), *xp = x.data_ptr<T>();
  const float* w = c.in[2].defined() ? c.in[2].data_ptr<float>() : nullptr;
  const float *mean = c.in[3].data_ptr<float>(), *invstd = c.in[4].data_ptr<float>();
  const T* y = c.in[5].defined() ? c.in[5].data_ptr<T>() : nullptr;
  T* dx = c.out[0].data_ptr<T>();
  float *dw = c.out[1].data_ptr<float>(), *db = c.out[2].data_ptr<float>();
  // f32 keeps the 8-lane loops backward: its 16-lane build, streaming three f32 tensors,
  // ran slower on Zen 5 (2 threads: the 2-D layer 1.10-1.19 -> 1.41-1.90 ms, the 3-D CNN's
  // three layers 105 -> 110-114 ms over 40 steps).
  const bool training = c.attrs.b("training"), wide = std::is_same_v<T, bf16> && bn_wide();
  const double M = double(s.N * s.P);
  // Per plane: sum dy and sum dy (x - mean), dy masked by y > 0 when y is given.
  std::vector<double> sg_p(size_t(s.N * s.C)), sgd_p(size_t(s.N * s.C)), sg(size_t(s.C)), sgd(size_t(s.C));
  // dx = wi (dy - k1 - (x - m) k2); training: k1 = sg / M, k2 = is^2 sgd / M; else 0.
  std::vector<float> wi(size_t(s.C)), k1(size_t(s.C)), k2(size_t(s.C));
  s.two_passes(
      parallel(x.numel()),
      [&](int64_t n, int64_t ch, int64_t o) {
        float a, q;
        (wide ? grad_moments16<T> : grad_moments<T>)(gy + o, xp + o, y ? y + o : nullptr, s.P, mean[ch], a, q);
        sg_p[size_t(n * s.C + ch)] = a;
        sgd_p[size_t(n * s.C + ch)] = q;
      },
      [&](int64_t ch0, int64_t ch1) {
        s.per_channel(ch0, ch1, sg_p, sg);
        s.per_channel(ch0, ch1, sgd_p, sgd);
        for (int64_t ch = ch0; ch < ch1; ++ch) {
          const size_t u = size_t(ch);
          const float is = invstd[ch];
          wi[u] = float((w ? w[ch] : 1.0f) * double(is));
          k1[u] = training ? float(sg[u] / M) : 0.0f;
          k2[u] = training ? float(double(is) * is * sgd[u] / M) : 0.0f;
          dw[ch] = float(sgd[u] * is);
          db[ch] = float(sg[u]);
        }
      },
      [&](int64_t, int64_t ch, int64_t o) {
        const size_t u = size_t(ch);
        (wide ? grad_x16<T> : grad_x<T>)(gy + o, xp + o, y ? y + o : nullptr, s.P, mean[ch], wi[u], k1[u], k2[u], dx + o);
      });
}

void batch_norm_any(ops::OpCall& c) {
  c.in[0].dtype() == DType::bf16 ? batch_norm_cpu<bf16>(c) : batch_norm_cpu<float>(c);
}
void batch_norm_backward_any(ops::OpCall& c) {
  c.in[1].dtype() == DType::bf16 ? batch_norm_backward_cpu<bf16>(c) : batch_norm_backward_cpu<float>(c);
}

}  // namespace

void register_batch_norm_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::batch_norm, {"cpu", bn_supports, batch_norm_any});
  ops::add_kernel(t, ops::OpKind::batch_norm_backward, {"cpu", bn_supports, batch_norm_backward_any});
}

}  // namespace qs::kernels
