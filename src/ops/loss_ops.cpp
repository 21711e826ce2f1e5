// Losses: the nll_loss primitive (fused scatter backward) and the composites
// cross_entropy, mse_loss and binary_cross_entropy_with_logits.
#include "kernels/elementwise_fns.h"
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "qiusuo/autograd.h"

namespace qs::ops {

using kernels::visit_float;

namespace {

void check_reduction(const std::string& r, const char* op) {
  QS_CHECK(r == "mean" || r == "sum" || r == "none", "{}: reduction must be 'mean', 'sum' or 'none', got '{}'", op, r);
}

// logp [N, C, d...] (or [C]); target [N, d...] (or 0-d) int64; weight [C] or undefined.
std::vector<TensorSpec> nll_loss_meta(const OpCall& c) {
  const Tensor &lp = c.in[0], &target = c.in[1], &w = c.in[2];
  QS_CHECK(lp.is_floating_point(), "nll_loss: log-probabilities must be floating point, got {}", dtype_name(lp.dtype()));
  QS_CHECK(target.dtype() == DType::i64, "nll_loss: target must be int64 class indices, got {}", dtype_name(target.dtype()));
  QS_CHECK(lp.dim() >= 1, "nll_loss: log-probabilities must be [C], [N, C] or [N, C, d1, ...], got a 0-d tensor");
  Shape want;
  if (lp.dim() >= 2) {
    want = {lp.shape()[0]};
    want.insert(want.end(), lp.shape().begin() + 2, lp.shape().end());
  }
  QS_CHECK(target.shape() == want, "nll_loss: target has shape {}, expected {} for log-probabilities {}",
           shape_str(target.shape()), shape_str(want), shape_str(lp.shape()));
  int64_t C = lp.dim() == 1 ? lp.shape()[0] : lp.shape()[1];
  if (w.defined())
    QS_CHECK(w.shape() == Shape{C} && w.dtype() == lp.dtype(), "nll_loss: weight must be {} [{}], got {} {}",
             dtype_name(lp.dtype()), C, dtype_name(w.dtype()), shape_str(w.shape()));
  const std::string& red = c.attrs.s("reduction");
  check_reduction(red, "nll_loss");
  return {{red == "none" ? want : Shape{}, lp.dtype()}};
}

// d loss / d logp[n, t, d] = -w[t] * (g[n, d] | g | g / sum w), 0 elsewhere.
std::vector<Tensor> nll_loss_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  if (!c.needs_grad[0]) return {Tensor(), Tensor(), Tensor()};
  const Tensor &lp = c.in[0], &w = c.in[2];
  std::vector<double> wv = w.defined() ? w.to_vector() : std::vector<double>();
  std::vector<double> tv = c.in[1].to_vector(), gv = g[0].contiguous().to_vector();
  int64_t ignore = c.attrs.i("ignore_index");
  const std::string& red = c.attrs.s("reduction");
  int64_t C = lp.dim() == 1 ? lp.shape()[0] : lp.shape()[1];
  int64_t N = lp.dim() == 1 ? 1 : lp.shape()[0], D = N * C == 0 ? 0 : lp.numel() / (N * C);
  double wsum = 0;
  for (double t : tv)
    if (int64_t(t) != ignore) wsum += wv.empty() ? 1.0 : wv[size_t(t)];
  Tensor gx = zeros(lp.shape(), lp.dtype());
  visit_float(lp.dtype(), "nll_loss backward", [&]<class T>() {
    T* p = gx.data_ptr<T>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) {
        int64_t t = int64_t(tv[size_t(n * D + d)]);
        if (t == ignore) continue;
        double up = red == "none" ? gv[size_t(n * D + d)] : red == "sum" ? gv[0] : gv[0] / wsum;
        p[(n * C + t) * D + d] = T(-(wv.empty() ? 1.0 : wv[size_t(t)]) * up);
      }
  });
  return {gx, Tensor(), Tensor()};
}

// Targets in [0, C) with some set to ignore_index; weighted and unweighted; all reductions.
std::vector<Sample> nll_loss_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  auto attrs = [](const char* red, int64_t ignore) { return Attrs().set("reduction", std::string(red)).set("ignore_index", ignore); };
  auto lp = [&](const Shape& sh) { return sample_uniform(sh, dt, g, -4, -0.1); };
  for (int64_t n : {1, 3, 17}) {
    Tensor t = randint(0, 7, {n}, DType::i64, &g);
    s.push_back({{lp({n, 7}), t, Tensor()}, attrs("mean", -100), fmt::format("N={} mean", n), {0}});
  }
  Tensor t = randint(0, 5, {9}, DType::i64, &g);
  t.select(0, 2).fill_(-1);
  t.select(0, 7).fill_(-1);
  Tensor w = sample_uniform({5}, dt, g, 0.2, 2);
  s.push_back({{lp({9, 5}), t, w}, attrs("mean", -1), "weighted mean, ignored", {0}});
  s.push_back({{lp({9, 5}), t, w}, attrs("sum", -1), "weighted sum, ignored", {0}});
  s.push_back({{lp({9, 5}), t, Tensor()}, attrs("none", -1), "none, ignored", {0}});
  s.push_back({{sample_transposed({9, 5}, dt, g, -4, -0.1), t, Tensor()}, attrs("mean", -1), "strided", {0}});
  s.push_back({{lp({2, 4, 3, 5}), randint(0, 4, {2, 3, 5}, DType::i64, &g), Tensor()}, attrs("mean", -100), "[N, C, d1, d2]", {0}});
  s.push_back({{lp({6}), full({}, 4, DType::i64), Tensor()}, attrs("sum", -100), "[C] and 0-d target", {0}});
  s.push_back({{lp({64, 1000}), randint(0, 1000, {64}, DType::i64, &g), Tensor()}, attrs("mean", -100), "64x1000", {0}});
  return s;
}

