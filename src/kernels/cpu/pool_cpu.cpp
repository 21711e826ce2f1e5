// Pooling, f32 on contiguous tensors: OpenMP over the (n, c) planes, each plane walked
// window by window (the same windows as the reference, src/kernels/ref/pool_ref.cpp).
// Backward kernels own a whole input plane each, so the scatters need no atomics.
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/cpu_kernels.h"
#include "ops/spatial.h"

namespace qs::kernels {

namespace {

using ops::Spatial;

const char* pool_supports(const ops::OpCall& c) {
  if (c.in[0].dtype() != DType::f32) return "f32 only";
  for (auto& t : c.in)
    if (!t.is_contiguous()) return "non-contiguous operand";
  return nullptr;
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

// The CNN's 2x2, stride 2 window on a 2-D plane: four taps, branchless selects.
void max_pool_2x2(const float* x, int64_t W, int64_t OH, int64_t OW, float* y, int64_t* idx) {
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      int64_t i = 2 * oh * W + 2 * ow;
      int64_t cand[3] = {i + 1, i + W, i + W + 1};
      float best = x[i];
      int64_t at = i;
      for (int64_t j : cand) {
        float v = x[j];
        bool take = v > best || (v != v && best == best);
        best = take ? v : best;
        at = take ? j : at;
      }
      y[oh * OW + ow] = best;
      idx[oh * OW + ow] = at;
    }
}

// Any window without padding (every tap inside the input), one output row at a time:
// taps in window order, each a branchless SIMD pass over the row (random data would
// mispredict a branch per tap).
void max_pool_unpadded(const float* x, const Spatial& g, float* y, int64_t* idx) {
  const int64_t H = g.in[1], W = g.in[2], OW = g.out[2], sw = g.stride[2];
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh) {
      float* yr = y + (od * g.out[1] + oh) * OW;
      int64_t* ir = idx + (od * g.out[1] + oh) * OW;
      const int64_t base = ((od * g.stride[0]) * H + oh * g.stride[1]) * W;
      for (int64_t ow = 0; ow < OW; ++ow) {
        yr[ow] = x[base + ow * sw];
        ir[ow] = base + ow * sw;
      }
      for (int64_t kd = 0; kd < g.k[0]; ++kd)
        for (int64_t kh = 0; kh < g.k[1]; ++kh)
          for (int64_t kw = 0; kw < g.k[2]; ++kw) {
            const int64_t off = base + (kd * H + kh) * W + kw;
            if (off == base) continue;
#pragma omp simd
            for (int64_t ow = 0; ow < OW; ++ow) {
              int64_t i = off + ow * sw;
              float v = x[i], cur = yr[ow];
              bool take = v > cur || (v != v && cur == cur);
              yr[ow] = take ? v : cur;
              ir[ow] = take ? i : ir[ow];
            }
          }
    }
}

void max_pool_cpu(ops::OpCall& c) {
  Spatial g = ops::pool_spatial(c.in[0].shape(), c.attrs, "max_pool", 2, 3);
  const float* x = c.in[0].data_ptr<float>();
  float* y = c.out[0].data_ptr<float>();
  int64_t* idx = c.out[1].data_ptr<int64_t>();
  int64_t H = g.in[1], W = g.in[2];
  bool unpadded = g.pad[0] == 0 && g.pad[1] == 0 && g.pad[2] == 0;
  bool plane_2x2 = unpadded && g.in[0] == 1 && g.k[1] == 2 && g.k[2] == 2 && g.stride[1] == 2 && g.stride[2] == 2;
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const float* xp = x + nc * g.in_plane();
    float* yp = y + nc * g.out_plane();
    int64_t* ip = idx + nc * g.out_plane();
    if (plane_2x2) {
      max_pool_2x2(xp, W, g.out[1], g.out[2], yp, ip);
      continue;
    }
    if (unpadded) {
      max_pool_unpadded(xp, g, yp, ip);
      continue;
    }
    each_window(g, false, [&](int64_t p, const Box& b) {
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
    });
  }
}

void max_pool_backward_cpu(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  int64_t planes = out.size(0) * out.size(1), inP = out.numel() / std::max<int64_t>(1, planes);
  int64_t outP = c.in[0].numel() / std::max<int64_t>(1, planes);
  const float* gy = c.in[0].data_ptr<float>();
  const int64_t* idx = c.in[1].data_ptr<int64_t>();
  float* dx = out.data_ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < planes; ++nc) {
    float* d = dx + nc * inP;
    std::memset(d, 0, size_t(inP) * sizeof(float));
    const float* g = gy + nc * outP;
    const int64_t* ip = idx + nc * outP;
    for (int64_t p = 0; p < outP; ++p) d[ip[p]] += g[p];
  }
}

