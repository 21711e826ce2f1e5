// Reference normalisations over the trailing N = prod(normalized_shape) elements of x,
// row by row, in double (Ba et al. 2016; Zhang & Sennrich 2019):
//   layer_norm: y = (x - mean) / sqrt(mean((x - mean)^2) + eps) * w + b
//   rms_norm:   y = x / sqrt(mean(x^2) + eps) * w
#include <cmath>

#include "kernels/ref/ref_kernels.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {
void norm_rows_ref(ops::OpCall& c, bool rms) {
  const Tensor& x = c.in[0];
  const Tensor& w = c.in[1];
  const Tensor& b = rms ? Tensor() : c.in[2];
  Tensor& y = c.out[0];
  double eps = c.attrs.f("eps");
  int64_t n = shape_numel(c.attrs.ints("normalized_shape"));
  int64_t m = n == 0 ? 0 : x.numel() / n;
  StridedIndex ix(x.shape(), x.strides());
  auto param = [&](const Tensor& t, int64_t j, double dflt) {
    if (!t.defined()) return dflt;
    return load_as_double(t.raw_data(), t.dtype(), StridedIndex(t.shape(), t.strides()).offset(j));
  };
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t r = 0; r < m; ++r) {
    double mean = 0, ss = 0;
    for (int64_t j = 0; j < n; ++j) v[size_t(j)] = load_as_double(x.raw_data(), x.dtype(), ix.offset(r * n + j));
    if (!rms) {
      for (double e : v) mean += e;
      mean /= double(n);
    }
    for (double e : v) ss += (e - mean) * (e - mean);
    double rstd = 1.0 / std::sqrt(ss / double(n) + eps);
    for (int64_t j = 0; j < n; ++j) {
      double out = (v[size_t(j)] - mean) * rstd * param(w, j, 1.0) + param(b, j, 0.0);
      store_from_double(y.raw_data(), y.dtype(), r * n + j, out);
    }
  }
}
}  // namespace

void layer_norm_ref(ops::OpCall& c) { norm_rows_ref(c, false); }
void rms_norm_ref(ops::OpCall& c) { norm_rows_ref(c, true); }

}  // namespace qs::kernels
