// Elementwise primitives: shape rules, gradients, test samples and the functional API.
#include <omp.h>

#include "kernels/elementwise_fns.h"
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "qiusuo/autograd.h"

namespace qs::ops {

using namespace qs::kernels;

namespace {

std::vector<TensorSpec> unary_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  QS_CHECK(x.is_floating_point(), "{}: expected a floating-point tensor, got {}", op_def(c.op).name,
           dtype_name(x.dtype()));
  return {{x.shape(), x.dtype()}};
}

// Gradient of a unary op: g * df(x, y), one fused pass.
template <class Fn> Tensor unary_grad(const Tensor& g, const Tensor& x, const Tensor& y) {
  Tensor gc = g.contiguous();
  Tensor xc = x.defined() ? x.contiguous() : Tensor();
  Tensor yc = y.defined() ? y.contiguous() : Tensor();
  Tensor out = empty(g.shape(), g.dtype());
  visit_float(g.dtype(), "backward", [&]<class T>() {
    const T* gp = gc.data_ptr<T>();
    const T* xp = xc.defined() ? xc.data_ptr<T>() : nullptr;
    const T* yp = yc.defined() ? yc.data_ptr<T>() : nullptr;
    T* op = out.data_ptr<T>();
    int64_t n = out.numel();
    // One loop per saved-tensor combination, so each vectorises.
    if (xp && yp) {
#pragma omp parallel for simd if (n > 32768)
      for (int64_t i = 0; i < n; ++i) op[i] = gp[i] * Fn::df(xp[i], yp[i]);
    } else if (xp) {
#pragma omp parallel for simd if (n > 32768)
      for (int64_t i = 0; i < n; ++i) op[i] = gp[i] * Fn::df(xp[i], T(0));
    } else if (yp) {
#pragma omp parallel for simd if (n > 32768)
      for (int64_t i = 0; i < n; ++i) op[i] = gp[i] * Fn::df(T(0), yp[i]);
    } else {
#pragma omp parallel for simd if (n > 32768)
      for (int64_t i = 0; i < n; ++i) op[i] = gp[i] * Fn::df(T(0), T(0));
    }
  });
  return out;
}

template <class Fn> std::vector<Tensor> unary_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  Tensor x = c.in.empty() ? Tensor() : c.in[0];
  Tensor y = c.out.empty() ? Tensor() : c.out[0];
  return {unary_grad<Fn>(g[0], x, y)};
}

std::vector<Tensor> gelu_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  if (c.attrs.s("approximate") == "tanh") return {unary_grad<gelu_tanh_fn>(g[0], c.in[0], Tensor())};
  return {unary_grad<gelu_erf_fn>(g[0], c.in[0], Tensor())};
}

// Samples: every odd size, a 2-D shape, and a transposed (non-contiguous) view.
std::vector<Sample> unary_samples_in(DType dt, Generator& g, double lo, double hi) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes()) s.push_back({{sample_uniform({n}, dt, g, lo, hi)}, {}, fmt::format("n={}", n)});
  s.push_back({{sample_uniform({4, 33}, dt, g, lo, hi)}, {}, "4x33"});
  s.push_back({{sample_transposed({7, 17}, dt, g, lo, hi)}, {}, "7x17 transposed"});
  s.push_back({{sample_uniform({64, 256}, dt, g, lo, hi)}, {}, "64x256"});
  return s;
}
std::vector<Sample> unary_samples(DType dt, Generator& g) { return unary_samples_in(dt, g, -2.0, 2.0); }
std::vector<Sample> positive_samples(DType dt, Generator& g) { return unary_samples_in(dt, g, 0.3, 3.0); }
// Kinked functions (abs, relu) are sampled away from 0 so finite differences are valid.
std::vector<Sample> kinked_samples(DType dt, Generator& g) {
  auto s = unary_samples(dt, g);
  for (auto& x : s) {
    Tensor t = x.in[0];
    NoGrad ng;
    x.in[0] = where(lt(abs(t), scalar_tensor(0.05, dt)), t + 0.1, t);
  }
  return s;
}
std::vector<Sample> gelu_samples(DType dt, Generator& g) {
  auto s = unary_samples(dt, g);
  size_t n = s.size();
  for (size_t i = 0; i < n; ++i) {
    s[i].attrs.set("approximate", std::string("none"));
    Sample t = s[i];
    t.attrs.set("approximate", std::string("tanh"));
    t.label += " tanh";
    s.push_back(t);
  }
  return s;
}

