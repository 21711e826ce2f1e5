// layer_norm and rms_norm over the trailing normalized_shape dims: primitives with a
// fused backward (kernels/norm_rows.h) that recomputes the row statistics from x.
#include "kernels/elementwise_fns.h"
#include "kernels/norm_rows.h"
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"

namespace qs::ops {

using kernels::visit_float;

namespace {

std::vector<TensorSpec> norm_meta(const OpCall& c) {
  const char* name = op_def(c.op).name;
  const Tensor& x = c.in[0];
  QS_CHECK(x.is_floating_point(), "{}: expected a floating-point input, got {}", name, dtype_name(x.dtype()));
  const Shape& ns = c.attrs.ints("normalized_shape");
  QS_CHECK(!ns.empty() && int64_t(ns.size()) <= x.dim() &&
               Shape(x.shape().end() - int64_t(ns.size()), x.shape().end()) == ns,
           "{}: input {} does not end with normalized_shape {}", name, shape_str(x.shape()), shape_str(ns));
  QS_CHECK(c.attrs.f("eps") >= 0, "{}: eps must be >= 0, got {}", name, c.attrs.f("eps"));
  for (size_t i = 1; i < c.in.size(); ++i) {
    const Tensor& p = c.in[i];
    if (!p.defined()) continue;
    const char* what = i == 1 ? "weight" : "bias";
    QS_CHECK(p.shape() == ns, "{}: {} has shape {}, expected normalized_shape {}", name, what, shape_str(p.shape()), shape_str(ns));
    QS_CHECK(p.dtype() == x.dtype(), "{}: {} is {}, input is {}", name, what, dtype_name(p.dtype()), dtype_name(x.dtype()));
  }
  return {{x.shape(), x.dtype()}};
}

std::vector<Tensor> norm_backward(const GradCtx& c, const std::vector<Tensor>& g, bool rms) {
  const Tensor& x = c.in[0];
  const Tensor& w = c.in[1];
  const Shape& ns = c.attrs.ints("normalized_shape");
  int64_t n = shape_numel(ns), m = n == 0 ? 0 : x.numel() / n;
  Tensor xc = x.contiguous(), gc = g[0].contiguous().to(x.dtype()), wc = w.defined() ? w.contiguous() : Tensor();
  Tensor dx = c.needs_grad[0] ? empty(x.shape(), x.dtype()) : Tensor();
  Tensor dw = c.needs_grad[1] ? empty(ns, x.dtype()) : Tensor();
  Tensor db = !rms && c.needs_grad[2] ? empty(ns, x.dtype()) : Tensor();
  visit_float(x.dtype(), rms ? "rms_norm backward" : "layer_norm backward", [&]<class T>() {
    auto p = [](const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
    kernels::norm_backward<T>(p(gc), p(xc), p(wc), p(dx), p(dw), p(db), m, n, c.attrs.f("eps"), rms);
  });
  if (rms) return {dx, dw};
  return {dx, dw, db};
}
std::vector<Tensor> layer_norm_backward(const GradCtx& c, const std::vector<Tensor>& g) { return norm_backward(c, g, false); }
std::vector<Tensor> rms_norm_backward(const GradCtx& c, const std::vector<Tensor>& g) { return norm_backward(c, g, true); }

Attrs norm_attrs(const Shape& ns, double eps) { return Attrs().set("normalized_shape", ns).set("eps", eps); }

// Inputs x, weight, bias (bias dropped for rms_norm); some without weight/bias.
std::vector<Sample> norm_samples_for(DType dt, Generator& g, bool rms) {
  std::vector<Sample> s;
  auto add = [&](Tensor x, const Shape& ns, bool affine, const std::string& label) {
    std::vector<Tensor> in = {x, affine ? sample_uniform(ns, dt, g, 0.5, 1.5) : Tensor()};
    if (!rms) in.push_back(affine ? sample_uniform(ns, dt, g) : Tensor());
    s.push_back({in, norm_attrs(ns, 1e-5), label});
  };
  for (int64_t n : odd_sizes()) add(sample_uniform({3, n}, dt, g), {n}, n != 7, fmt::format("3x{}", n));
  add(sample_uniform({2, 3, 5, 7}, dt, g), {5, 7}, true, "2 normalised dims");
  add(sample_transposed({17, 9}, dt, g), {9}, true, "strided");
  add(sample_uniform({1, 5}, dt, g, 3, 3.001), {5}, true, "nearly constant row");
  add(sample_uniform({64, 768}, dt, g), {768}, true, "64x768");
  return s;
}
std::vector<Sample> layer_norm_samples(DType dt, Generator& g) { return norm_samples_for(dt, g, false); }
std::vector<Sample> rms_norm_samples(DType dt, Generator& g) { return norm_samples_for(dt, g, true); }

}  // namespace

const OpImpl layer_norm_impl{norm_meta, kernels::layer_norm_ref, layer_norm_backward, layer_norm_samples, nullptr};
const OpImpl rms_norm_impl{norm_meta, kernels::rms_norm_ref, rms_norm_backward, rms_norm_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias, double eps) {
  return ops::dispatch1(ops::OpKind::layer_norm, {x, weight, bias}, ops::norm_attrs(normalized_shape, eps));
}
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, double eps) {
  return ops::dispatch1(ops::OpKind::rms_norm, {x, weight}, ops::norm_attrs(normalized_shape, eps));
}

}  // namespace qs
