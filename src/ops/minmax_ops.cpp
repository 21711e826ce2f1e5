// Extremum reductions: amax/amin over any dims (gradient split evenly among ties, as
// torch.amax), max/min over one dim with int64 indices (torch.max(x, dim)), argmax.
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/reduce_ops.h"
#include "ops/samples.h"
#include "qiusuo/autograd.h"

namespace qs::ops {

namespace {

void check_ordered(const Tensor& x, const char* name) {
  QS_CHECK(x.dtype() != DType::b8, "{}: expected a numeric tensor, got bool", name);
}

std::vector<TensorSpec> extreme_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  const char* name = op_def(c.op).name;
  check_ordered(x, name);
  auto dims = reduce_dims(x, c.attrs, name);
  for (int64_t d : dims)
    QS_CHECK(x.shape()[size_t(d)] > 0, "{}: cannot reduce over dim {} of size 0 (shape {})", name, d, shape_str(x.shape()));
  return {{reduced_shape(x.shape(), dims, c.attrs.b("keepdim", false)), x.dtype()}};
}

// The single reduced dim of max/min/argmax ("dim"; absent means all, for argmax).
std::vector<int64_t> dim_of(const Tensor& x, const Attrs& a, const char* name) {
  std::vector<int64_t> dims;
  if (!a.has("dim")) {
    for (int64_t d = 0; d < x.dim(); ++d) dims.push_back(d);
  } else if (x.dim() > 0) {
    dims.push_back(wrap_dim(a.i("dim"), x.dim(), name));
  } else {
    QS_CHECK(a.i("dim") == 0 || a.i("dim") == -1, "{}: dim {} is out of range for a 0-d tensor", name, a.i("dim"));
  }
  for (int64_t d : dims)
    QS_CHECK(x.shape()[size_t(d)] > 0, "{}: cannot reduce over dim {} of size 0 (shape {})", name, d, shape_str(x.shape()));
  return dims;
}

std::vector<TensorSpec> extreme_dim_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  const char* name = c.op == OpKind::max_dim ? "max" : "min";
  check_ordered(x, name);
  QS_CHECK(c.attrs.has("dim"), "{}: a dim is required", name);
  Shape s = reduced_shape(x.shape(), dim_of(x, c.attrs, name), c.attrs.b("keepdim", false));
  return {{s, x.dtype()}, {s, DType::i64}};
}

std::vector<TensorSpec> argmax_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  check_ordered(x, "argmax");
  auto dims = dim_of(x, c.attrs, "argmax");
  Shape s = c.attrs.has("dim") ? reduced_shape(x.shape(), dims, c.attrs.b("keepdim", false)) : Shape{};
  if (!c.attrs.has("dim") && c.attrs.b("keepdim", false)) s = Shape(size_t(x.dim()), 1);
  return {{s, DType::i64}};
}

// Elements equal to the extremum share its gradient evenly.
std::vector<Tensor> amaxmin_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor &x = c.in[0], &y = c.out[0];
  auto dims = reduce_dims(x, c.attrs, "amax");
  Shape ks = keepdim_shape(x.shape(), dims);
  Tensor hit = eq(x, unreduce(y, x.shape(), dims));
  Tensor zero = scalar_tensor(0.0, g[0].dtype());
  Tensor count = sum(where(hit, scalar_tensor(1.0, g[0].dtype()), zero), dims, true);
  return {where(hit, (g[0].reshape(ks) / count).expand(x.shape()), zero)};
}

// The gradient of the values goes to the element at the returned index.
std::vector<Tensor> extreme_dim_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Shape& in = c.in_spec[0].shape;
  if (in.empty()) return {g[0].reshape(in)};
  int64_t d = wrap_dim(c.attrs.i("dim"), int64_t(in.size()), "max");
  Shape ks = keepdim_shape(in, {d});
  Shape ps(in.size(), 1);
  ps[size_t(d)] = in[size_t(d)];
  Tensor pos = arange(0, double(in[size_t(d)]), 1, DType::i64).reshape(ps);
  Tensor hit = eq(c.out[1].reshape(ks), pos);
  return {where(hit, g[0].reshape(ks), scalar_tensor(0.0, g[0].dtype()))};
}

// Every reduce sample, plus rows holding two-way ties at both the max and the min
// (central differences at a two-way tie give exactly the even split).
std::vector<Sample> amaxmin_samples(DType dt, Generator& g) {
  auto s = reduce_samples(dt, g);
  NoGrad ng;
  Tensor x = sample_uniform({4, 6}, dt, g, -1, 1);
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t col : {1, 4}) x.select(0, r).select(0, col).fill_(1.5);
    for (int64_t col : {2, 5}) x.select(0, r).select(0, col).fill_(-1.5);
  }
  s.push_back({{x}, Attrs().set("dims", Shape{1}), "two-way ties"});
  return s;
}

std::vector<Sample> dim_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes()) s.push_back({{sample_uniform({n}, dt, g)}, Attrs().set("dim", 0), fmt::format("n={}", n)});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, Attrs().set("dim", 1), "rows"});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, Attrs().set("dim", 0).set("keepdim", true), "cols keepdim"});
  s.push_back({{sample_uniform({3, 5, 7}, dt, g)}, Attrs().set("dim", -2), "middle"});
  s.push_back({{sample_transposed({17, 7}, dt, g)}, Attrs().set("dim", -1), "strided"});
  s.push_back({{sample_uniform({32, 1000}, dt, g)}, Attrs().set("dim", 1), "32x1000"});
  return s;
}
std::vector<Sample> argmax_samples(DType dt, Generator& g) {
  auto s = dim_samples(dt, g);
  s.push_back({{sample_uniform({3, 5, 7}, dt, g)}, Attrs(), "flattened"});
  s.push_back({{sample_uniform({3, 5}, dt, g)}, Attrs().set("keepdim", true), "flattened keepdim"});
  Tensor ties = zeros({3, 4}, dt);
  s.push_back({{ties}, Attrs().set("dim", 1), "all ties: first index"});
  return s;
}

}  // namespace

const OpImpl amax_impl{extreme_meta, kernels::amax_ref, amaxmin_backward, amaxmin_samples, nullptr};
const OpImpl amin_impl{extreme_meta, kernels::amin_ref, amaxmin_backward, amaxmin_samples, nullptr};
const OpImpl max_dim_impl{extreme_dim_meta, kernels::max_dim_ref, extreme_dim_backward, dim_samples, nullptr};
const OpImpl min_dim_impl{extreme_dim_meta, kernels::min_dim_ref, extreme_dim_backward, dim_samples, nullptr};
const OpImpl argmax_impl{argmax_meta, kernels::argmax_ref, nullptr, argmax_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return ops::dispatch1(ops::OpKind::amax, {x}, Attrs().set("dims", dims).set("keepdim", keepdim));
}
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return ops::dispatch1(ops::OpKind::amin, {x}, Attrs().set("dims", dims).set("keepdim", keepdim));
}
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  auto r = ops::dispatch(ops::OpKind::max_dim, {x}, Attrs().set("dim", dim).set("keepdim", keepdim));
  return {r[0], r[1]};
}
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  auto r = ops::dispatch(ops::OpKind::min_dim, {x}, Attrs().set("dim", dim).set("keepdim", keepdim));
  return {r[0], r[1]};
}
Tensor argmax(const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  Attrs a;
  if (dim) a.set("dim", *dim);
  return ops::dispatch1(ops::OpKind::argmax, {x}, a.set("keepdim", keepdim));
}

}  // namespace qs
