// Convolution with a single input channel (a network's first layer on images or volumes:
// Fashion-MNIST's 1 -> 32, a CT volume's 1 -> 16), forward and backward-weights, f32,
// stride 1, no dilation, no groups, any kernel size and padding, 1 to 3 spatial dims;
// bf16 operands (autocast) are widened to f32, and a bf16 result (out_dtype) is computed
// in L1-sized f32 scratch, a run of rows at a time, and rounded once.
//
// oneDNN has no good kernel for this shape on AVX2: its blocked direct kernels want 8
// input channels, and its gemm-based path builds an im2col matrix with one row per tap
// (measured with ONEDNN_VERBOSE on cnn_train_b128: 11 GFLOP/s forward, and a reorder of
// the 32-channel output back to NCHW on the blocked path). With one input channel the
// convolution is a stencil: each output row is a sum over taps of a weight times a
// shifted input row, so both directions vectorise along W on the plain NC(D)HW layouts:
//   forward          y[n,o,z,y,x] = b[o] + sum_t w[o,t] xpad[n, z+tz, y+ty, x+tx]
//   backward-weights dw[o,t] = sum_{n,z,y,x} gy[n,o,z,y,x] xpad[n, z+tz, y+ty, x+tx]
//                    db[o]   = sum_{n,z,y,x} gy[n,o,z,y,x]
// where xpad is the input copied once per call into zero-padded rows (thread-local
// scratch) that are wide enough for whole 8-float vectors, so no load needs a mask.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/spatial.h"

