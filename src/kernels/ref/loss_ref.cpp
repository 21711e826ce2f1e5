// Reference nll_loss and dropout.
#include <cmath>

#include "kernels/dropout_mask.h"
#include "kernels/ref/ref_kernels.h"
#include "tensor/strided.h"

namespace qs::kernels {

// nll_loss, logp seen as [N, C, D] and target as [N, D] (D = product of the extra dims):
//   loss[n, d] = -w[t] logp[n, t, d] with t = target[n, d] (0 where t == ignore_index)
//   mean: sum loss / sum w[t] over targets not ignored;  sum: sum loss;  none: loss
void nll_loss_ref(ops::OpCall& c) {
  const Tensor &lp = c.in[0], &target = c.in[1], &w = c.in[2];
  int64_t ignore = c.attrs.i("ignore_index");
  const std::string& red = c.attrs.s("reduction");
  int64_t C = lp.dim() == 1 ? lp.shape()[0] : lp.shape()[1];
  int64_t N = lp.dim() == 1 ? 1 : lp.shape()[0];
  int64_t D = N * C == 0 ? 0 : lp.numel() / (N * C);
  StridedIndex lix(lp.shape(), lp.strides()), tix(target.shape(), target.strides());
  double total = 0, wsum = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) {
      int64_t t = int64_t(load_as_double(target.raw_data(), target.dtype(), tix.offset(n * D + d)));
      double loss = 0;
      if (t != ignore) {
        QS_CHECK(t >= 0 && t < C, "nll_loss: target {} is out of range [0, {}) (ignore_index is {})", t, C, ignore);
        double wt = w.defined() ? load_as_double(w.raw_data(), w.dtype(), StridedIndex(w.shape(), w.strides()).offset(t)) : 1.0;
        loss = -wt * load_as_double(lp.raw_data(), lp.dtype(), lix.offset((n * C + t) * D + d));
        wsum += wt;
      }
      total += loss;
      if (red == "none") store_from_double(c.out[0].raw_data(), c.out[0].dtype(), n * D + d, loss);
    }
  if (red == "sum") store_from_double(c.out[0].raw_data(), c.out[0].dtype(), 0, total);
  if (red == "mean") store_from_double(c.out[0].raw_data(), c.out[0].dtype(), 0, total / wsum);
}

// y = x * mask / (1 - p), mask[i] = dropout_keep(seed, i, p) over row-major indices.
void dropout_ref(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  double p = c.attrs.f("p");
  uint64_t seed = uint64_t(c.attrs.i("seed"));
  StridedIndex ix(x.shape(), x.strides());
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = load_as_double(x.raw_data(), x.dtype(), ix.offset(i));
    store_from_double(c.out[0].raw_data(), c.out[0].dtype(), i, dropout_keep(seed, i, p) ? v / (1.0 - p) : 0.0);
  }
}

}  // namespace qs::kernels
