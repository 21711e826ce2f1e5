// Convolution backward-weights, f32 (or bf16 widened where oneDNN has no native bf16),
// stride 1, no dilation, no groups, input and output
// channels multiples of 8, 1 to 3 spatial dims: a direct AVX2 kernel vectorised over 8
// output channels, reading gy in oneDNN's channel-blocked layout (nC[d]hw8c) and x in the
// op's plain NC(D)HW layout.
//
//   dw[o, c, t] = sum_{n, p} gy[n, o, p] x[n, c, p + t - pad]      db[o] = sum_{n, p} gy[n, o, p]
//
// Used where oneDNN runs AVX2 (declines on AVX-512). oneDNN 2.6 has no AVX2 direct kernel
// for 3-D backward-weights (it runs im2col + gemm,
// ~40% of the FMA peak on the 3-D CNN) and its 2-D one reaches ~50%. Here a block of
// 16 output channels (two vectors of gy) times 6 input channels (broadcast scalars of x)
// keeps 12 accumulators in registers over every output position of one (image, depth)
// slab: 2 loads and 6 broadcasts per 12 FMAs, the slab's gy and x rows hot in L1/L2.
// Each thread sums its slabs into its own [tap][c][o] buffer; the buffers are added and
// transposed into dw's [o][c][tap] at the end, in a fixed order (results do not depend
// on the scheduling). gy comes through the same reorder as backward-data's (shared
// inside convolution_backward's StableOperands scope); x needs no reorder (a contiguous
// x is read in place) and tap windows are clipped to the input, so no padded copy is made.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dnnl_layout.h"
#include "kernels/spatial.h"

namespace qs::kernels {

namespace {

using dnnl::memory;
using ops::Spatial;

const char* bwdw_supports(const ops::OpCall& c) {
  const Tensor &gy = c.in[0], &x = c.in[1];
  // Written for AVX2, where oneDNN 2.6's backward-weights is slow; its AVX-512 kernels are
  // faster (Zen 4, 1 thread, CPU ms per cnn_train_b128 step: 80 without this kernel, 88
  // with it; the 3-D CNN even), so there it steps aside.
  if (backend::avx512()) return "oneDNN's AVX-512 backward-weights is faster";
  if (const char* why = f32_or_widened_bf16(c)) return why;
  if (c.attrs.i("groups", 1) != 1) return "groups";
  const Shape& ws = c.attrs.ints("weight_shape");
  if (x.size(1) % 8 != 0 || ws[0] % 8 != 0) return "channels not multiples of 8";
  if (c.out[0].numel() == 0 || gy.numel() == 0) return "empty operand";
  for (auto& t : c.in)
    for (int64_t d = 0; d < t.dim(); ++d)
      if (t.stride(d) == 0 && t.size(d) > 1) return "expanded (stride-0) operand";
  Spatial s = ops::conv_spatial(x.shape(), ws, c.attrs, "convolution_backward_weight");
  for (int d = 0; d < 3; ++d)
    if (s.stride[size_t(d)] != 1 || s.dil[size_t(d)] != 1) return "stride or dilation other than 1";
  return nullptr;
}

// The blocked layout of an [N, C, spatial...] tensor: nCw8c, nChw8c or nCdhw8c (the one
// oneDNN's backward-data asks for, so the two share one reorder of gy).
memory::desc blocked_md(const Tensor& t) {
  using tag = memory::format_tag;
  memory::dims d(t.shape().begin(), t.shape().end());
  tag k = t.dim() == 3 ? tag::nCw8c : t.dim() == 4 ? tag::nChw8c : tag::nCdhw8c;
  return memory::desc(d, memory::data_type::f32, k);
}

struct Geom {
  Spatial s;
  int64_t O, C, T;  // output and input channels, taps
};

// One tap's window over one slab: output rows [y0, y1) x columns [x0, x1), the ones whose
// input (y + dy, x + dx) lies inside x.
struct Window {
  int64_t y0, y1, x0, x1, dy, dx;
};

// acc[j][i] += gy[o-vector j] * x[channel i] over a window, for OB o-vectors and CI channels.
template <int OB, int CI>
void window_sums(const Geom& g, const Window& w, const float* const* gyb, const float* const* xc, float* part) {
  __m256 acc[OB][CI];
#pragma GCC unroll 2
  for (int j = 0; j < OB; ++j)
#pragma GCC unroll 6
    for (int i = 0; i < CI; ++i) acc[j][i] = _mm256_setzero_ps();
  const int64_t W = g.s.out[2], Wi = g.s.in[2];
  for (int64_t y = w.y0; y < w.y1; ++y) {
    const int64_t go = (y * W) * 8, xo = (y + w.dy) * Wi + w.dx;
    for (int64_t x = w.x0; x < w.x1; ++x) {
      __m256 gv[OB];
#pragma GCC unroll 2
      for (int j = 0; j < OB; ++j) gv[j] = _mm256_loadu_ps(gyb[j] + go + x * 8);
#pragma GCC unroll 6
      for (int i = 0; i < CI; ++i) {
        const __m256 xv = _mm256_broadcast_ss(xc[i] + xo + x);
#pragma GCC unroll 2
        for (int j = 0; j < OB; ++j) acc[j][i] = _mm256_fmadd_ps(gv[j], xv, acc[j][i]);
      }
    }
  }
  // part: [c][o] for this tap; o-vector j of channel i at part[i * O + 8 j]
  const int64_t O = g.O;
#pragma GCC unroll 6
  for (int i = 0; i < CI; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < OB; ++j) {
      float* p = part + i * O + 8 * j;
      _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), acc[j][i]));
    }
}

