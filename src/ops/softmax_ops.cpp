// softmax and log_softmax over any dim: fused, stable primitives with a fused backward
// (softmax: y (g - sum g y); log_softmax: g - exp(y) sum g), both over the softmax dim.
#include "kernels/ref/ref_kernels.h"
#include "kernels/elementwise_fns.h"
#include "kernels/softmax_rows.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "tensor/strided.h"

namespace qs::ops {

using kernels::visit_float;

namespace {

int64_t softmax_dim(const Tensor& x, const Attrs& a, const char* name) {
  if (x.dim() == 0) {
    QS_CHECK(a.i("dim") == 0 || a.i("dim") == -1, "{}: dim {} is out of range for a 0-d tensor", name, a.i("dim"));
    return 0;
  }
  return wrap_dim(a.i("dim"), x.dim(), name);
}

std::vector<TensorSpec> softmax_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  const char* name = op_def(c.op).name;
  QS_CHECK(x.is_floating_point(), "{}: expected a floating-point tensor, got {}", name, dtype_name(x.dtype()));
  QS_CHECK(c.attrs.has("dim"), "{}: a dim is required", name);
  softmax_dim(x, c.attrs, name);
  return {{x.shape(), x.dtype()}};
}

template <bool Log> std::vector<Tensor> softmax_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor& y = c.out[0];
  Tensor gc = g[0].contiguous().to(y.dtype()), yc = y.contiguous();
  Tensor gx = empty(y.shape(), y.dtype());
  int64_t dim = softmax_dim(y, c.attrs, Log ? "log_softmax" : "softmax");
  auto b = kernels::softmax_block(y.shape(), dim);
  if (y.dim() == 0) b = {1, 1, 1};
  visit_float(y.dtype(), "softmax backward", [&]<class T>() {
    kernels::softmax_backward<T, Log>(gc.data_ptr<T>(), yc.data_ptr<T>(), gx.data_ptr<T>(), b);
  });
  return {gx};
}

std::vector<Sample> softmax_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes()) s.push_back({{sample_uniform({n}, dt, g, -3, 3)}, Attrs().set("dim", 0), fmt::format("n={}", n)});
  s.push_back({{sample_uniform({7, 17}, dt, g, -3, 3)}, Attrs().set("dim", 1), "rows"});
  s.push_back({{sample_uniform({7, 17}, dt, g, -3, 3)}, Attrs().set("dim", 0), "cols"});
  s.push_back({{sample_uniform({3, 5, 70}, dt, g, -3, 3)}, Attrs().set("dim", -2), "middle, 2 tiles"});
  s.push_back({{sample_transposed({17, 7}, dt, g, -3, 3)}, Attrs().set("dim", -1), "strided"});
  s.push_back({{sample_uniform({2, 3}, dt, g, 995, 1005)}, Attrs().set("dim", 1), "large values"});
  s.push_back({{sample_uniform({}, dt, g)}, Attrs().set("dim", 0), "0-d"});
  s.push_back({{sample_uniform({64, 1000}, dt, g, -5, 5)}, Attrs().set("dim", 1), "64x1000"});
  return s;
}

}  // namespace

const OpImpl softmax_impl{softmax_meta, kernels::softmax_ref, softmax_backward<false>, softmax_samples, nullptr};
const OpImpl log_softmax_impl{softmax_meta, kernels::log_softmax_ref, softmax_backward<true>, softmax_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor softmax(const Tensor& x, int64_t dim) { return ops::dispatch1(ops::OpKind::softmax, {x}, Attrs().set("dim", dim)); }
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return ops::dispatch1(ops::OpKind::log_softmax, {x}, Attrs().set("dim", dim));
}

}  // namespace qs
