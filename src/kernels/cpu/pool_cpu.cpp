// Pooling, f32 on contiguous tensors: OpenMP over the (n, c) planes, each plane walked
// window by window (the same windows as the reference, src/kernels/ref/pool_ref.cpp).
// Backward kernels own a whole input plane each, so the scatters need no atomics. Max
// pooling and its backward also take bf16 (autocast's activations): each plane is widened
// into f32 scratch, run through the same loops and rounded once on the way out (a maximum
// of bf16 values is one of them, so the forward's values are exact); the backward of
// disjoint windows in bf16 writes each gradient's bits to its input element directly.
// Adaptive average pooling (the CNNs' global pooling) takes bf16 too, summed in f32 and
// rounded once, so autocast keeps the head's activations bf16 (no casts around it).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/spatial.h"

namespace qs::kernels {

namespace {

using ops::Spatial;

const char* pool_supports(const ops::OpCall& c) {
  if (c.in[0].dtype() != DType::f32) return "f32 only";
  for (auto& t : c.in)
    if (!t.is_contiguous()) return "non-contiguous operand";
  return nullptr;
}
// Max pooling and adaptive average pooling (autocast's activations pass through both).
const char* f32_or_bf16_supports(const ops::OpCall& c) {
  if (c.in[0].dtype() != DType::f32 && c.in[0].dtype() != DType::bf16) return "f32 or bf16 only";
  for (auto& t : c.in)
    if (!t.is_contiguous()) return "non-contiguous operand";
  return nullptr;
}

// Per-thread f32 scratch of n floats (bf16 planes).
float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < size_t(n)) buf.resize(size_t(n));
  return buf.data();
}

struct Box {
  int64_t lo[3], hi[3], full;
};

// The window of output (od, oh, ow), clipped to the input.
inline Box window(const Spatial& g, bool adaptive, int64_t od, int64_t oh, int64_t ow) {
  Box b;
  b.full = 1;
  int64_t o[3] = {od, oh, ow};
  for (size_t d = 0; d < 3; ++d) {
    int64_t lo = adaptive ? ops::adaptive_begin(o[d], g.in[d], g.out[d]) : o[d] * g.stride[d] - g.pad[d];
    int64_t hi = adaptive ? ops::adaptive_end(o[d], g.in[d], g.out[d]) : lo + g.k[d];
    b.full *= hi - lo;
    b.lo[d] = std::max<int64_t>(lo, 0);
    b.hi[d] = std::min(hi, g.in[d]);
  }
  return b;
}

// fn(p, box) for every output position of one plane.
template <class Fn> inline void each_window(const Spatial& g, bool adaptive, Fn&& fn) {
  int64_t p = 0;
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh)
      for (int64_t ow = 0; ow < g.out[2]; ++ow, ++p) fn(p, window(g, adaptive, od, oh, ow));
}

// The first maximum wins; NaN beats every number (torch.nn.functional.max_pool*).
inline bool better(float v, float best) { return v > best || (std::isnan(v) && !std::isnan(best)); }

// Windows two taps wide with stride 2 along W (the CNNs' 2x2 and 2x2x2 pools), without
// padding: eight outputs of one output row at a time. Each window row is a pair of
// adjacent floats, so two loads of 16 floats split into even and odd taps; the taps are
// visited in the reference's order (d, h, then w) with the same rule (first maximum
// wins, NaN beats numbers), and indices are kept as int32 lanes (plane < 2^31).
struct PairRows {
  int n = 0;
  int64_t off[64];  // offset of each window row from the window's origin
};

inline __m256 even_lanes(__m256 a, __m256 b) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
}
inline __m256 odd_lanes(__m256 a, __m256 b) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