using SumsFn = void (*)(const Geom&, const Window&, const float* const*, const float* const*, float*);
template <int OB> constexpr SumsFn kSums[6] = {window_sums<OB, 1>, window_sums<OB, 2>, window_sums<OB, 3>,
                                               window_sums<OB, 4>, window_sums<OB, 5>, window_sums<OB, 6>};

// Adds slab (n, z)'s contributions to every tap into part ([tap][c][o]) and to db.
void slab(const Geom& g, const float* gy, const float* xb, int64_t n, int64_t z, float* part, float* db) {
  const Spatial& s = g.s;
  const int64_t OBk = g.O / 8, plane_o = s.out[1] * s.out[2], plane_i = s.in[1] * s.in[2];
  const float* gys = gy + (n * OBk * s.out[0] + z) * plane_o * 8;  // block 0 of this slab
  // db: the slab's gy summed per o-vector
  for (int64_t ob = 0; ob < OBk; ++ob) {
    const float* p = gys + ob * s.out[0] * plane_o * 8;
    __m256 a = _mm256_setzero_ps();
    for (int64_t q = 0; q < plane_o; ++q) a = _mm256_add_ps(a, _mm256_loadu_ps(p + q * 8));
    _mm256_storeu_ps(db + ob * 8, _mm256_add_ps(_mm256_loadu_ps(db + ob * 8), a));
  }
  int64_t t = 0;
  for (int64_t kd = 0; kd < s.k[0]; ++kd) {
    const int64_t zi = z + kd - s.pad[0];
    if (zi < 0 || zi >= s.in[0]) {
      t += s.k[1] * s.k[2];
      continue;
    }
    for (int64_t kh = 0; kh < s.k[1]; ++kh)
      for (int64_t kw = 0; kw < s.k[2]; ++kw, ++t) {
        Window w;
        w.dy = kh - s.pad[1];
        w.dx = kw - s.pad[2];
        w.y0 = std::max<int64_t>(0, -w.dy);
        w.y1 = std::min(s.out[1], s.in[1] - w.dy);
        w.x0 = std::max<int64_t>(0, -w.dx);
        w.x1 = std::min(s.out[2], s.in[2] - w.dx);
        if (w.y0 >= w.y1 || w.x0 >= w.x1) continue;
        float* pt = part + t * g.C * g.O;
        for (int64_t ob = 0; ob < OBk; ob += 2) {
          const int OB = OBk - ob >= 2 ? 2 : 1;
          const float* gyb[2] = {gys + ob * s.out[0] * plane_o * 8, gys + (ob + OB - 1) * s.out[0] * plane_o * 8};
          const int64_t groups = (g.C + 5) / 6;  // even groups of at most 6 channels (32: 6,6,5,5,5,5)
          for (int64_t k = 0; k < groups; ++k) {
            const int64_t c = k * g.C / groups;
            const int CI = int((k + 1) * g.C / groups - c);
            const float* xc[6];
            for (int i = 0; i < CI; ++i) {
              int64_t ch = c + i;
              xc[i] = xb + ((n * g.C + ch) * s.in[0] + zi) * plane_i;
            }
            (OB == 2 ? kSums<2> : kSums<1>)[CI - 1](g, w, gyb, xc, pt + c * g.O + ob * 8);
          }
        }
      }
  }
}

