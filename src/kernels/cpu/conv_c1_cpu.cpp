// Convolution with a single input channel (a network's first layer on images or volumes:
// Fashion-MNIST's 1 -> 32, a CT volume's 1 -> 16), forward and backward-weights, f32,
// stride 1, no dilation, no groups, any kernel size and padding, 1 to 3 spatial dims;
// bf16 operands (autocast) are widened to f32, and a bf16 result (out_dtype) is rounded
// once: in registers (16 lanes) or from L1-sized f32 scratch, a run of rows at a time (8).
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
// where xpad is the input copied once per call (bf16 widened on the way) into zero-padded
// rows (thread-local scratch) that are wide enough for whole vectors, so no load of it needs
// a mask.
//
// Two builds of both loops, chosen by backend::avx512_loops: 8 lanes (AVX2, 16 registers:
// four channels of two vectors forward, up to 10 taps of one channel a pass backward) and 16
// lanes (AVX-512, 32 registers: eight channels forward; backward, a 3 x 3 x 3 kernel's taps
// in passes of 9 for two channels, a 3 x 3 kernel's 9 for two, the gradient's images shared
// out in a fixed number of parts). Measured on Zen 5, 2 threads, these layers of the two
// CNN benchmarks in f32 / bf16: forward 0.72 / 0.87 ms -> 0.29 / 0.35 ms (2-D, 128 images),
// 1.54 / 1.93 -> 0.62 / 0.69 ms (3-D, 8 volumes); backward-weights 1.08 / 1.12 -> 0.47 / 0.40
// ms and 2.31 / 2.65 -> 1.23 / 1.23 ms. The 16-lane build avoids AVX-512 masked loads and
// stores except at the very end of a buffer: on Zen 5 they stalled the loops (a masked load
// of each gradient row's last vector cost the 3-D backward half its time). Where oneDNN
// multiplies bf16 natively, bf16 backward-weights (autocast's) multiplies by vdpbf16ps
// straight from a bf16 padded input: 0.40 -> 0.31 ms (2-D) and 1.23 -> 0.79 ms (3-D).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <iostream>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/simd_avx512.h"
#include "kernels/spatial.h"
#include "util/verbose.h"

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

// The padded input of every image: rows of `Wp` values (Wp covers the last output
// vector's reach at `lanes` values a vector), `Hp` rows per plane, `Dp` planes per image;
// f32 (`data`), or bf16 as given (`data16`, for the bf16 dot products).
struct Padded {
  Spatial s;
  int64_t Dp, Hp, Wp, vecs;  // vecs: vectors per output row
  int64_t image() const { return Dp * Hp * Wp; }
  std::vector<int64_t> taps;  // offset of each tap (kd, kh, kw order) from a row's start
  const float* data = nullptr;
  const bf16* data16 = nullptr;
};

// x [N, 1, D, H, W] (any strides; the real spatial dims are the last nsp of 3), f32 or
// bf16, into zero-padded rows of D (bf16 widened to f32 exactly; bf16 kept as it is).
template <class T, class D> void pad_images(const Spatial& s, const Tensor& x, const Padded& p, D* dst) {
  const T* src = static_cast<const T*>(x.raw_data());
  int64_t sn = x.stride(0), sd = s.nsp == 3 ? x.stride(2) : 0, sh = s.nsp >= 2 ? x.stride(x.dim() - 2) : 0,
          sw = x.stride(x.dim() - 1);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n) {
    D* img = dst + n * p.image();
    std::fill(img, img + p.image(), D{});
    for (int64_t d = 0; d < s.in[0]; ++d)
      for (int64_t h = 0; h < s.in[1]; ++h) {
        D* row = img + ((d + s.pad[0]) * p.Hp + h + s.pad[1]) * p.Wp + s.pad[2];
        const T* in = src + n * sn + d * sd + h * sh;
        if constexpr (std::is_same_v<T, D>) {
          if (sw == 1) {
            std::memcpy(row, in, size_t(s.in[2]) * sizeof(T));
            continue;
          }
          for (int64_t w = 0; w < s.in[2]; ++w) row[w] = in[w * sw];
        } else if (sw == 1) {
          widen_bf16(reinterpret_cast<const bf16*>(in), row, s.in[2]);
        } else {
          for (int64_t w = 0; w < s.in[2]; ++w) row[w] = to_f32(in[w * sw]);
        }
      }
  }
}

