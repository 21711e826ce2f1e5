// Fake quantisation: shape rules, the straight-through / LSQ backward, samples and the
// functional API (include/qiusuo/quant/fake_quant.h). Formulas: src/kernels/fake_quant.h.
#include "kernels/fake_quant.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "qiusuo/autograd.h"
#include "qiusuo/quant/fake_quant.h"

namespace qs::ops {

namespace {

// Checks (x, scale, zero_point) and the attrs of fake_quantize (inputs from `first`).
void check_fake_quant_inputs(const OpCall& c, size_t first, const char* op) {
  const Tensor &x = c.in[first], &s = c.in[first + 1], &z = c.in[first + 2];
  QS_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, "{}: x must be f32 or f64, got {}", op,
           dtype_name(x.dtype()));
  int64_t axis = c.attrs.i("axis"), qmin = c.attrs.i("qmin"), qmax = c.attrs.i("qmax");
  QS_CHECK(axis >= -1 && axis < x.dim(), "{}: axis must be -1 (per tensor) or in [0, {}), got {}", op, x.dim(), axis);
  QS_CHECK(qmin < qmax && qmin >= -(1 << 24) && qmax <= (1 << 24),
           "{}: expected qmin < qmax within [-2^24, 2^24] (exact in f32), got [{}, {}]", op, qmin, qmax);
  int64_t C = axis < 0 ? 1 : x.size(axis);
  QS_CHECK(s.defined() && s.dim() == 1 && s.numel() == C && s.is_floating_point(),
           "{}: scale must be a floating [{}] ({}), got {} {}", op, C, axis < 0 ? "per tensor" : "one per channel",
           s.defined() ? dtype_name(s.dtype()) : "undefined", s.defined() ? shape_str(s.shape()) : "");
  QS_CHECK(z.defined() && z.dim() == 1 && z.numel() == C && (z.dtype() == DType::i32 || z.is_floating_point()),
           "{}: zero_point must be i32 or floating [{}], got {} {}", op, C,
           z.defined() ? dtype_name(z.dtype()) : "undefined", z.defined() ? shape_str(z.shape()) : "");
}

std::vector<TensorSpec> fake_quantize_meta(const OpCall& c) {
  check_fake_quant_inputs(c, 0, "fake_quantize");
  return {{c.in[0].shape(), c.in[0].dtype()}};
}

std::vector<TensorSpec> fake_quantize_backward_meta(const OpCall& c) {
  check_fake_quant_inputs(c, 1, "fake_quantize_backward");
  const Tensor &dy = c.in[0], &x = c.in[1];
  QS_CHECK(dy.shape() == x.shape() && dy.dtype() == x.dtype(), "fake_quantize_backward: gradient {} {} does not match "
           "x {} {}", dtype_name(dy.dtype()), shape_str(dy.shape()), dtype_name(x.dtype()), shape_str(x.shape()));
  TensorSpec s{x.shape(), x.dtype()};
  return {s, s, s};
}

// Per-element gradients of scale / zero point summed to their [C] (or [1]) shape.
Tensor reduce_to_channels(const Tensor& g, int64_t axis, const Shape& shape) {
  if (axis < 0) return sum(g).reshape(shape);
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < g.dim(); ++d)
    if (d != axis) dims.push_back(d);
  return dims.empty() ? g : sum(g, dims);
}

std::vector<Tensor> fake_quantize_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor &x = c.in[0], &s = c.in[1], &z = c.in[2];
  auto r = dispatch(OpKind::fake_quantize_backward, {g[0].contiguous(), x, s, z}, c.attrs);
  int64_t axis = c.attrs.i("axis");
  Tensor gs = c.needs_grad[1] ? reduce_to_channels(r[1], axis, c.in_spec[1].shape) : Tensor();
  Tensor gz = c.needs_grad[2] ? reduce_to_channels(r[2], axis, c.in_spec[2].shape) : Tensor();
  return {c.needs_grad[0] ? r[0] : Tensor(), gs, gz};
}

Attrs fq_attrs(int64_t axis, int64_t qmin, int64_t qmax) {
  return Attrs().set("axis", axis).set("qmin", qmin).set("qmax", qmax);
}
Tensor zps(std::vector<double> v) { return from_vector(v, {int64_t(v.size())}, DType::i32); }
Tensor scales(const std::vector<double>& v, DType dt) { return from_vector(v, {int64_t(v.size())}, dt); }