// ---- binary
std::vector<TensorSpec> binary_meta(const OpCall& c) {
  const Tensor &a = c.in[0], &b = c.in[1];
  QS_CHECK(a.dtype() == b.dtype(), "{}: dtypes differ ({} vs {}); hint: convert one with .to()", op_def(c.op).name,
           dtype_name(a.dtype()), dtype_name(b.dtype()));
  return {{broadcast_shapes(a.shape(), b.shape()), a.dtype()}};
}
std::vector<TensorSpec> compare_meta(const OpCall& c) {
  auto s = binary_meta(c);
  s[0].dtype = DType::b8;
  return s;
}

std::vector<Tensor> add_backward(const GradCtx& c, const std::vector<Tensor>& g) { return {g[0], g[0]}; }
std::vector<Tensor> sub_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  return {g[0], c.needs_grad[1] ? neg(g[0]) : Tensor()};
}
std::vector<Tensor> mul_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  return {c.needs_grad[0] ? mul(g[0], c.in[1]) : Tensor(), c.needs_grad[1] ? mul(g[0], c.in[0]) : Tensor()};
}
std::vector<Tensor> div_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor &a = c.in[0], &b = c.in[1];
  return {c.needs_grad[0] ? div(g[0], b) : Tensor(), c.needs_grad[1] ? neg(div(mul(g[0], a), mul(b, b))) : Tensor()};
}
std::vector<Tensor> pow_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor &a = c.in[0], &b = c.in[1], &y = c.out[0];
  Tensor ga, gb;
  if (c.needs_grad[0]) ga = mul(g[0], mul(b, pow(a, sub(b, scalar_tensor(1.0, b.dtype())))));
  if (c.needs_grad[1]) gb = mul(g[0], mul(y, log(a)));
  return {ga, gb};
}
// Ties split the gradient evenly, as PyTorch does.
std::vector<Tensor> minmax_backward(const GradCtx& c, const std::vector<Tensor>& g, bool is_max) {
  const Tensor &a = c.in[0], &b = c.in[1];
  Tensor win = is_max ? gt(a, b) : lt(a, b);
  Tensor tie = eq(a, b);
  Tensor zero = scalar_tensor(0.0, g[0].dtype());
  Tensor half = mul(g[0], scalar_tensor(0.5, g[0].dtype()));
  Tensor ga = where(win, g[0], where(tie, half, zero));
  Tensor gb = where(win, zero, where(tie, half, g[0]));
  return {ga, gb};
}
std::vector<Tensor> maximum_backward(const GradCtx& c, const std::vector<Tensor>& g) { return minmax_backward(c, g, true); }
std::vector<Tensor> minimum_backward(const GradCtx& c, const std::vector<Tensor>& g) { return minmax_backward(c, g, false); }

std::vector<Sample> binary_samples_in(DType dt, Generator& g, double lo, double hi, double blo, double bhi) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes())
    s.push_back({{sample_uniform({n}, dt, g, lo, hi), sample_uniform({n}, dt, g, blo, bhi)}, {}, fmt::format("n={}", n)});
  s.push_back({{sample_uniform({5, 33}, dt, g, lo, hi), sample_uniform({33}, dt, g, blo, bhi)}, {}, "row broadcast"});
  s.push_back({{sample_uniform({7, 1}, dt, g, lo, hi), sample_uniform({1, 17}, dt, g, blo, bhi)}, {}, "outer broadcast"});
  s.push_back({{sample_uniform({3, 7}, dt, g, lo, hi), sample_uniform({}, dt, g, blo, bhi)}, {}, "scalar"});
  s.push_back({{sample_transposed({7, 17}, dt, g, lo, hi), sample_uniform({7, 17}, dt, g, blo, bhi)}, {}, "transposed"});
  s.push_back({{sample_uniform({2, 3, 5}, dt, g, lo, hi), sample_transposed({3, 2, 5}, dt, g, blo, bhi).transpose(0, 1)},
               {}, "3d strided"});
  s.push_back({{sample_uniform({64, 256}, dt, g, lo, hi), sample_uniform({64, 256}, dt, g, blo, bhi)}, {}, "64x256"});
  return s;
}
std::vector<Sample> binary_samples(DType dt, Generator& g) { return binary_samples_in(dt, g, -2, 2, -2, 2); }
std::vector<Sample> div_samples(DType dt, Generator& g) { return binary_samples_in(dt, g, -2, 2, 0.5, 2); }
std::vector<Sample> pow_samples(DType dt, Generator& g) { return binary_samples_in(dt, g, 0.5, 2, -1.5, 1.5); }
// Comparisons also get a sample made entirely of ties.
std::vector<Sample> compare_samples(DType dt, Generator& g) {
  auto s = binary_samples(dt, g);
  Tensor a = sample_uniform({7, 17}, dt, g);
  s.push_back({{a, a.clone()}, {}, "ties"});
  return s;
}