namespace qs::kernels {

namespace {

using ops::Spatial;

const char* c1_supports(const ops::OpCall& c, const Tensor& x, const Shape& ws) {
  // bf16 (autocast) too, widened, even where oneDNN has native bf16: its bf16 path for
  // one input channel is the im2col gemm (x64:gemm:jit) this kernel replaces.
  for (auto& t : c.in)
    if (t.defined() && t.dtype() != DType::f32 && t.dtype() != DType::bf16) return "f32 or bf16 only";
  if (c.attrs.i("groups", 1) != 1) return "groups";
  if (x.dim() < 3 || x.size(1) != 1 || ws.size() != size_t(x.dim()) || ws[1] != 1) return "more than one input channel";
  for (auto& t : c.out)
    if (t.numel() == 0) return "empty output";
  Spatial s = ops::conv_spatial(x.shape(), ws, c.attrs, "convolution");
  for (int d = 0; d < 3; ++d)
    if (s.stride[size_t(d)] != 1 || s.dil[size_t(d)] != 1) return "stride or dilation other than 1";
  return nullptr;
}
const char* c1_fwd_supports(const ops::OpCall& c) { return c1_supports(c, c.in[0], c.in[1].shape()); }
const char* c1_bwdw_supports(const ops::OpCall& c) {
  return c1_supports(c, c.in[1], c.attrs.ints("weight_shape"));
}

// The padded input of every image: rows of `Wp` floats (Wp covers the last output
// vector's reach), `Hp` rows per plane, `Dp` planes per image.
struct Padded {
  Spatial s;
  int64_t Dp, Hp, Wp, vecs;  // vecs: 8-float vectors per output row
  int64_t image() const { return Dp * Hp * Wp; }
  std::vector<int64_t> taps;  // offset of each tap (kd, kh, kw order) from a row's start
  const float* data = nullptr;
};

Padded pad_input(const Spatial& s, const Tensor& x) {
  static thread_local std::vector<float> buf;
  Padded p;
  p.s = s;
  p.vecs = (s.out[2] + 7) / 8;
  p.Dp = s.in[0] + 2 * s.pad[0];
  p.Hp = s.in[1] + 2 * s.pad[1];
  p.Wp = p.vecs * 8 + s.k[2] - 1;
  size_t need = size_t(s.N * p.image());
  if (buf.size() < need) buf.resize(need);
  float* dst = buf.data();
  const float* src = static_cast<const float*>(x.raw_data());
  // x [N, 1, D, H, W] (any strides; the real spatial dims are the last nsp of 3)
  int64_t sn = x.stride(0), sd = s.nsp == 3 ? x.stride(2) : 0, sh = s.nsp >= 2 ? x.stride(x.dim() - 2) : 0,
          sw = x.stride(x.dim() - 1);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n) {
    float* img = dst + n * p.image();
    std::fill(img, img + p.image(), 0.f);
    for (int64_t d = 0; d < s.in[0]; ++d)
      for (int64_t h = 0; h < s.in[1]; ++h) {
        float* row = img + ((d + s.pad[0]) * p.Hp + h + s.pad[1]) * p.Wp + s.pad[2];
        const float* in = src + n * sn + d * sd + h * sh;
        for (int64_t w = 0; w < s.in[2]; ++w) row[w] = in[w * sw];
      }
  }
  for (int64_t kd = 0; kd < s.k[0]; ++kd)
    for (int64_t kh = 0; kh < s.k[1]; ++kh)
      for (int64_t kw = 0; kw < s.k[2]; ++kw) p.taps.push_back((kd * p.Hp + kh) * p.Wp + kw);
  p.data = dst;
  return p;
}

// Forward for OB output channels and XC vectors of one output row: out[ob] (row starts,
// OB of them), w[ob] (each o's taps), in = the padded row where the window starts.
// A vector that would reach past the row is stored whole when the next row of the same
// plane follows (it rewrites those floats later), else through a copy (`last_row`):
// AMD's masked stores are microcoded and slow.
template <int OB, int XC>
inline void fwd_block(const float* in, const int64_t* taps, int64_t T, const float* const* w, const float* bias,
                      float* const* out, int64_t x0, int64_t oW, bool last_row) {
  __m256 acc[OB][XC];
#pragma GCC unroll 8
  for (int ob = 0; ob < OB; ++ob)
#pragma GCC unroll 4
    for (int c = 0; c < XC; ++c) acc[ob][c] = _mm256_set1_ps(bias ? bias[ob] : 0.f);
  for (int64_t t = 0; t < T; ++t) {
    const float* r = in + taps[t] + x0;
    __m256 v[XC];
#pragma GCC unroll 4
    for (int c = 0; c < XC; ++c) v[c] = _mm256_loadu_ps(r + 8 * c);
#pragma GCC unroll 8
    for (int ob = 0; ob < OB; ++ob) {
      __m256 wv = _mm256_broadcast_ss(w[ob] + t);
#pragma GCC unroll 4
      for (int c = 0; c < XC; ++c) acc[ob][c] = _mm256_fmadd_ps(wv, v[c], acc[ob][c]);
    }
  }
#pragma GCC unroll 8
  for (int ob = 0; ob < OB; ++ob)
#pragma GCC unroll 4
    for (int c = 0; c < XC; ++c) {
      int64_t x = x0 + 8 * c;
      if (x + 8 <= oW || !last_row) {
        _mm256_storeu_ps(out[ob] + x, acc[ob][c]);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, acc[ob][c]);
        std::memcpy(out[ob] + x, tmp, size_t(oW - x) * sizeof(float));
      }
    }
}

// f32 scratch for a bf16 result: this many floats for four channels' rows (16 KiB).
constexpr int64_t kScratchFloats = 4096;

// max(v, 0) over n floats (intrinsics: GCC makes std::max a branchy store).
inline void relu_inplace(float* o, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, _mm256_max_ps(_mm256_loadu_ps(o + i), _mm256_setzero_ps()));
  for (; i < n; ++i) o[i] = o[i] > 0.0f ? o[i] : 0.0f;
}

// One output row of OB channels, all of its vectors (two at a time: 8 accumulators, the
// inputs and a weight stay in registers; three at a time spills).
template <int OB>
void fwd_row(const float* in, const Padded& p, const float* const* w, const float* bias, float* const* out,
             bool last_row) {
  const int64_t oW = p.s.out[2], T = int64_t(p.taps.size());
  const int64_t* taps = p.taps.data();
  int64_t v = 0;
  for (; v + 2 <= p.vecs; v += 2) fwd_block<OB, 2>(in, taps, T, w, bias, out, 8 * v, oW, last_row);
  if (v < p.vecs) fwd_block<OB, 1>(in, taps, T, w, bias, out, 8 * v, oW, last_row);
}

