// Reference interpolation (torch.nn.functional.interpolate). Along each spatial dim an
// output coordinate o reads input taps i0, i1 with weights w0, w1 (ops::interp_taps):
//   nearest:  i0 = min(floor(o step), in - 1), w0 = 1
//   linear:   src = align_corners ? o (in - 1) / (out - 1) : max(0, (o + 0.5) step - 0.5),
//             i0 = floor(src), i1 = min(i0 + 1, in - 1), w1 = src - i0, w0 = 1 - w1
// with step = 1 / scale when a scale was given, else in / out. The n-linear value is
// the sum over the 2^n corners of the product of the per-dim weights; the backward
// scatters dy with the same weights.
#include "kernels/ref/ref_kernels.h"
#include "kernels/spatial.h"

namespace qs::kernels {

namespace {

using ops::Spatial;
using ops::Tap;

struct Interp {
  Spatial g;
  std::vector<Tap> taps[3];
  explicit Interp(const Shape& x, const Attrs& a) : g(ops::interp_spatial(x, a)) {
    bool nearest = a.s("mode") == "nearest", align = a.b("align_corners", false);
    double scale = a.f("scale", 0.0);
    for (int d = 0; d < 3; ++d)
      taps[d] = ops::interp_taps(g.in[size_t(d)], g.out[size_t(d)], nearest, align, d >= 3 - g.nsp ? scale : 0.0);
  }
  // fn(p, i, weight) for every output position p and each of its corner taps i.
  template <class Fn> void each(Fn&& fn) const {
    int64_t p = 0;
    for (int64_t od = 0; od < g.out[0]; ++od)
      for (int64_t oh = 0; oh < g.out[1]; ++oh)
        for (int64_t ow = 0; ow < g.out[2]; ++ow, ++p) {
          const Tap &td = taps[0][size_t(od)], &th = taps[1][size_t(oh)], &tw = taps[2][size_t(ow)];
          for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b)
              for (int e = 0; e < 2; ++e) {
                double w = (a ? td.w1 : td.w0) * (b ? th.w1 : th.w0) * (e ? tw.w1 : tw.w0);
                if (w == 0.0) continue;
                int64_t i = ((a ? td.i1 : td.i0) * g.in[1] + (b ? th.i1 : th.i0)) * g.in[2] + (e ? tw.i1 : tw.i0);
                fn(p, i, w);
              }
        }
  }
};

}  // namespace

void interpolate_ref(ops::OpCall& c) {
  Interp it(c.in[0].shape(), c.attrs);
  const Spatial& g = it.g;
  std::vector<double> X = c.in[0].to_vector(), Y(size_t(g.N * g.C * g.out_plane()), 0.0);
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const double* x = &X[size_t(nc * g.in_plane())];
    double* y = &Y[size_t(nc * g.out_plane())];
    it.each([&](int64_t p, int64_t i, double w) { y[p] += w * x[i]; });
  }
  store_vector(c.out[0], Y);
}

void interpolate_backward_ref(ops::OpCall& c) {
  Interp it(c.attrs.ints("input_shape"), c.attrs);
  const Spatial& g = it.g;
  std::vector<double> GY = c.in[0].to_vector(), DX(size_t(g.N * g.C * g.in_plane()), 0.0);
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const double* gy = &GY[size_t(nc * g.out_plane())];
    double* dx = &DX[size_t(nc * g.in_plane())];
    it.each([&](int64_t p, int64_t i, double w) { dx[i] += w * gy[p]; });
  }
  store_vector(c.out[0], DX);
}

}  // namespace qs::kernels
