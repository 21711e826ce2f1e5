// Reference pooling over each (n, c) plane, windows in (D, H, W):
//   max:      y[p] = max_{i in W(p)} x[i], idx[p] = the first argmax (NaN wins), flat in the plane
//             (u8 codes: the same max, no idx; the output keeps a channels-last input's layout)
//   avg:      y[p] = sum_{i in W(p)} x[i] / |W(p)|   (|W(p)| = k^3 with count_include_pad)
//   adaptive: W(p) = [floor(p in / out), ceil((p + 1) in / out)) per dim, y[p] = mean over W(p)
// where W(p) = [p stride - pad, p stride - pad + k) clipped to the input (torch.nn.functional).
// Backward: dx[i] = sum over windows p containing i of dy[p] (max: only at idx[p]; avg: / |W(p)|).
#include <cmath>
#include <limits>

#include "kernels/ref/ref_kernels.h"
#include "kernels/spatial.h"
#include "tensor/strided.h"

namespace qs::kernels {

using ops::Spatial;

namespace {

struct Window {
  ops::Dims3 lo, hi;  // clipped to the input
  int64_t full = 1;   // size before clipping (the count_include_pad divisor)
};

// fn(p, window) for every output position p of a sliding (or adaptive) window op.
template <class Fn> void for_each_window(const Spatial& g, bool adaptive, Fn&& fn) {
  int64_t p = 0;
  ops::Dims3 o;
  for (o[0] = 0; o[0] < g.out[0]; ++o[0])
    for (o[1] = 0; o[1] < g.out[1]; ++o[1])
      for (o[2] = 0; o[2] < g.out[2]; ++o[2], ++p) {
        Window w;
        for (size_t d = 0; d < 3; ++d) {
          int64_t lo = adaptive ? ops::adaptive_begin(o[d], g.in[d], g.out[d]) : o[d] * g.stride[d] - g.pad[d];
          int64_t hi = adaptive ? ops::adaptive_end(o[d], g.in[d], g.out[d]) : lo + g.k[d];
          w.full *= hi - lo;
          w.lo[d] = std::max<int64_t>(lo, 0);
          w.hi[d] = std::min(hi, g.in[d]);
        }
        fn(p, w);
      }
}

template <class Fn> void for_each_in(const Window& w, const Spatial& g, Fn&& fn) {
  for (int64_t d = w.lo[0]; d < w.hi[0]; ++d)
    for (int64_t h = w.lo[1]; h < w.hi[1]; ++h)
      for (int64_t x = w.lo[2]; x < w.hi[2]; ++x) fn((d * g.in[1] + h) * g.in[2] + x);
}

int64_t count(const Window& w) { return (w.hi[0] - w.lo[0]) * (w.hi[1] - w.lo[1]) * (w.hi[2] - w.lo[2]); }

double divisor(const Window& w, const Attrs& a, bool adaptive) {
  if (adaptive || !a.b("count_include_pad", true)) return double(count(w));
  return double(w.full);
}

// Average pooling (sliding or adaptive) forward.
void avg_forward(ops::OpCall& c, const Spatial& g, bool adaptive) {
  std::vector<double> X = c.in[0].to_vector(), Y(size_t(g.N * g.C * g.out_plane()));
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const double* x = &X[size_t(nc * g.in_plane())];
    double* y = &Y[size_t(nc * g.out_plane())];
    for_each_window(g, adaptive, [&](int64_t p, const Window& w) {
      double s = 0;
      for_each_in(w, g, [&](int64_t i) { s += x[i]; });
      y[p] = s / divisor(w, c.attrs, adaptive);
    });
  }
  store_vector(c.out[0], Y);
}

void avg_backward(ops::OpCall& c, const Spatial& g, bool adaptive) {
  std::vector<double> GY = c.in[0].to_vector(), DX(size_t(g.N * g.C * g.in_plane()), 0.0);
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const double* gy = &GY[size_t(nc * g.out_plane())];
    double* dx = &DX[size_t(nc * g.in_plane())];
    for_each_window(g, adaptive, [&](int64_t p, const Window& w) {
      double share = gy[p] / divisor(w, c.attrs, adaptive);
      for_each_in(w, g, [&](int64_t i) { dx[i] += share; });
    });
  }
  store_vector(c.out[0], DX);
}

// Values in logical (row-major) order into `out`, whatever its strides (a channels-last u8 output).
void store_logical(const Tensor& out, const std::vector<double>& v) {
  if (out.is_contiguous()) return store_vector(out, v);
  Tensor tmp = empty(out.shape(), out.dtype());
  store_vector(tmp, v);
  strided_copy(out, tmp);
}

}  // namespace

void max_pool_ref(ops::OpCall& c) {
  Spatial g = ops::pool_spatial(c.in[0].shape(), c.attrs, "max_pool", 2, 3);
  std::vector<double> X = c.in[0].to_vector(), Y(size_t(g.N * g.C * g.out_plane())), I(Y.size());
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const double* x = &X[size_t(nc * g.in_plane())];
    int64_t base = nc * g.out_plane();
    for_each_window(g, false, [&](int64_t p, const Window& w) {
      double best = -std::numeric_limits<double>::infinity();
      int64_t at = -1;
      for_each_in(w, g, [&](int64_t i) {
        if (at < 0 || x[i] > best || (std::isnan(x[i]) && !std::isnan(best))) {
          best = x[i];
          at = i;
        }
      });
      Y[size_t(base + p)] = best;
      I[size_t(base + p)] = double(at);
    });
  }
  store_logical(c.out[0], Y);
  if (c.out[1].numel() > 0) store_vector(c.out[1], I);  // u8 (inference only): no indices
}

void max_pool_backward_ref(ops::OpCall& c) {
  Spatial g = ops::pool_spatial(c.attrs.ints("input_shape"), c.attrs, "max_pool_backward", 2, 3);
  std::vector<double> GY = c.in[0].to_vector(), I = c.in[1].to_vector();
  std::vector<double> DX(size_t(g.N * g.C * g.in_plane()), 0.0);
  for (int64_t nc = 0; nc < g.N * g.C; ++nc)
    for (int64_t p = 0; p < g.out_plane(); ++p) {
      size_t o = size_t(nc * g.out_plane() + p);
      DX[size_t(nc * g.in_plane() + int64_t(I[o]))] += GY[o];
    }
  store_vector(c.out[0], DX);
}

void avg_pool_ref(ops::OpCall& c) { avg_forward(c, ops::pool_spatial(c.in[0].shape(), c.attrs, "avg_pool", 2, 3), false); }
void avg_pool_backward_ref(ops::OpCall& c) {
  avg_backward(c, ops::pool_spatial(c.attrs.ints("input_shape"), c.attrs, "avg_pool_backward", 2, 3), false);
}
void adaptive_avg_pool_ref(ops::OpCall& c) {
  avg_forward(c, ops::adaptive_spatial(c.in[0].shape(), c.attrs, "adaptive_avg_pool"), true);
}
void adaptive_avg_pool_backward_ref(ops::OpCall& c) {
  avg_backward(c, ops::adaptive_spatial(c.attrs.ints("input_shape"), c.attrs, "adaptive_avg_pool_backward"), true);
}

}  // namespace qs::kernels