// Up to 8 outputs (n of them) starting at column ow of the output row whose window
// origin is `origin` (flat input offset).
inline void max_pairs8(const float* x, const PairRows& rows, int64_t origin, int64_t n, float* y, int64_t* idx) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mlo = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(2 * n)), lane);
  const __m256i mhi = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(2 * n) - 8), lane);
  const __m256i step2 = _mm256_add_epi32(lane, lane);
  __m256 best = _mm256_setzero_ps();
  __m256i at = _mm256_setzero_si256();
  for (int r = 0; r < rows.n; ++r) {
    const float* p = x + origin + rows.off[r];
    __m256 a = n == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mlo);
    __m256 b = n == 8 ? _mm256_loadu_ps(p + 8) : _mm256_maskload_ps(p + 8, mhi);
    __m256i i0 = _mm256_add_epi32(_mm256_set1_epi32(int(origin + rows.off[r])), step2);
    __m256 taps[2] = {even_lanes(a, b), odd_lanes(a, b)};
    __m256i tap_idx[2] = {i0, _mm256_add_epi32(i0, _mm256_set1_epi32(1))};
    for (int t = 0; t < 2; ++t) {
      __m256 v = taps[t];
      __m256 take = r == 0 && t == 0 ? _mm256_castsi256_ps(_mm256_set1_epi32(-1))
                                     : _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ),
                                                    _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q),
                                                                  _mm256_cmp_ps(best, best, _CMP_ORD_Q)));
      best = _mm256_blendv_ps(best, v, take);
      at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at), _mm256_castsi256_ps(tap_idx[t]), take));
    }
  }
  __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(at)), hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(at, 1));
  // A short row's tail goes through a buffer: masked stores are microcoded (slow) on AMD.
  alignas(32) float yb[8];
  alignas(32) int64_t ib[8];
  bool full = n == 8;
  _mm256_storeu_ps(full ? y : yb, best);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(full ? idx : ib), lo);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>((full ? idx : ib) + 4), hi);
  if (!full) {
    std::memcpy(y, yb, size_t(n) * sizeof(float));
    std::memcpy(idx, ib, size_t(n) * sizeof(int64_t));
  }
}

bool pairs_fit(const Spatial& g) {
  bool unpadded = g.pad[0] == 0 && g.pad[1] == 0 && g.pad[2] == 0;
  return unpadded && g.k[2] == 2 && g.stride[2] == 2 && g.k[0] * g.k[1] <= 64 && g.in_plane() < (int64_t(1) << 31);
}

void max_pool_pairs(const float* x, const Spatial& g, float* y, int64_t* idx) {
  const int64_t H = g.in[1], W = g.in[2], OW = g.out[2];
  PairRows rows;
  for (int64_t kd = 0; kd < g.k[0]; ++kd)
    for (int64_t kh = 0; kh < g.k[1]; ++kh) rows.off[rows.n++] = (kd * H + kh) * W;
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh) {
      const int64_t o = (od * g.out[1] + oh) * OW, origin = (od * g.stride[0] * H + oh * g.stride[1]) * W;
      for (int64_t ow = 0; ow < OW; ow += 8)
        max_pairs8(x, rows, origin + 2 * ow, std::min<int64_t>(8, OW - ow), y + o + ow, idx + o + ow);
    }
}

// The outputs whose windows lie wholly inside the input, per dim [lo, hi): all of them
// without padding; with padding, all but a border (a ResNet stem's 3 x 3, stride 2, pad 1
// pool: all but the first row and column). Padded pools went window by window before:
// the ResNet-18 detector's stem pool ([8, 64, 64, 64], Zen 5, 2 threads) took 7.5 ms a
// call, now 2.1.
struct Interior {
  int64_t lo[3], hi[3];
  bool empty() const { return hi[0] <= lo[0] || hi[1] <= lo[1] || hi[2] <= lo[2]; }
};
Interior interior(const Spatial& g) {
  Interior r;
  for (size_t d = 0; d < 3; ++d) {
    r.lo[d] = std::min(g.out[d], (g.pad[d] + g.stride[d] - 1) / g.stride[d]);
    const int64_t last = g.in[d] + g.pad[d] - g.k[d];  // the last origin (padded) that fits
    r.hi[d] = last < 0 ? 0 : std::min(g.out[d], last / g.stride[d] + 1);
  }
  return r;
}