// bf16 x padded as bf16 (keep16) or any x as f32.
Padded pad_input(const Spatial& s, const Tensor& x, int64_t lanes, bool keep16 = false) {
  static thread_local std::vector<float> buf;
  static thread_local std::vector<bf16> buf16;
  Padded p;
  p.s = s;
  p.vecs = (s.out[2] + lanes - 1) / lanes;
  p.Dp = s.in[0] + 2 * s.pad[0];
  p.Hp = s.in[1] + 2 * s.pad[1];
  p.Wp = p.vecs * lanes + s.k[2] - 1;
  size_t need = size_t(s.N * p.image());
  if (keep16) {
    if (buf16.size() < need) buf16.resize(need);
    pad_images<bf16>(s, x, p, buf16.data());
    p.data16 = buf16.data();
  } else {
    if (buf.size() < need) buf.resize(need);
    if (x.dtype() == DType::bf16)
      pad_images<bf16>(s, x, p, buf.data());
    else
      pad_images<float>(s, x, p, buf.data());
    p.data = buf.data();
  }
  for (int64_t kd = 0; kd < s.k[0]; ++kd)
    for (int64_t kh = 0; kh < s.k[1]; ++kh)
      for (int64_t kw = 0; kw < s.k[2]; ++kw) p.taps.push_back((kd * p.Hp + kh) * p.Wp + kw);
  return p;
}

// Forward for OB output channels and XC vectors of one output row: out[ob] (row starts,
// OB of them), w[ob] (each o's taps), in = the padded row where the window starts.
// A vector that would reach past the row is stored whole when the floats it reaches are
// later rows of the same plane (they are rewritten later): `room`, the floats writable from
// the row's start, says so; else through a copy: AMD's masked stores are microcoded and slow.
template <int OB, int XC>
inline void fwd_block(const float* in, const int64_t* taps, int64_t T, const float* const* w, const float* bias,
                      float* const* out, int64_t x0, int64_t oW, int64_t room) {
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
      if (x + 8 <= room) {
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
             int64_t room) {
  const int64_t oW = p.s.out[2], T = int64_t(p.taps.size());
  const int64_t* taps = p.taps.data();
  int64_t v = 0;
  for (; v + 2 <= p.vecs; v += 2) fwd_block<OB, 2>(in, taps, T, w, bias, out, 8 * v, oW, room);
  if (v < p.vecs) fwd_block<OB, 1>(in, taps, T, w, bias, out, 8 * v, oW, room);
}

// The 16-lane build (AVX-512, 32 vector registers): up to eight channels of two vectors
// at a time, the result (f32 or bf16, with its ReLU) stored straight from the
// accumulators; a row's last vector is stored whole where `room` allows (as the 8-lane
// block), else under a lane mask: masked stores are slow on Zen 5 too (the 2-D f32
// forward took 0.45 ms with every store masked, 0.28 with whole stores where the mask was
// full).
template <int OB, int XC, class Y>
QS_TARGET_AVX512 inline void fwd_block16(const float* in, const int64_t* taps, int64_t T, const float* const* w,
                                         const float* bias, Y* const* out, int64_t x0, int64_t oW, bool relu,
                                         int64_t room) {
  __m512 acc[OB][XC];
#pragma GCC unroll 8
  for (int ob = 0; ob < OB; ++ob)
#pragma GCC unroll 2
    for (int c = 0; c < XC; ++c) acc[ob][c] = _mm512_set1_ps(bias ? bias[ob] : 0.f);
  for (int64_t t = 0; t < T; ++t) {
    const float* r = in + taps[t] + x0;
    __m512 v[XC];
#pragma GCC unroll 2
    for (int c = 0; c < XC; ++c) v[c] = _mm512_loadu_ps(r + 16 * c);
#pragma GCC unroll 8
    for (int ob = 0; ob < OB; ++ob) {
      __m512 wv = _mm512_set1_ps(w[ob][t]);
#pragma GCC unroll 2
      for (int c = 0; c < XC; ++c) acc[ob][c] = _mm512_fmadd_ps(wv, v[c], acc[ob][c]);
    }
  }
#pragma GCC unroll 8
  for (int ob = 0; ob < OB; ++ob)
#pragma GCC unroll 2
    for (int c = 0; c < XC; ++c) {
      const int64_t x = x0 + 16 * c;
      __m512 a = relu ? _mm512_max_ps(acc[ob][c], _mm512_setzero_ps()) : acc[ob][c];  // relu_inplace's max
      store16(out[ob] + x, a, x + 16 <= room ? __mmask16(0xffff) : lanes16(oW - x));
    }
}

template <int OB, class Y>
QS_TARGET_AVX512 void fwd_row16(const float* in, const Padded& p, const float* const* w, const float* bias,
                                Y* const* out, bool relu, int64_t room) {
  const int64_t oW = p.s.out[2], T = int64_t(p.taps.size());
  const int64_t* taps = p.taps.data();
  int64_t v = 0;
  for (; v + 2 <= p.vecs; v += 2) fwd_block16<OB, 2>(in, taps, T, w, bias, out, 16 * v, oW, relu, room);
  if (v < p.vecs) fwd_block16<OB, 1>(in, taps, T, w, bias, out, 16 * v, oW, relu, room);
}

// Every output row of image n for channels o0 .. o0 + nb - 1 (nb <= 8) into y [N, O, plane].
template <class Y>
QS_TARGET_AVX512 void fwd_image16(const Padded& p, int64_t n, int64_t o0, int64_t nb, int64_t O, const float* wp,
                                  const float* bp, Y* y, bool relu) {
  const Spatial& s = p.s;
  const int64_t T = int64_t(p.taps.size()), plane = s.out_plane();
  const float* wr[8];
  Y* out[8];
  for (int64_t ob = 0; ob < nb; ++ob) wr[ob] = wp + (o0 + ob) * T;
  const int64_t nrows = s.out[0] * s.out[1];
  for (int64_t t = 0; t < nrows; ++t) {
    const int64_t z = t / s.out[1], r = t % s.out[1];
    const int64_t room = (nrows - t) * s.out[2];
    const float* in = p.data + n * p.image() + (z * p.Hp + r) * p.Wp;
    for (int64_t ob = 0; ob < nb; ++ob) out[ob] = y + (n * O + o0 + ob) * plane + t * s.out[2];
    const float* b = bp ? bp + o0 : nullptr;
    int64_t ob = 0;
    if (nb == 8) {
      fwd_row16<8>(in, p, wr, b, out, relu, room);
      ob = 8;
    } else if (nb >= 4) {
      fwd_row16<4>(in, p, wr, b, out, relu, room);
      ob = 4;
    }
    for (; ob < nb; ++ob) fwd_row16<1>(in, p, wr + ob, b ? b + ob : nullptr, out + ob, relu, room);
  }
}

template <class Y>
void forward16(const Padded& p, int64_t O, const float* wp, const float* bp, Y* y, bool relu) {
  const int64_t blocks = (O + 7) / 8;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < p.s.N; ++n)
    for (int64_t blk = 0; blk < blocks; ++blk)
      fwd_image16(p, n, blk * 8, std::min<int64_t>(8, O - blk * 8), O, wp, bp, y, relu);
}