void convolution_c1(ops::OpCall& c) {
  const Tensor x = c.in[0].to(DType::f32), w = c.in[1].to(DType::f32).contiguous(), &b = c.in[2];
  Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "convolution");
  Padded p = pad_input(s, x);
  Tensor bias = b.defined() ? b.contiguous() : Tensor();
  const float* wp = static_cast<const float*>(w.raw_data());
  const float* bp = bias.defined() ? static_cast<const float*>(bias.raw_data()) : nullptr;
  const bool lowp_out = c.out[0].dtype() == DType::bf16;
  float* y = lowp_out ? nullptr : static_cast<float*>(c.out[0].raw_data());
  bf16* y16 = lowp_out ? static_cast<bf16*>(c.out[0].raw_data()) : nullptr;
  const int64_t O = w.size(0), T = int64_t(p.taps.size()), plane = s.out_plane(), blocks = (O + 3) / 4;
  const bool relu = ops::conv_relu(c.attrs);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      int64_t o0 = blk * 4, nb = std::min<int64_t>(4, O - o0);
      const float* wr[4];
      float* out[4];
      for (int64_t ob = 0; ob < nb; ++ob) wr[ob] = wp + (o0 + ob) * T;
      // Output rows t0 .. t0 + R - 1 (flat over z and y) of the block's channels.
      auto rows = [&](int64_t t0, int64_t R, float* const* dst, bool last_of_plane) {
        for (int64_t t = t0; t < t0 + R; ++t) {
          const int64_t z = t / s.out[1], r = t % s.out[1];
          const float* in = p.data + n * p.image() + (z * p.Hp + r) * p.Wp;
          for (int64_t ob = 0; ob < nb; ++ob) out[ob] = dst[ob] + (t - t0) * s.out[2];
          bool last = last_of_plane && t + 1 == t0 + R;
          if (nb == 4) {
            fwd_row<4>(in, p, wr, bp ? bp + o0 : nullptr, out, last);
          } else {
            for (int64_t ob = 0; ob < nb; ++ob) fwd_row<1>(in, p, wr + ob, bp ? bp + o0 + ob : nullptr, out + ob, last);
          }
        }
      };
      const int64_t nrows = s.out[0] * s.out[1];
      if (!lowp_out) {
        float* dst[4];
        for (int64_t ob = 0; ob < nb; ++ob) dst[ob] = y + (n * O + o0 + ob) * plane;
        rows(0, nrows, dst, true);
        if (relu) relu_inplace(dst[0], nb * plane);  // the block's planes, still in cache
        continue;
      }
      // A bf16 result: R rows at a time in f32 scratch that stays in L1 (a whole 28 x 28
      // image, one 32 x 32 slice of a volume), given its ReLU and rounded as one run per
      // channel. Each channel's rows have a vector of slack after them: a row's last
      // vector may be stored whole (fwd_block).
      const int64_t R = std::clamp<int64_t>(kScratchFloats / (4 * s.out[2]), 1, nrows), stride = R * s.out[2] + 8;
      thread_local std::vector<float> scratch;
      if (scratch.size() < size_t(4 * stride)) scratch.resize(size_t(4 * stride));
      float* dst[4];
      for (int64_t ob = 0; ob < nb; ++ob) dst[ob] = scratch.data() + ob * stride;
      for (int64_t t0 = 0; t0 < nrows; t0 += R) {
        const int64_t len = std::min(R, nrows - t0);
        rows(t0, len, dst, false);
        for (int64_t ob = 0; ob < nb; ++ob) {
          if (relu) relu_inplace(dst[ob], len * s.out[2]);
          narrow_bf16(dst[ob], y16 + (n * O + o0 + ob) * plane + t0 * s.out[2], len * s.out[2]);
        }
      }
    }
}

// dw for NT taps (offsets `taps`) of one output channel, and db when `db` is set: gy is
// that channel's [N, plane] slice, read with a stride of `image_stride` between images.
// gy f32, or bf16 (autocast: the gradient of a bf16 result) widened as it is loaded.
inline __m256 load_tail(const float* g, int64_t, __m256i mask) { return _mm256_maskload_ps(g, mask); }
inline __m256 load_tail(const bf16* g, int64_t n, __m256i) {
  if (n == 8) return load8_bf16(g);
  bf16 tmp[8] = {};
  std::memcpy(tmp, g, size_t(n) * sizeof(bf16));
  return load8_bf16(tmp);
}

