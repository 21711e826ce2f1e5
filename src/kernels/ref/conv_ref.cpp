// Reference convolution (cross-correlation, as torch.nn.functional.conv*d):
//   y[n, o, p] = b[o] + sum_{c < C/G} sum_t x[n, g C/G + c, p * stride - pad + t * dil] w[o, c, t]
// where g = o / (O/G) is the group of output channel o, p runs over output positions and
// t over kernel taps in (D, H, W); positions outside the input read the zero padding.
// The backward primitives are the same sum read the other way round:
//   dx[n, g C/G + c, i] = sum_{o in g} sum_{p, t : i = p stride - pad + t dil} dy[n, o, p] w[o, c, t]
//   dw[o, c, t] = sum_n sum_p dy[n, o, p] x[n, g C/G + c, p stride - pad + t dil],  db[o] = sum_{n, p} dy[n, o, p]
#include "kernels/ref/ref_kernels.h"
#include "kernels/spatial.h"

namespace qs::kernels {

using ops::for_each_tap;
using ops::Spatial;

void store_vector(const Tensor& out, const std::vector<double>& v) {
  for (size_t i = 0; i < v.size(); ++i) store_from_double(out.raw_data(), out.dtype(), int64_t(i), v[i]);
}

namespace {

// Channel bookkeeping of a grouped convolution.
struct Groups {
  int64_t O, G, Cg, Og;
  Groups(const Spatial& s, int64_t O_, int64_t G_) : O(O_), G(G_), Cg(s.C / G_), Og(O_ / G_) {}
  int64_t in_channel(int64_t o, int64_t c) const { return (o / Og) * Cg + c; }
};

}  // namespace

void convolution_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &b = c.in[2];
  Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "convolution");
  Groups gr(s, w.size(0), c.attrs.i("groups", 1));
  std::vector<double> X = x.to_vector(), W = w.to_vector(), B = b.defined() ? b.to_vector() : std::vector<double>();
  int64_t inP = s.in_plane(), outP = s.out_plane(), kP = s.k_plane();
  std::vector<double> Y(size_t(s.N * gr.O * outP), 0.0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < gr.O; ++o) {
      double* y = &Y[size_t((n * gr.O + o) * outP)];
      for (int64_t ci = 0; ci < gr.Cg; ++ci) {
        const double* xp = &X[size_t((n * s.C + gr.in_channel(o, ci)) * inP)];
        const double* wp = &W[size_t((o * gr.Cg + ci) * kP)];
        for_each_tap(s, [&](int64_t p, int64_t i, int64_t t) { y[p] += xp[i] * wp[t]; });
      }
      if (b.defined())
        for (int64_t p = 0; p < outP; ++p) y[p] += B[size_t(o)];
    }
  if (ops::conv_relu(c.attrs))
    for (double& v : Y) v = std::max(v, 0.0);
  store_vector(c.out[0], Y);
}

void convolution_backward_data_ref(ops::OpCall& c) {
  const Tensor &gy = c.in[0], &w = c.in[1];
  Spatial s = ops::conv_spatial(c.attrs.ints("input_shape"), w.shape(), c.attrs, "convolution_backward_data");
  Groups gr(s, w.size(0), c.attrs.i("groups", 1));
  std::vector<double> GY = gy.to_vector(), W = w.to_vector();
  int64_t inP = s.in_plane(), outP = s.out_plane(), kP = s.k_plane();
  std::vector<double> DX(size_t(s.N * s.C * inP), 0.0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < gr.O; ++o) {
      const double* g = &GY[size_t((n * gr.O + o) * outP)];
      for (int64_t ci = 0; ci < gr.Cg; ++ci) {
        double* dx = &DX[size_t((n * s.C + gr.in_channel(o, ci)) * inP)];
        const double* wp = &W[size_t((o * gr.Cg + ci) * kP)];
        for_each_tap(s, [&](int64_t p, int64_t i, int64_t t) { dx[i] += g[p] * wp[t]; });
      }
    }
  store_vector(c.out[0], DX);
}

void convolution_backward_weight_ref(ops::OpCall& c) {
  const Tensor &gy = c.in[0], &x = c.in[1];
  const Shape& ws = c.attrs.ints("weight_shape");
  Spatial s = ops::conv_spatial(x.shape(), ws, c.attrs, "convolution_backward_weight");
  Groups gr(s, ws[0], c.attrs.i("groups", 1));
  std::vector<double> GY = gy.to_vector(), X = x.to_vector();
  int64_t inP = s.in_plane(), outP = s.out_plane(), kP = s.k_plane();
  std::vector<double> DW(size_t(gr.O * gr.Cg * kP), 0.0), DB(size_t(gr.O), 0.0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < gr.O; ++o) {
      const double* g = &GY[size_t((n * gr.O + o) * outP)];
      for (int64_t p = 0; p < outP; ++p) DB[size_t(o)] += g[p];
      for (int64_t ci = 0; ci < gr.Cg; ++ci) {
        const double* xp = &X[size_t((n * s.C + gr.in_channel(o, ci)) * inP)];
        double* dw = &DW[size_t((o * gr.Cg + ci) * kP)];
        for_each_tap(s, [&](int64_t p, int64_t i, int64_t t) { dw[t] += g[p] * xp[i]; });
      }
    }
  store_vector(c.out[0], DW);
  store_vector(c.out[1], DB);
}

}  // namespace qs::kernels