// The 16-lane builds, where oneDNN runs AVX-512 (QS_VERBOSE=dispatch names the choice).
bool c1_wide() {
  static const bool wide = backend::avx512_loops("single-input-channel convolution (c1) rows");
  return wide;
}
// bf16 backward-weights by vdpbf16ps, where oneDNN multiplies bf16 natively.
bool c1_dot_bf16() {
  static const bool dot = [] {
    const bool yes = backend::native_bf16();
    if (util::verbose("dispatch"))
      std::cerr << "qs dispatch: c1 bf16 backward-weights -> " << (yes ? "vdpbf16ps" : "widened to f32") << "\n";
    return yes;
  }();
  return dot;
}

void convolution_c1(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  const Tensor w = c.in[1].to(DType::f32).contiguous(), &b = c.in[2];
  Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "convolution");
  const bool wide = c1_wide();
  Padded p = pad_input(s, x, wide ? 16 : 8);
  Tensor bias = b.defined() ? b.contiguous() : Tensor();
  const float* wp = static_cast<const float*>(w.raw_data());
  const float* bp = bias.defined() ? static_cast<const float*>(bias.raw_data()) : nullptr;
  const bool lowp_out = c.out[0].dtype() == DType::bf16;
  float* y = lowp_out ? nullptr : static_cast<float*>(c.out[0].raw_data());
  bf16* y16 = lowp_out ? static_cast<bf16*>(c.out[0].raw_data()) : nullptr;
  const int64_t O = w.size(0), T = int64_t(p.taps.size()), plane = s.out_plane(), blocks = (O + 3) / 4;
  const bool relu = ops::conv_relu(c.attrs);
  if (wide) return lowp_out ? forward16(p, O, wp, bp, y16, relu) : forward16(p, O, wp, bp, y, relu);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      int64_t o0 = blk * 4, nb = std::min<int64_t>(4, O - o0);
      const float* wr[4];
      float* out[4];
      for (int64_t ob = 0; ob < nb; ++ob) wr[ob] = wp + (o0 + ob) * T;
      // Output rows t0 .. t0 + R - 1 (flat over z and y) of the block's channels, `slack`
      // floats writable after the last.
      auto rows = [&](int64_t t0, int64_t R, float* const* dst, int64_t slack) {
        for (int64_t t = t0; t < t0 + R; ++t) {
          const int64_t z = t / s.out[1], r = t % s.out[1];
          const float* in = p.data + n * p.image() + (z * p.Hp + r) * p.Wp;
          for (int64_t ob = 0; ob < nb; ++ob) out[ob] = dst[ob] + (t - t0) * s.out[2];
          const int64_t room = (t0 + R - t) * s.out[2] + slack;
          if (nb == 4) {
            fwd_row<4>(in, p, wr, bp ? bp + o0 : nullptr, out, room);
          } else {
            for (int64_t ob = 0; ob < nb; ++ob) fwd_row<1>(in, p, wr + ob, bp ? bp + o0 + ob : nullptr, out + ob, room);
          }
        }
      };
      const int64_t nrows = s.out[0] * s.out[1];
      if (!lowp_out) {
        float* dst[4];
        for (int64_t ob = 0; ob < nb; ++ob) dst[ob] = y + (n * O + o0 + ob) * plane;
        rows(0, nrows, dst, 0);
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
        rows(t0, len, dst, 8);
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

// The 16-lane build: NT taps of OC output channels at once (OC * NT accumulators, as many
// as AVX-512's 32 registers hold beside each channel's gradient vector and bias sum: 9 taps
// for two channels), over images n0 .. n1 - 1. gy[oc] is channel oc's [N, plane] slice,
// `end` the end of the gradient; dw[oc] gets its NT sums, db[oc] its gradient's sum when db
// is set. A row's last vector has its lanes past the row zeroed (the padded input there is
// finite). Passes of up to 12 taps: one pass of all 27 taps of a 3 x 3 x 3 kernel for one
// channel (29 registers, 28 loads for 27 products) ran slower than three passes of 9 for
// two (Zen 5, 3-D f32 layer: 2.1 against 1.3-1.6 ms).
constexpr int kMaxGroup16 = 12;
constexpr int c1_channels16(int nt) { return nt <= 5 ? 4 : nt <= 7 ? 3 : 2; }  // nt <= kMaxGroup16

template <int NT, class G>
QS_TARGET_AVX512 void bwdw_taps16(const Padded& p, const int64_t* taps, const G* const* gy, const G* end, int64_t image_stride,
                                  int64_t n0, int64_t n1, float* const* dw, float* const* db) {
  constexpr int OC = c1_channels16(NT);
  const Spatial& s = p.s;
  __m512 acc[OC][NT], bacc[OC];
#pragma GCC unroll 4
  for (int oc = 0; oc < OC; ++oc) {
    bacc[oc] = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int t = 0; t < NT; ++t) acc[oc][t] = _mm512_setzero_ps();
  }
  const int64_t oW = s.out[2];
  const __mmask16 tail = lanes16(oW - 16 * (p.vecs - 1));
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t z = 0; z < s.out[0]; ++z)
      for (int64_t r = 0; r < s.out[1]; ++r) {
        const int64_t row = n * image_stride + (z * s.out[1] + r) * oW;
        const float* in = p.data + n * p.image() + (z * p.Hp + r) * p.Wp;
        for (int64_t v = 0; v < p.vecs; ++v) {
          __m512 gv[OC];
#pragma GCC unroll 4
          for (int oc = 0; oc < OC; ++oc) {
            gv[oc] = v + 1 < p.vecs ? load16(gy[oc] + row + 16 * v) : load16_tail(gy[oc] + row + 16 * v, end, tail);
            if (db) bacc[oc] = _mm512_add_ps(bacc[oc], gv[oc]);
          }
#pragma GCC unroll 12
          for (int t = 0; t < NT; ++t) {
            const __m512 xv = _mm512_loadu_ps(in + taps[t] + 16 * v);
#pragma GCC unroll 4
            for (int oc = 0; oc < OC; ++oc) acc[oc][t] = _mm512_fmadd_ps(gv[oc], xv, acc[oc][t]);
          }
        }
      }
