// Reference batch normalisation (Ioffe & Szegedy 2015; torch.nn.functional.batch_norm),
// per channel c over the M = N * spatial values x_i of that channel:
//   training: mean = sum x_i / M, var = sum (x_i - mean)^2 / M (biased), invstd = 1 / sqrt(var + eps)
//   eval:     mean = running_mean[c], invstd = 1 / sqrt(running_var[c] + eps)
//   y_i = (x_i - mean) invstd w[c] + b[c]     (w = 1, b = 0 when undefined)
// Backward with xhat_i = (x_i - mean) invstd:
//   db = sum dy_i, dw = sum dy_i xhat_i
//   training: dx_i = w invstd (dy_i - db / M - xhat_i dw / M);  eval: dx_i = w invstd dy_i
// Fused ReLU (attr relu): the forward returns max(y_i, 0); its backward is given that
// output (input 5) and first replaces dy_i by 0 wherever the output is not positive.
#include <cmath>

#include "kernels/ref/ref_kernels.h"

namespace qs::kernels {

namespace {
// Flat indices of channel c's values in a contiguous [N, C, P] view.
struct ChannelIter {
  int64_t N, C, P;
  explicit ChannelIter(const Shape& s) : N(s[0]), C(s[1]), P(shape_numel(s) / std::max<int64_t>(1, s[0] * s[1])) {}
  template <class Fn> void each(int64_t c, Fn&& fn) const {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < P; ++p) fn(size_t((n * C + c) * P + p));
  }
  double M() const { return double(N * P); }
};
double at_or(const std::vector<double>& v, int64_t c, double dflt) { return v.empty() ? dflt : v[size_t(c)]; }
std::vector<double> values(const Tensor& t) { return t.defined() ? t.to_vector() : std::vector<double>(); }
}  // namespace

void batch_norm_ref(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  ChannelIter it(x.shape());
  std::vector<double> X = x.to_vector(), W = values(c.in[1]), B = values(c.in[2]), RM = values(c.in[3]),
                      RV = values(c.in[4]);
  std::vector<double> Y(X.size()), mean(size_t(it.C)), invstd(size_t(it.C));
  bool training = c.attrs.b("training");
  double eps = c.attrs.f("eps");
  for (int64_t ch = 0; ch < it.C; ++ch) {
    double m = 0, v = 0;
    if (training) {
      it.each(ch, [&](size_t i) { m += X[i]; });
      m /= it.M();
      it.each(ch, [&](size_t i) { v += (X[i] - m) * (X[i] - m); });
      v /= it.M();
    } else {
      m = RM[size_t(ch)];
      v = RV[size_t(ch)];
    }
    double is = 1.0 / std::sqrt(v + eps), w = at_or(W, ch, 1.0), b = at_or(B, ch, 0.0);
    it.each(ch, [&](size_t i) { Y[i] = (X[i] - m) * is * w + b; });
    if (c.attrs.b("relu", false)) it.each(ch, [&](size_t i) { Y[i] = std::max(Y[i], 0.0); });
    mean[size_t(ch)] = m;
    invstd[size_t(ch)] = is;
  }
  store_vector(c.out[0], Y);
  store_vector(c.out[1], mean);
  store_vector(c.out[2], invstd);
}

void batch_norm_backward_ref(ops::OpCall& c) {
  ChannelIter it(c.in[1].shape());
  std::vector<double> GY = c.in[0].to_vector(), X = c.in[1].to_vector(), W = values(c.in[2]),
                      mean = c.in[3].to_vector(), invstd = c.in[4].to_vector();
  std::vector<double> DX(X.size()), DW(size_t(it.C)), DB(size_t(it.C));
  bool training = c.attrs.b("training");
  if (c.in[5].defined()) {
    std::vector<double> Y = c.in[5].to_vector();
    for (size_t i = 0; i < GY.size(); ++i) GY[i] = Y[i] > 0 ? GY[i] : 0.0;
  }
  for (int64_t ch = 0; ch < it.C; ++ch) {
    double m = mean[size_t(ch)], is = invstd[size_t(ch)], w = at_or(W, ch, 1.0), sg = 0, sgx = 0;
    it.each(ch, [&](size_t i) {
      sg += GY[i];
      sgx += GY[i] * (X[i] - m) * is;
    });
    it.each(ch, [&](size_t i) {
      double xhat = (X[i] - m) * is;
      DX[i] = training ? w * is * (GY[i] - sg / it.M() - xhat * sgx / it.M()) : w * is * GY[i];
    });
    DW[size_t(ch)] = sgx;
    DB[size_t(ch)] = sg;
  }
  store_vector(c.out[0], DX);
  store_vector(c.out[1], DW);
  store_vector(c.out[2], DB);
}

}  // namespace qs::kernels