// The interior's outputs, one output row at a time: taps in window order, each a branchless
// SIMD pass over the row's interior part (random data would mispredict a branch per tap).
void max_pool_interior(const float* x, const Spatial& g, const Interior& in, float* y, int64_t* idx) {
  const int64_t H = g.in[1], W = g.in[2], OW = g.out[2], sw = g.stride[2];
  const int64_t ow0 = in.lo[2], n = in.hi[2] - in.lo[2];
  for (int64_t od = in.lo[0]; od < in.hi[0]; ++od)
    for (int64_t oh = in.lo[1]; oh < in.hi[1]; ++oh) {
      float* yr = y + (od * g.out[1] + oh) * OW + ow0;
      int64_t* ir = idx + (od * g.out[1] + oh) * OW + ow0;
      const int64_t base = ((od * g.stride[0] - g.pad[0]) * H + oh * g.stride[1] - g.pad[1]) * W + ow0 * sw - g.pad[2];
      for (int64_t j = 0; j < n; ++j) {
        yr[j] = x[base + j * sw];
        ir[j] = base + j * sw;
      }
      for (int64_t kd = 0; kd < g.k[0]; ++kd)
        for (int64_t kh = 0; kh < g.k[1]; ++kh)
          for (int64_t kw = 0; kw < g.k[2]; ++kw) {
            const int64_t off = base + (kd * H + kh) * W + kw;
            if (off == base) continue;
#pragma omp simd
            for (int64_t j = 0; j < n; ++j) {
              int64_t i = off + j * sw;
              float v = x[i], cur = yr[j];
              bool take = v > cur || (v != v && cur == cur);
              yr[j] = take ? v : cur;
              ir[j] = take ? i : ir[j];
            }
          }
    }
}

// One output by its window, clipped to the input (padding never wins).
inline void max_pool_window(const float* xp, const Spatial& g, int64_t p, const Box& b, float* yp, int64_t* ip) {
  const int64_t H = g.in[1], W = g.in[2];
  float best = -std::numeric_limits<float>::infinity();
  int64_t at = -1;
  for (int64_t d = b.lo[0]; d < b.hi[0]; ++d)
    for (int64_t h = b.lo[1]; h < b.hi[1]; ++h)
      for (int64_t w = b.lo[2]; w < b.hi[2]; ++w) {
        int64_t i = (d * H + h) * W + w;
        if (at < 0 || better(xp[i], best)) best = xp[i], at = i;
      }
  yp[p] = best;
  ip[p] = at;
}

// One plane: x -> y, idx. Padded windows: the interior by the SIMD rows, the border one
// window at a time.
void max_pool_plane(const float* xp, const Spatial& g, bool pairs, const Interior& in, float* yp, int64_t* ip) {
  if (pairs) return max_pool_pairs(xp, g, yp, ip);
  if (!in.empty()) max_pool_interior(xp, g, in, yp, ip);
  if (in.lo[0] == 0 && in.lo[1] == 0 && in.lo[2] == 0 && in.hi[0] == g.out[0] && in.hi[1] == g.out[1] &&
      in.hi[2] == g.out[2])
    return;  // no border (unpadded windows)
  int64_t p = 0;
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh) {
      const bool row_inside = od >= in.lo[0] && od < in.hi[0] && oh >= in.lo[1] && oh < in.hi[1];
      for (int64_t ow = 0; ow < g.out[2]; ++ow, ++p) {
        if (row_inside && ow >= in.lo[2] && ow < in.hi[2]) continue;
        max_pool_window(xp, g, p, window(g, false, od, oh, ow), yp, ip);
      }
    }
}

void max_pool_cpu(ops::OpCall& c) {
  Spatial g = ops::pool_spatial(c.in[0].shape(), c.attrs, "max_pool", 2, 3);
  const bool lowp = c.in[0].dtype() == DType::bf16;
  const int64_t inP = g.in_plane(), outP = g.out_plane();
  int64_t* idx = c.out[1].data_ptr<int64_t>();
  const void* x = c.in[0].raw_data();
  void* y = c.out[0].raw_data();
  const bool pairs = pairs_fit(g);
  const Interior in = interior(g);
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    int64_t* ip = idx + nc * outP;
    if (!lowp) {
      max_pool_plane(static_cast<const float*>(x) + nc * inP, g, pairs, in, static_cast<float*>(y) + nc * outP, ip);
      continue;
    }
    float* buf = scratch(inP + outP);
    widen_bf16(static_cast<const bf16*>(x) + nc * inP, buf, inP);
    max_pool_plane(buf, g, pairs, in, buf + inP, ip);
    narrow_bf16(buf + inP, static_cast<bf16*>(y) + nc * outP, outP);
  }
}

// Windows that cannot overlap (stride >= extent in every dim, the CNNs' 2 x 2 and 2 x 2 x 2
// pools): each input element is the maximum of at most one window.
bool disjoint(const Spatial& g) {
  for (size_t d = 0; d < 3; ++d)
    if (g.stride[d] < g.dil[d] * (g.k[d] - 1) + 1) return false;
  return true;
}