// ---- where, clamp
std::vector<TensorSpec> where_meta(const OpCall& c) {
  const Tensor &cond = c.in[0], &a = c.in[1], &b = c.in[2];
  QS_CHECK(cond.dtype() == DType::b8, "where: condition must be bool, got {}", dtype_name(cond.dtype()));
  QS_CHECK(a.dtype() == b.dtype(), "where: dtypes of the two branches differ ({} vs {})", dtype_name(a.dtype()),
           dtype_name(b.dtype()));
  return {{broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape())), a.dtype()}};
}
std::vector<Tensor> where_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  Tensor zero = scalar_tensor(0.0, g[0].dtype());
  return {Tensor(), c.needs_grad[1] ? where(c.in[0], g[0], zero) : Tensor(),
          c.needs_grad[2] ? where(c.in[0], zero, g[0]) : Tensor()};
}
std::vector<Sample> where_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes())
    s.push_back({{gt(sample_uniform({n}, dt, g), scalar_tensor(0, dt)), sample_uniform({n}, dt, g), sample_uniform({n}, dt, g)},
                 {}, fmt::format("n={}", n), {1, 2}});
  s.push_back({{gt(sample_uniform({7, 1}, dt, g), scalar_tensor(0, dt)), sample_uniform({7, 17}, dt, g),
                sample_uniform({17}, dt, g)}, {}, "broadcast", {1, 2}});
  return s;
}

std::vector<TensorSpec> clamp_meta(const OpCall& c) { return {{c.in[0].shape(), c.in[0].dtype()}}; }
std::vector<Tensor> clamp_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor& x = c.in[0];
  Tensor keep = g[0];
  Tensor zero = scalar_tensor(0.0, g[0].dtype());
  if (c.attrs.has("min")) keep = where(ge(x, scalar_tensor(c.attrs.f("min"), x.dtype())), keep, zero);
  if (c.attrs.has("max")) keep = where(le(x, scalar_tensor(c.attrs.f("max"), x.dtype())), keep, zero);
  return {keep};
}
std::vector<Sample> clamp_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes()) s.push_back({{sample_uniform({n}, dt, g)}, Attrs().set("min", -1.03).set("max", 0.97), fmt::format("n={}", n)});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, Attrs().set("min", -0.51), "min only"});
  s.push_back({{sample_transposed({7, 17}, dt, g)}, Attrs().set("max", 0.49), "max only, strided"});
  return s;
}

}  // namespace

#define QS_UNARY_IMPL(name, samples, saved_in, saved_out) \
  const OpImpl name##_impl{unary_meta, unary_ref<name##_fn>, unary_backward<name##_fn>, samples, nullptr};
QS_UNARY_IMPL(neg, unary_samples, 0, 0)
QS_UNARY_IMPL(exp, unary_samples, 0, 1)
QS_UNARY_IMPL(log, positive_samples, 1, 0)
QS_UNARY_IMPL(sqrt, positive_samples, 0, 1)
QS_UNARY_IMPL(rsqrt, positive_samples, 0, 1)
QS_UNARY_IMPL(abs, kinked_samples, 1, 0)
QS_UNARY_IMPL(relu, kinked_samples, 0, 1)
QS_UNARY_IMPL(sigmoid, unary_samples, 0, 1)
QS_UNARY_IMPL(tanh, unary_samples, 0, 1)
QS_UNARY_IMPL(silu, unary_samples, 1, 0)
QS_UNARY_IMPL(sin, unary_samples, 1, 0)
QS_UNARY_IMPL(cos, unary_samples, 1, 0)
#undef QS_UNARY_IMPL
Tensor gelu_grad(const Tensor& g, const Tensor& x) { return unary_grad<gelu_erf_fn>(g, x, Tensor()); }

const OpImpl gelu_impl{unary_meta, gelu_ref, gelu_backward, gelu_samples, nullptr};

const OpImpl add_impl{binary_meta, binary_ref<add_fn>, add_backward, binary_samples, nullptr};
const OpImpl sub_impl{binary_meta, binary_ref<sub_fn>, sub_backward, binary_samples, nullptr};
const OpImpl mul_impl{binary_meta, binary_ref<mul_fn>, mul_backward, binary_samples, nullptr};
const OpImpl div_impl{binary_meta, binary_ref<div_fn>, div_backward, div_samples, nullptr};
const OpImpl pow_impl{binary_meta, binary_ref<pow_fn>, pow_backward, pow_samples, nullptr};
const OpImpl maximum_impl{binary_meta, binary_ref<maximum_fn>, maximum_backward, binary_samples, nullptr};
const OpImpl minimum_impl{binary_meta, binary_ref<minimum_fn>, minimum_backward, binary_samples, nullptr};
const OpImpl eq_impl{compare_meta, compare_ref<eq_fn>, nullptr, compare_samples, nullptr};
const OpImpl ne_impl{compare_meta, compare_ref<ne_fn>, nullptr, compare_samples, nullptr};
const OpImpl lt_impl{compare_meta, compare_ref<lt_fn>, nullptr, compare_samples, nullptr};
const OpImpl le_impl{compare_meta, compare_ref<le_fn>, nullptr, compare_samples, nullptr};
const OpImpl gt_impl{compare_meta, compare_ref<gt_fn>, nullptr, compare_samples, nullptr};
const OpImpl ge_impl{compare_meta, compare_ref<ge_fn>, nullptr, compare_samples, nullptr};
const OpImpl where_impl{where_meta, where_ref, where_backward, where_samples, nullptr};
const OpImpl clamp_impl{clamp_meta, clamp_ref, clamp_backward, clamp_samples, nullptr};