#pragma GCC unroll 4
  for (int oc = 0; oc < OC; ++oc) {
#pragma GCC unroll 12
    for (int t = 0; t < NT; ++t) dw[oc][t] = _mm512_reduce_add_ps(acc[oc][t]);
    if (db) *db[oc] = _mm512_reduce_add_ps(bacc[oc]);
  }
}

// The same with bf16 products where the CPU has AVX512-BF16 (bf16 gradient and input, as
// autocast gives them): vdpbf16ps multiplies 32 adjacent positions of the gradient by the
// same 32 of the input, in bf16 pairs (exact products, summed in f32), into 16 f32 lanes:
// half the instructions and loads of the 16-lane loop, from a bf16 padded input (half its
// bytes). Rows go 32 positions a vector (p.vecs counts those); db sums the gradient times 1.
template <int NT>
QS_TARGET_AVX512_BF16 void bwdw_taps_dp(const Padded& p, const int64_t* taps, const bf16* const* gy, const bf16* end,
                                        int64_t image_stride, int64_t n0, int64_t n1, float* const* dw,
                                        float* const* db) {
  constexpr int OC = c1_channels16(NT);
  const Spatial& s = p.s;
  __m512 acc[OC][NT], bacc[OC];
#pragma GCC unroll 4
  for (int oc = 0; oc < OC; ++oc) {
    bacc[oc] = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int t = 0; t < NT; ++t) acc[oc][t] = _mm512_setzero_ps();
  }
  const __m512i ones = _mm512_set1_epi16(0x3f80);  // bf16 1.0
  const int64_t oW = s.out[2];
  const __mmask32 tail = lanes32(oW - 32 * (p.vecs - 1));
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t z = 0; z < s.out[0]; ++z)
      for (int64_t r = 0; r < s.out[1]; ++r) {
        const int64_t row = n * image_stride + (z * s.out[1] + r) * oW;
        const bf16* in = p.data16 + n * p.image() + (z * p.Hp + r) * p.Wp;
        for (int64_t v = 0; v < p.vecs; ++v) {
          __m512i gv[OC];
#pragma GCC unroll 4
          for (int oc = 0; oc < OC; ++oc) {
            const bf16* g = gy[oc] + row + 32 * v;
            gv[oc] = v + 1 < p.vecs ? _mm512_loadu_si512(g) : load32_bf16_tail(g, end, tail);
            if (db) bacc[oc] = _mm512_dpbf16_ps(bacc[oc], (__m512bh)gv[oc], (__m512bh)ones);
          }
#pragma GCC unroll 12
          for (int t = 0; t < NT; ++t) {
            const __m512i xv = _mm512_loadu_si512(in + taps[t] + 32 * v);
#pragma GCC unroll 4
            for (int oc = 0; oc < OC; ++oc) acc[oc][t] = _mm512_dpbf16_ps(acc[oc][t], (__m512bh)gv[oc], (__m512bh)xv);
          }
        }
      }