template <int NT, class G>
void bwdw_taps(const Padded& p, const int64_t* taps, const G* gy, int64_t image_stride, float* dw, float* db) {
  const Spatial& s = p.s;
  __m256 acc[NT], bacc = _mm256_setzero_ps();
#pragma GCC unroll 10
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const int64_t oW = s.out[2];
  const __m256i tail = lane_mask(oW - 8 * (p.vecs - 1));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t z = 0; z < s.out[0]; ++z)
      for (int64_t r = 0; r < s.out[1]; ++r) {
        const G* g = gy + n * image_stride + (z * s.out[1] + r) * oW;
        const float* in = p.data + n * p.image() + (z * p.Hp + r) * p.Wp;
        for (int64_t v = 0; v < p.vecs; ++v) {
          __m256 gv = v + 1 < p.vecs ? load8(g + 8 * v) : load_tail(g + 8 * v, oW - 8 * v, tail);
          if (db) bacc = _mm256_add_ps(bacc, gv);
#pragma GCC unroll 10
          for (int t = 0; t < NT; ++t) acc[t] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(in + taps[t] + 8 * v), acc[t]);
        }
      }
#pragma GCC unroll 10
  for (int t = 0; t < NT; ++t) dw[t] = hsum(acc[t]);
  if (db) *db = hsum(bacc);
}

template <class G> using BwdwFn = void (*)(const Padded&, const int64_t*, const G*, int64_t, float*, float*);
constexpr int kMaxGroup = 10;  // taps per pass over the gradient: NT accumulators + 2 in registers
template <class G>
constexpr BwdwFn<G> kBwdw[kMaxGroup] = {bwdw_taps<1, G>, bwdw_taps<2, G>, bwdw_taps<3, G>, bwdw_taps<4, G>,
                                        bwdw_taps<5, G>, bwdw_taps<6, G>, bwdw_taps<7, G>, bwdw_taps<8, G>,
                                        bwdw_taps<9, G>, bwdw_taps<10, G>};

void convolution_backward_weight_c1(ops::OpCall& c) {
  // A bf16 gradient is read as it is (widened in registers); x is padded into f32 anyway.
  const Tensor gy = c.in[0].contiguous(), x = c.in[1].to(DType::f32);
  const Shape& ws = c.attrs.ints("weight_shape");
  Spatial s = ops::conv_spatial(x.shape(), ws, c.attrs, "convolution_backward_weight");
  Padded p = pad_input(s, x);
  const int64_t O = ws[0], T = int64_t(p.taps.size()), plane = s.out_plane();
  // Equal groups of at most kMaxGroup taps (27 taps: three passes of 9).
  const int64_t passes = (T + kMaxGroup - 1) / kMaxGroup, per = (T + passes - 1) / passes;
  const bool lowp = gy.dtype() == DType::bf16;
  const void* g = gy.raw_data();
  float* dw = static_cast<float*>(c.out[0].raw_data());
  float* db = static_cast<float*>(c.out[1].raw_data());
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t o = 0; o < O; ++o)
    for (int64_t k = 0; k < passes; ++k) {
      int64_t t0 = k * per, nt = std::min(per, T - t0);
      float* b = k == 0 ? db + o : nullptr;
      if (lowp)
        kBwdw<bf16>[nt - 1](p, p.taps.data() + t0, static_cast<const bf16*>(g) + o * plane, O * plane, dw + o * T + t0, b);
      else
        kBwdw<float>[nt - 1](p, p.taps.data() + t0, static_cast<const float*>(g) + o * plane, O * plane, dw + o * T + t0, b);
    }
}

}  // namespace

void register_conv_c1_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::convolution, {"c1", c1_fwd_supports, convolution_c1});
  ops::add_kernel(t, ops::OpKind::convolution_backward_weight, {"c1", c1_bwdw_supports, convolution_backward_weight_c1});
}

}  // namespace qs::kernels