void add_inplace_raw(Tensor& dst, const Tensor& src) {
  QS_CHECK(dst.is_contiguous() && dst.shape() == src.shape() && dst.dtype() == src.dtype(),
           "internal: add_inplace_raw needs matching contiguous tensors");
  Tensor s = src.contiguous();
  visit_float(dst.dtype(), "add_", [&]<class T>() {
    T* d = dst.data_ptr<T>();
    const T* p = s.data_ptr<T>();
    int64_t n = dst.numel();
#pragma omp parallel for simd if (n > 32768)
    for (int64_t i = 0; i < n; ++i) d[i] += p[i];
  });
}

}  // namespace qs::ops

// ---- functional API
namespace qs {
using ops::OpKind;
using ops::dispatch1;

Tensor neg(const Tensor& x) { return dispatch1(OpKind::neg, {x}); }
Tensor exp(const Tensor& x) { return dispatch1(OpKind::exp, {x}); }
Tensor log(const Tensor& x) { return dispatch1(OpKind::log, {x}); }
Tensor sqrt(const Tensor& x) { return dispatch1(OpKind::sqrt, {x}); }
Tensor rsqrt(const Tensor& x) { return dispatch1(OpKind::rsqrt, {x}); }
Tensor abs(const Tensor& x) { return dispatch1(OpKind::abs, {x}); }
Tensor relu(const Tensor& x) { return dispatch1(OpKind::relu, {x}); }
Tensor sigmoid(const Tensor& x) { return dispatch1(OpKind::sigmoid, {x}); }
Tensor tanh(const Tensor& x) { return dispatch1(OpKind::tanh, {x}); }
Tensor gelu(const Tensor& x, const std::string& approximate) {
  QS_CHECK(approximate == "none" || approximate == "tanh", "gelu: approximate must be 'none' or 'tanh', got '{}'",
           approximate);
  return dispatch1(OpKind::gelu, {x}, Attrs().set("approximate", approximate));
}
Tensor silu(const Tensor& x) { return dispatch1(OpKind::silu, {x}); }
Tensor sin(const Tensor& x) { return dispatch1(OpKind::sin, {x}); }
Tensor cos(const Tensor& x) { return dispatch1(OpKind::cos, {x}); }
Tensor square(const Tensor& x) { return mul(x, x); }

Tensor add(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::add, {a, b}); }
Tensor sub(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::sub, {a, b}); }
Tensor mul(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::mul, {a, b}); }
Tensor div(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::div, {a, b}); }
Tensor pow(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::pow, {a, b}); }
Tensor pow(const Tensor& a, double e) {
  if (e == 2.0) return mul(a, a);
  return pow(a, scalar_tensor(e, a.dtype()));
}
Tensor maximum(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::maximum, {a, b}); }
Tensor minimum(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::minimum, {a, b}); }
Tensor eq(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::eq, {a, b}); }
Tensor ne(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::ne, {a, b}); }
Tensor lt(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::lt, {a, b}); }
Tensor le(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::le, {a, b}); }
Tensor gt(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::gt, {a, b}); }
Tensor ge(const Tensor& a, const Tensor& b) { return dispatch1(OpKind::ge, {a, b}); }
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) { return dispatch1(OpKind::where, {cond, a, b}); }
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  Attrs a;
  if (min) a.set("min", *min);
  if (max) a.set("max", *max);
  return dispatch1(OpKind::clamp, {x}, std::move(a));
}
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  QS_CHECK(mask.dtype() == DType::b8, "masked_fill: mask must be bool, got {}", dtype_name(mask.dtype()));
  return where(mask, scalar_tensor(value, x.dtype()), x);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_tensor(b, a.dtype())); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_tensor(b, a.dtype())); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_tensor(b, a.dtype())); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_tensor(b, a.dtype())); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_tensor(a, b.dtype()), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_tensor(a, b.dtype()), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_tensor(a, b.dtype()), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_tensor(a, b.dtype()), b); }

}  // namespace qs