#pragma GCC unroll 4
  for (int oc = 0; oc < OC; ++oc) {
#pragma GCC unroll 12
    for (int t = 0; t < NT; ++t) dw[oc][t] = _mm512_reduce_add_ps(acc[oc][t]);
    if (db) *db[oc] = _mm512_reduce_add_ps(bacc[oc]);
  }
}

template <class G>
using Bwdw16Fn = void (*)(const Padded&, const int64_t*, const G* const*, const G*, int64_t, int64_t, int64_t, float* const*,
                          float* const*);
template <class G, size_t... I> constexpr auto bwdw16_table(std::index_sequence<I...>) {
  return std::array<Bwdw16Fn<G>, sizeof...(I)>{bwdw_taps16<int(I) + 1, G>...};
}
template <class G> constexpr auto kBwdw16 = bwdw16_table<G>(std::make_index_sequence<kMaxGroup16>{});
template <size_t... I> constexpr auto bwdw_dp_table(std::index_sequence<I...>) {
  return std::array<Bwdw16Fn<bf16>, sizeof...(I)>{bwdw_taps_dp<int(I) + 1>...};
}
constexpr auto kBwdwDp = bwdw_dp_table(std::make_index_sequence<kMaxGroup16>{});

// dw [O, T] and db [O] by the 16-lane build. Tasks are a pass over a group of taps for a
// group of channels and a share of the images; each writes its own partial sums, added
// in a fixed order at the end, so the result does not depend on the thread count.
template <class G>
void backward_weight16(const Padded& p, const G* gy, int64_t O, float* dw, float* db, const Bwdw16Fn<G>* kernels) {
  const Spatial& s = p.s;
  const int64_t T = int64_t(p.taps.size()), plane = s.out_plane();
  const int64_t passes = (T + kMaxGroup16 - 1) / kMaxGroup16, per = (T + passes - 1) / passes;
  struct Task {
    int64_t t0, nt, o0, noc, split;
  };
  std::vector<Task> base;
  for (int64_t k = 0; k < passes; ++k) {
    const int64_t t0 = k * per, nt = std::min(per, T - t0), oc = c1_channels16(int(nt));
    for (int64_t o0 = 0; o0 < O; o0 += oc) base.push_back({t0, nt, o0, std::min(oc, O - o0), 0});
  }
  // Enough tasks for every thread (a fixed number, not the thread count's).
  const int64_t splits = std::clamp<int64_t>((32 + int64_t(base.size()) - 1) / int64_t(base.size()), 1, s.N);
  std::vector<Task> tasks;
  for (int64_t sp = 0; sp < splits; ++sp)
    for (Task t : base) tasks.push_back({t.t0, t.nt, t.o0, t.noc, sp});
  std::vector<float> part(size_t(splits * O * (T + 1)));  // [split][O][T], then [split][O] bias sums
  float* pdb = part.data() + splits * O * T;
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Task& t = tasks[i];
    float trash[kMaxGroup16 + 1];
    const G* g[4];
    float* w[4];
    float* b[4];
    for (int64_t oc = 0; oc < 4; ++oc) {
      const bool real = oc < t.noc;  // a group short of channels repeats its first one into trash
      const int64_t o = t.o0 + (real ? oc : 0);
      g[oc] = gy + o * plane;
      w[oc] = real ? part.data() + (t.split * O + o) * T + t.t0 : trash;
      b[oc] = real ? pdb + t.split * O + o : trash + kMaxGroup16;
    }
    const int64_t n0 = s.N * t.split / splits, n1 = s.N * (t.split + 1) / splits;
    kernels[size_t(t.nt - 1)](p, p.taps.data() + t.t0, g, gy + s.N * O * plane, O * plane, n0, n1, w,
                                 t.t0 == 0 ? b : nullptr);
  }
  for (int64_t i = 0; i < O * T; ++i) {
    float sum = 0.f;
    for (int64_t sp = 0; sp < splits; ++sp) sum += part[size_t(sp * O * T + i)];
    dw[i] = sum;
  }
  for (int64_t o = 0; o < O; ++o) {
    float sum = 0.f;
    for (int64_t sp = 0; sp < splits; ++sp) sum += pdb[sp * O + o];
    db[o] = sum;
  }
}