void convolution_backward_weight_direct(ops::OpCall& c) {
  const Tensor &gy = c.in[0], &x = c.in[1];
  const Shape& ws = c.attrs.ints("weight_shape");
  Geom g;
  g.s = ops::conv_spatial(x.shape(), ws, c.attrs, "convolution_backward_weight");
  g.O = ws[0];
  g.C = x.size(1);
  g.T = g.s.k_plane();
  Layouts io;
  const memory::desc want = blocked_md(gy);
  memory gm = io.in_operand(backend::plain_md(gy), gy.raw_data(), want);
  backend::dnnl_stream().wait();
  // The loops below index 8-channel blocks: never read a buffer in another layout (oneDNN's
  // own primitives use 16-channel blocks on AVX-512, and a kept conversion could be one).
  QS_CHECK(gm.get_desc() == want, "direct8: gradient handed over in layout {}, expected {}", md_key(gm.get_desc()),
           md_key(want));
  const Tensor xp = x.to(DType::f32).contiguous();  // read in place: the broadcasts walk one channel's plane
  const float* gyb = static_cast<const float*>(gm.get_data_handle());
  const float* xb = static_cast<const float*>(xp.raw_data());
  const int64_t slabs = g.s.N * g.s.out[0], per = g.T * g.C * g.O;
  const int nt = std::max(1, std::min<int>(omp_get_max_threads(), int(slabs)));
  std::vector<float> parts(size_t(nt) * size_t(per + g.O), 0.0f);
#pragma omp parallel num_threads(nt)
  {
    float* part = parts.data() + size_t(omp_get_thread_num()) * size_t(per + g.O);
#pragma omp for schedule(static)
    for (int64_t sl = 0; sl < slabs; ++sl) slab(g, gyb, xb, sl / g.s.out[0], sl % g.s.out[0], part, part + per);
  }
  // Threads' buffers added in thread order, then [tap][c][o] -> dw [o][c][tap].
  float* dw = static_cast<float*>(c.out[0].raw_data());
  float* db = static_cast<float*>(c.out[1].raw_data());
  for (int k = 1; k < nt; ++k)
    for (int64_t i = 0; i < per + g.O; ++i) parts[size_t(i)] += parts[size_t(k) * size_t(per + g.O) + size_t(i)];
  for (int64_t o = 0; o < g.O; ++o) {
    for (int64_t ch = 0; ch < g.C; ++ch)
      for (int64_t t = 0; t < g.T; ++t) dw[(o * g.C + ch) * g.T + t] = parts[size_t((t * g.C + ch) * g.O + o)];
    db[o] = parts[size_t(per + o)];
  }
}

}  // namespace

void register_conv_bwdw_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::convolution_backward_weight,
                  {"direct8", bwdw_supports, convolution_backward_weight_direct});
}

}  // namespace qs::kernels