// x / s stays inside the range or saturates; the samples the kernels are compared on.
std::vector<Sample> fake_quantize_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes())  // s8 symmetric: x / s in about [-40, 40]
    s.push_back({{sample_uniform({n}, dt, g), scales({0.05}, dt), zps({0})}, fq_attrs(-1, -128, 127),
                 fmt::format("s8 n={}", n), {}, false});
  s.push_back({{sample_uniform({7, 17}, dt, g, -3, 3), scales({0.02}, dt), zps({100})}, fq_attrs(-1, 0, 255),
               "u8 affine, saturating", {}, false});
  s.push_back({{sample_uniform({7, 17}, dt, g), scales({0.03}, dt), zps({64})}, fq_attrs(-1, 0, 127),
               "u8 reduce_range", {}, false});
  // Exact ties: x / s = k + 0.5 with s a power of two (round half to even).
  s.push_back({{arange(-20.5, 20.5, 0.5, dt) * 0.25, scales({0.25}, dt), zps({3})}, fq_attrs(-1, -128, 127),
               "ties", {}, false});
  s.push_back({{sample_uniform({7, 17}, dt, g), sample_uniform({7}, dt, g, 0.01, 0.05), zps({0, 0, 0, 0, 0, 0, 0})},
               fq_attrs(0, -127, 127), "per channel axis 0", {}, false});
  s.push_back({{sample_transposed({5, 33}, dt, g), sample_uniform({33}, dt, g, 0.01, 0.05),
                from_vector(std::vector<double>(33, 7.0), {33}, DType::i32)},
               fq_attrs(1, -128, 127), "per channel axis 1, transposed", {}, false});
  s.push_back({{sample_uniform({3, 4, 5}, dt, g), sample_uniform({4}, dt, g, 0.01, 0.05), zps({1, 2, 3, 4})},
               fq_attrs(1, -128, 127), "per channel axis 1 of 3-d", {}, false});
  s.push_back({{sample_uniform({3, 7}, dt, g), scales({0.02}, dt), scales({9.7}, dt)}, fq_attrs(-1, 0, 255),
               "learnable (float) zero point", {}, false});
  if (dt == DType::f32)
    s.push_back({{sample_uniform({8, 32, 14, 14}, dt, g, -1, 3), scales({0.013}, dt), zps({77})},
                 fq_attrs(-1, 0, 255), "activations 8x32x14x14 u8", {}, false});
  // Saturated everywhere (|x / s| beyond the range by a margin): there the function is
  // smooth in x (constant) and s ((qmin|qmax - zp) s), so gradcheck applies.
  Tensor sat = sample_uniform({3, 5}, dt, g, 2.0, 4.0);
  Tensor sign = where(gt(sample_uniform({3, 5}, dt, g), scalar_tensor(0, dt)), scalar_tensor(1, dt), scalar_tensor(-1, dt));
  s.push_back({{sat * sign, scales({0.01}, dt), zps({5})}, fq_attrs(-1, -128, 127), "saturated per tensor", {0, 1}});
  s.push_back({{sat * sign, sample_uniform({5}, dt, g, 0.005, 0.01), scales({1, 2, 3, -2, 0.2}, dt)},
               fq_attrs(1, -128, 127), "saturated per channel, float zero point", {0, 1}});
  return s;
}

std::vector<Sample> fake_quantize_backward_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (auto& f : fake_quantize_samples(dt, g)) {
    Sample b{{sample_uniform(f.in[0].shape(), dt, g), f.in[0], f.in[1], f.in[2]}, f.attrs, f.label};
    s.push_back(b);
  }
  return s;
}

}  // namespace

const OpImpl fake_quantize_impl{fake_quantize_meta, kernels::fake_quantize_ref, fake_quantize_backward,
                                fake_quantize_samples, nullptr};
const OpImpl fake_quantize_backward_impl{fake_quantize_backward_meta, kernels::fake_quantize_backward_ref, nullptr,
                                         fake_quantize_backward_samples, nullptr};

}  // namespace qs::ops

namespace qs::quant {

Tensor fake_quantize(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis, int64_t qmin,
                     int64_t qmax) {
  if (scale.defined() && scale.dim() == 1 && scale.numel() <= 4096) {
    std::vector<double> sv = scale.detach().to_vector();
    for (size_t k = 0; k < sv.size(); ++k)
      QS_CHECK(std::isfinite(sv[k]) && sv[k] > 0, "fake_quantize: scale[{}] must be finite and > 0, got {}", k, sv[k]);
  }
  if (zero_point.defined() && zero_point.dtype() == DType::i32 && zero_point.numel() <= 4096) {
    std::vector<double> zv = zero_point.to_vector();
    for (size_t k = 0; k < zv.size(); ++k)
      QS_CHECK(zv[k] >= double(qmin) && zv[k] <= double(qmax), "fake_quantize: zero_point[{}] = {} is outside [{}, {}]",
               k, zv[k], qmin, qmax);
  }
  return ops::dispatch1(ops::OpKind::fake_quantize, {x, scale, zero_point}, ops::fq_attrs(axis, qmin, qmax));
}

Tensor fake_quantize(const Tensor& x, const QParams& qp) {
  qp.validate();
  QS_CHECK(qp.group_size == 0, "fake_quantize: group-wise QParams (group_size {}) are not supported; hint: use "
           "per-channel (axis >= 0) or per-tensor parameters", qp.group_size);
  std::vector<double> s(qp.scale.begin(), qp.scale.end()), z(qp.zero_point.begin(), qp.zero_point.end());
  return fake_quantize(x, from_vector(s, {int64_t(s.size())}), from_vector(z, {int64_t(z.size())}, DType::i32), qp.axis,
                       qp.qmin(), qp.qmax());
}

}  // namespace qs::quant