Tensor reduce_loss(const Tensor& l, const std::string& reduction) {
  if (reduction == "mean") return mean(l);
  if (reduction == "sum") return sum(l);
  return l;
}

}  // namespace

const OpImpl nll_loss_impl{nll_loss_meta, kernels::nll_loss_ref, nll_loss_backward, nll_loss_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor nll_loss(const Tensor& logp, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                const std::string& reduction) {
  return ops::dispatch1(ops::OpKind::nll_loss, {logp, target, weight},
                        Attrs().set("ignore_index", ignore_index).set("reduction", reduction));
}

// PyTorch's cross_entropy_loss_label_smoothing (aten/src/ATen/native/LossNLL.cpp), no weight.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
                     const std::string& reduction) {
  ops::check_reduction(reduction, "cross_entropy");
  QS_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, "cross_entropy: label_smoothing must be in [0, 1], got {}",
           label_smoothing);
  QS_CHECK(logits.dim() >= 1, "cross_entropy: logits must be [C], [N, C] or [N, C, d1, ...], got a 0-d tensor");
  int64_t cdim = logits.dim() == 1 ? 0 : 1;
  Tensor lp = log_softmax(logits, cdim);
  Tensor nll = nll_loss(lp, target, Tensor(), ignore_index, reduction);
  if (label_smoothing == 0.0) return nll;
  Tensor ignored = eq(target, scalar_tensor(double(ignore_index), DType::i64));
  Tensor smooth = where(ignored, scalar_tensor(0.0, lp.dtype()), neg(sum(lp, {cdim})));
  double C = double(logits.shape()[size_t(cdim)]);
  // "mean" divides the smoothing term by the number of targets not ignored, like nll_loss.
  Tensor zero = scalar_tensor(0.0, lp.dtype()), one = scalar_tensor(1.0, lp.dtype());
  Tensor reduced = reduction == "mean" ? sum(smooth) / sum(where(ignored, zero, one)) : ops::reduce_loss(smooth, reduction);
  return nll * (1.0 - label_smoothing) + reduced * (label_smoothing / C);
}

Tensor focal_loss(const Tensor& logits, const Tensor& target, double gamma, const std::vector<double>& alpha,
                  const std::string& reduction) {
  ops::check_reduction(reduction, "focal_loss");
  QS_CHECK(logits.dim() == 2 && target.dim() == 1 && target.size(0) == logits.size(0),
           "focal_loss: expected logits [N, C] and target [N], got {} and {}", shape_str(logits.shape()),
           shape_str(target.shape()));
  QS_CHECK(std::isfinite(gamma) && gamma >= 0, "focal_loss: gamma must be >= 0, got {}", gamma);
  const int64_t C = logits.size(1);
  QS_CHECK(alpha.empty() || alpha.size() == 1 || int64_t(alpha.size()) == C,
           "focal_loss: alpha holds {} values; give none, one (binary) or C = {}", alpha.size(), C);
  QS_CHECK(alpha.size() != 1 || C == 2, "focal_loss: a single alpha is for two classes, got {}", C);
  // -log p_t per sample, through nll_loss (which checks the targets), then p_t = exp(-nll).
  Tensor nll = nll_loss(log_softmax(logits, 1), target, Tensor(), -100, "none");
  Tensor loss = nll;
  if (gamma != 0) loss = pow(1.0 - exp(neg(nll)), gamma) * nll;
  if (!alpha.empty()) {
    std::vector<double> w = alpha.size() == 1 ? std::vector<double>{1 - alpha[0], alpha[0]} : alpha;
    loss = loss * index_select(from_vector(w, {C}, logits.dtype()), 0, target);
  }
  return ops::reduce_loss(loss, reduction);
}

Tensor mse_loss(const Tensor& a, const Tensor& b, const std::string& reduction) {
  ops::check_reduction(reduction, "mse_loss");
  Tensor d = a - b;
  return ops::reduce_loss(d * d, reduction);
}

// loss = (1 - y) x + (1 + (pw - 1) y) softplus(-x), softplus(-x) = log(1 + exp(-|x|)) - min(x, 0).
// (minimum splits its gradient at x == 0, giving the exact derivative -1/2 there.)
Tensor binary_cross_entropy_with_logits(const Tensor& x, const Tensor& y, const Tensor& pos_weight,
                                        const std::string& reduction) {
  ops::check_reduction(reduction, "binary_cross_entropy_with_logits");
  QS_CHECK(x.shape() == y.shape(), "binary_cross_entropy_with_logits: target shape {} differs from input shape {}",
           shape_str(y.shape()), shape_str(x.shape()));
  Tensor softplus_neg = log(exp(neg(abs(x))) + 1.0) - minimum(x, scalar_tensor(0.0, x.dtype()));
  Tensor log_weight = pos_weight.defined() ? (pos_weight - 1.0) * y + 1.0 : Tensor();
  Tensor loss = (1.0 - y) * x + (log_weight.defined() ? log_weight * softplus_neg : softplus_neg);
  return ops::reduce_loss(loss, reduction);
}

}  // namespace qs
