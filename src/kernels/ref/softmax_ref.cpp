// Reference softmax and log_softmax over one dim, in double:
//   softmax(x)_k     = exp(x_k - m) / sum_j exp(x_j - m),  m = max_j x_j
//   log_softmax(x)_k = x_k - m - log sum_j exp(x_j - m)
// Each line along `dim` is read through the input's strides; the output is contiguous.
#include <cmath>

#include "kernels/ref/ref_kernels.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {
void softmax_lines(ops::OpCall& c, bool log) {
  const Tensor& x = c.in[0];
  Tensor& y = c.out[0];
  int64_t dim = x.dim() == 0 ? 0 : wrap_dim(c.attrs.i("dim"), x.dim(), "softmax");
  int64_t n = x.dim() == 0 ? 1 : x.shape()[size_t(dim)];
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[size_t(d)];
  int64_t lines = n == 0 ? 0 : x.numel() / n;
  StridedIndex ix(x.shape(), x.strides());
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t l = 0; l < lines; ++l) {
    int64_t o = l / inner, i = l % inner;
    auto lin = [&](int64_t k) { return (o * n + k) * inner + i; };  // logical row-major index
    double m = -INFINITY, s = 0;
    for (int64_t k = 0; k < n; ++k) {
      v[size_t(k)] = load_as_double(x.raw_data(), x.dtype(), ix.offset(lin(k)));
      m = std::max(m, v[size_t(k)]);
    }
    for (int64_t k = 0; k < n; ++k) s += std::exp(v[size_t(k)] - m);
    for (int64_t k = 0; k < n; ++k) {
      double r = log ? v[size_t(k)] - m - std::log(s) : std::exp(v[size_t(k)] - m) / s;
      store_from_double(y.raw_data(), y.dtype(), lin(k), r);
    }
  }
}
}  // namespace

void softmax_ref(ops::OpCall& c) { softmax_lines(c, false); }
void log_softmax_ref(ops::OpCall& c) { softmax_lines(c, true); }

}  // namespace qs::kernels