void convolution_backward_weight_c1(ops::OpCall& c) {
  // A bf16 gradient is read as it is (widened in registers); x is padded into f32 anyway.
  const Tensor gy = c.in[0].contiguous(), &x = c.in[1];
  const Shape& ws = c.attrs.ints("weight_shape");
  Spatial s = ops::conv_spatial(x.shape(), ws, c.attrs, "convolution_backward_weight");
  const bool wide = c1_wide(), lowp = gy.dtype() == DType::bf16;
  if (wide && lowp && x.dtype() == DType::bf16 && c1_dot_bf16()) {
    Padded p = pad_input(s, x, 32, true);
    return backward_weight16(p, static_cast<const bf16*>(gy.raw_data()), ws[0], static_cast<float*>(c.out[0].raw_data()),
                             static_cast<float*>(c.out[1].raw_data()), kBwdwDp.data());
  }
  Padded p = pad_input(s, x, wide ? 16 : 8);
  const int64_t O = ws[0], T = int64_t(p.taps.size()), plane = s.out_plane();
  // Equal groups of at most kMaxGroup taps (27 taps: three passes of 9).
  const int64_t passes = (T + kMaxGroup - 1) / kMaxGroup, per = (T + passes - 1) / passes;
  const void* g = gy.raw_data();
  float* dw = static_cast<float*>(c.out[0].raw_data());
  float* db = static_cast<float*>(c.out[1].raw_data());
  if (wide)
    return lowp ? backward_weight16(p, static_cast<const bf16*>(g), O, dw, db, kBwdw16<bf16>.data())
                : backward_weight16(p, static_cast<const float*>(g), O, dw, db, kBwdw16<float>.data());
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