// The bf16 bits of 0 + v rounded to bf16 (what the f32 sum makes of one gradient): v,
// except -0 -> +0 and a NaN made quiet.
inline uint16_t plus_zero_bf16(uint16_t v) {
  if (v == 0x8000) return 0;
  return (v & 0x7fff) > 0x7f80 ? uint16_t(v | 0x40) : v;
}

void max_pool_backward_cpu(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  const bool lowp = out.dtype() == DType::bf16;
  int64_t planes = out.size(0) * out.size(1), inP = out.numel() / std::max<int64_t>(1, planes);
  int64_t outP = c.in[0].numel() / std::max<int64_t>(1, planes);
  const int64_t* idx = c.in[1].data_ptr<int64_t>();
  const void* gy = c.in[0].raw_data();
  void* dx = out.raw_data();
  if (lowp && disjoint(ops::pool_spatial(c.attrs.ints("input_shape"), c.attrs, "max_pool_backward", 2, 3))) {
    // bf16, one gradient per input element at most: its bits go straight to dx (no f32
    // plane to clear, fill and round: half the bytes written, none read back).
    const uint16_t* g = static_cast<const uint16_t*>(gy);
    uint16_t* d = static_cast<uint16_t*>(dx);
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < planes; ++nc) {
      uint16_t* dp = d + nc * inP;
      const uint16_t* gp = g + nc * outP;
      const int64_t* ip = idx + nc * outP;
      std::memset(dp, 0, size_t(inP) * sizeof(uint16_t));
      for (int64_t p = 0; p < outP; ++p) dp[ip[p]] = plus_zero_bf16(gp[p]);
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < planes; ++nc) {
    float* buf = lowp ? scratch(inP + outP) : nullptr;
    float* d = lowp ? buf : static_cast<float*>(dx) + nc * inP;
    const float* g = lowp ? buf + inP : static_cast<const float*>(gy) + nc * outP;
    if (lowp) widen_bf16(static_cast<const bf16*>(gy) + nc * outP, buf + inP, outP);
    std::memset(d, 0, size_t(inP) * sizeof(float));
    const int64_t* ip = idx + nc * outP;
    for (int64_t p = 0; p < outP; ++p) d[ip[p]] += g[p];
    if (lowp) narrow_bf16(d, static_cast<bf16*>(dx) + nc * inP, inP);
  }
}

template <class T> void avg_forward(ops::OpCall& c, const Spatial& g, bool adaptive) {
  const T* x = static_cast<const T*>(c.in[0].raw_data());
  T* y = static_cast<T*>(c.out[0].raw_data());
  bool include_pad = !adaptive && c.attrs.b("count_include_pad", true);
  int64_t H = g.in[1], W = g.in[2];
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const T* xp = x + nc * g.in_plane();
    T* yp = y + nc * g.out_plane();
    each_window(g, adaptive, [&](int64_t p, const Box& b) {
      float s = 0;
      for (int64_t d = b.lo[0]; d < b.hi[0]; ++d)
        for (int64_t h = b.lo[1]; h < b.hi[1]; ++h) {
          const T* row = xp + (d * H + h) * W;
#pragma omp simd reduction(+ : s)
          for (int64_t w = b.lo[2]; w < b.hi[2]; ++w) s += to_f32(row[w]);
        }
      int64_t n = include_pad ? b.full : (b.hi[0] - b.lo[0]) * (b.hi[1] - b.lo[1]) * (b.hi[2] - b.lo[2]);
      from_f32(yp + p, s / float(n));
    });
  }
}