void avg_forward(ops::OpCall& c, const Spatial& g, bool adaptive) {
  const float* x = c.in[0].data_ptr<float>();
  float* y = c.out[0].data_ptr<float>();
  bool include_pad = !adaptive && c.attrs.b("count_include_pad", true);
  int64_t H = g.in[1], W = g.in[2];
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const float* xp = x + nc * g.in_plane();
    float* yp = y + nc * g.out_plane();
    each_window(g, adaptive, [&](int64_t p, const Box& b) {
      float s = 0;
      for (int64_t d = b.lo[0]; d < b.hi[0]; ++d)
        for (int64_t h = b.lo[1]; h < b.hi[1]; ++h) {
          const float* row = xp + (d * H + h) * W;
#pragma omp simd reduction(+ : s)
          for (int64_t w = b.lo[2]; w < b.hi[2]; ++w) s += row[w];
        }
      int64_t n = include_pad ? b.full : (b.hi[0] - b.lo[0]) * (b.hi[1] - b.lo[1]) * (b.hi[2] - b.lo[2]);
      yp[p] = s / float(n);
    });
  }
}

void avg_backward(ops::OpCall& c, const Spatial& g, bool adaptive) {
  const float* gy = c.in[0].data_ptr<float>();
  float* dx = c.out[0].data_ptr<float>();
  bool include_pad = !adaptive && c.attrs.b("count_include_pad", true);
  int64_t H = g.in[1], W = g.in[2];
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    float* d = dx + nc * g.in_plane();
    std::memset(d, 0, size_t(g.in_plane()) * sizeof(float));
    const float* gp = gy + nc * g.out_plane();
    each_window(g, adaptive, [&](int64_t p, const Box& b) {
      int64_t n = include_pad ? b.full : (b.hi[0] - b.lo[0]) * (b.hi[1] - b.lo[1]) * (b.hi[2] - b.lo[2]);
      float share = gp[p] / float(n);
      for (int64_t z = b.lo[0]; z < b.hi[0]; ++z)
        for (int64_t h = b.lo[1]; h < b.hi[1]; ++h) {
          float* row = d + (z * H + h) * W;
#pragma omp simd
          for (int64_t w = b.lo[2]; w < b.hi[2]; ++w) row[w] += share;
        }
    });
  }
}

void avg_pool_cpu(ops::OpCall& c) { avg_forward(c, ops::pool_spatial(c.in[0].shape(), c.attrs, "avg_pool", 2, 3), false); }
void avg_pool_backward_cpu(ops::OpCall& c) {
  avg_backward(c, ops::pool_spatial(c.attrs.ints("input_shape"), c.attrs, "avg_pool_backward", 2, 3), false);
}
void adaptive_avg_pool_cpu(ops::OpCall& c) {
  avg_forward(c, ops::adaptive_spatial(c.in[0].shape(), c.attrs, "adaptive_avg_pool"), true);
}
void adaptive_avg_pool_backward_cpu(ops::OpCall& c) {
  avg_backward(c, ops::adaptive_spatial(c.attrs.ints("input_shape"), c.attrs, "adaptive_avg_pool_backward"), true);
}

}  // namespace

void register_pool_cpu(std::vector<ops::OpDef>& t) {
  ops::add_kernel(t, ops::OpKind::max_pool, {"cpu", pool_supports, max_pool_cpu});
  ops::add_kernel(t, ops::OpKind::max_pool_backward, {"cpu", pool_supports, max_pool_backward_cpu});
  ops::add_kernel(t, ops::OpKind::avg_pool, {"cpu", pool_supports, avg_pool_cpu});
  ops::add_kernel(t, ops::OpKind::avg_pool_backward, {"cpu", pool_supports, avg_pool_backward_cpu});
  ops::add_kernel(t, ops::OpKind::adaptive_avg_pool, {"cpu", pool_supports, adaptive_avg_pool_cpu});
  ops::add_kernel(t, ops::OpKind::adaptive_avg_pool_backward, {"cpu", pool_supports, adaptive_avg_pool_backward_cpu});
}

}  // namespace qs::kernels