// bf16: each plane's sums in f32 scratch (windows may overlap), rounded once.
template <class T> void avg_backward(ops::OpCall& c, const Spatial& g, bool adaptive) {
  const T* gy = static_cast<const T*>(c.in[0].raw_data());
  T* dx = static_cast<T*>(c.out[0].raw_data());
  bool include_pad = !adaptive && c.attrs.b("count_include_pad", true);
  int64_t H = g.in[1], W = g.in[2];
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    float* d = std::is_same_v<T, float> ? reinterpret_cast<float*>(dx + nc * g.in_plane()) : scratch(g.in_plane());
    std::memset(d, 0, size_t(g.in_plane()) * sizeof(float));
    const T* gp = gy + nc * g.out_plane();
    each_window(g, adaptive, [&](int64_t p, const Box& b) {
      int64_t n = include_pad ? b.full : (b.hi[0] - b.lo[0]) * (b.hi[1] - b.lo[1]) * (b.hi[2] - b.lo[2]);
      float share = to_f32(gp[p]) / float(n);
      for (int64_t z = b.lo[0]; z < b.hi[0]; ++z)
        for (int64_t h = b.lo[1]; h < b.hi[1]; ++h) {
          float* row = d + (z * H + h) * W;
#pragma omp simd
          for (int64_t w = b.lo[2]; w < b.hi[2]; ++w) row[w] += share;
        }
    });
    if constexpr (std::is_same_v<T, bf16>) narrow_bf16(d, dx + nc * g.in_plane(), g.in_plane());
  }
}

void avg_pool_cpu(ops::OpCall& c) {
  avg_forward<float>(c, ops::pool_spatial(c.in[0].shape(), c.attrs, "avg_pool", 2, 3), false);
}
void avg_pool_backward_cpu(ops::OpCall& c) {
  avg_backward<float>(c, ops::pool_spatial(c.attrs.ints("input_shape"), c.attrs, "avg_pool_backward", 2, 3), false);
}
// Global pooling (every output size 1, the CNN's head): one contiguous sum per plane
// instead of a window walk row by row (7-wide rows leave SIMD loops mostly idle). f32, or
// bf16 (autocast's activations) summed in f32 and rounded once.
bool global(const Spatial& g) { return g.out_plane() == 1; }

template <class T> void adaptive_avg_pool_t(ops::OpCall& c) {
  Spatial g = ops::adaptive_spatial(c.in[0].shape(), c.attrs, "adaptive_avg_pool");
  if (!global(g)) return avg_forward<T>(c, g, true);
  const T* x = static_cast<const T*>(c.in[0].raw_data());
  T* y = static_cast<T*>(c.out[0].raw_data());
  const int64_t P = g.in_plane();
#pragma omp parallel for schedule(static) if (g.N * g.C * P > 32768)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const T* xp = x + nc * P;
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < P; ++i) s += to_f32(xp[i]);
    from_f32(y + nc, s / float(P));
  }
}
template <class T> void adaptive_avg_pool_backward_t(ops::OpCall& c) {
  Spatial g = ops::adaptive_spatial(c.attrs.ints("input_shape"), c.attrs, "adaptive_avg_pool_backward");
  if (!global(g)) return avg_backward<T>(c, g, true);
  const T* gy = static_cast<const T*>(c.in[0].raw_data());
  T* dx = static_cast<T*>(c.out[0].raw_data());
  const int64_t P = g.in_plane();
#pragma omp parallel for schedule(static) if (g.N * g.C * P > 32768)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    T* d = dx + nc * P;
    T share;
    from_f32(&share, to_f32(gy[nc]) / float(P));
    std::fill(d, d + P, share);
  }
}
void adaptive_avg_pool_cpu(ops::OpCall& c) {
  c.in[0].dtype() == DType::bf16 ? adaptive_avg_pool_t<bf16>(c) : adaptive_avg_pool_t<float>(c);
}
void adaptive_avg_pool_backward_cpu(ops::OpCall& c) {
  c.in[0].dtype() == DType::bf16 ? adaptive_avg_pool_backward_t<bf16>(c) : adaptive_avg_pool_backward_t<float>(c);
}

}  // namespace

void register_pool_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::max_pool, {"cpu", f32_or_bf16_supports, max_pool_cpu});
  ops::add_kernel(t, ops::OpKind::max_pool_backward, {"cpu", f32_or_bf16_supports, max_pool_backward_cpu});
  ops::add_kernel(t, ops::OpKind::avg_pool, {"cpu", pool_supports, avg_pool_cpu});
  ops::add_kernel(t, ops::OpKind::avg_pool_backward, {"cpu", pool_supports, avg_pool_backward_cpu});
  ops::add_kernel(t, ops::OpKind::adaptive_avg_pool, {"cpu", f32_or_bf16_supports, adaptive_avg_pool_cpu});
  ops::add_kernel(t, ops::OpKind::adaptive_avg_pool_backward, {"cpu", f32_or_bf16_supports, adaptive_avg_pool_backward_cpu});
}

}  // namespace qs::kernels
