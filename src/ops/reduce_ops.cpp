// Reduction primitives over any set of dims: sum, mean, var, logsumexp.
// (amax/amin/max/min/argmax are in minmax_ops.cpp.)
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/reduce_ops.h"
#include "ops/samples.h"

namespace qs::ops {

namespace {

std::vector<TensorSpec> reduce_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  const char* name = op_def(c.op).name;
  QS_CHECK(x.is_floating_point(), "{}: expected a floating-point tensor, got {}", name, dtype_name(x.dtype()));
  auto dims = reduce_dims(x, c.attrs, name);
  return {{reduced_shape(x.shape(), dims, c.attrs.b("keepdim", false)), x.dtype()}};
}

std::vector<Tensor> sum_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  return {unreduce(g[0], c.in_spec[0].shape, c.attrs)};
}
std::vector<Tensor> mean_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  int64_t n = shape_numel(c.in_spec[0].shape) / std::max<int64_t>(1, shape_numel(g[0].shape()));
  return {unreduce(g[0] / double(n), c.in_spec[0].shape, c.attrs)};
}
// d var / dx = 2 (x - mean) / (N - correction)
std::vector<Tensor> var_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor& x = c.in[0];
  auto dims = reduce_dims(x, c.attrs, "var");
  double n = double(reduced_count(x.shape(), dims));
  Tensor centred = x - mean(x, dims, true);
  return {unreduce(g[0], x.shape(), dims) * centred * (2.0 / (n - c.attrs.f("correction", 1.0)))};
}
// d logsumexp / dx = exp(x - y), the softmax over the reduced dims
std::vector<Tensor> logsumexp_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor& x = c.in[0];
  auto dims = reduce_dims(x, c.attrs, "logsumexp");
  return {unreduce(g[0], x.shape(), dims) * exp(x - unreduce(c.out[0], x.shape(), dims))};
}

}  // namespace

std::vector<Sample> reduce_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes()) s.push_back({{sample_uniform({n}, dt, g)}, Attrs().set("dims", Shape{}), fmt::format("all n={}", n)});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, Attrs().set("dims", Shape{1}), "rows"});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, Attrs().set("dims", Shape{0}).set("keepdim", true), "cols keepdim"});
  s.push_back({{sample_uniform({3, 5, 7}, dt, g)}, Attrs().set("dims", Shape{0, 2}), "outer+inner"});
  s.push_back({{sample_uniform({3, 5, 7}, dt, g)}, Attrs().set("dims", Shape{1}), "middle"});
  s.push_back({{sample_uniform({2, 3, 5, 7}, dt, g)}, Attrs().set("dims", Shape{-1, 1}).set("keepdim", true), "4d mixed"});
  s.push_back({{sample_transposed({17, 7}, dt, g)}, Attrs().set("dims", Shape{-1}), "strided"});
  s.push_back({{sample_transposed({33, 5}, dt, g)}, Attrs().set("dims", Shape{0}), "strided cols"});
  s.push_back({{sample_uniform({64, 1000}, dt, g)}, Attrs().set("dims", Shape{1}), "64x1000"});
  s.push_back({{sample_uniform({300, 65}, dt, g)}, Attrs().set("dims", Shape{0}), "300x65 cols"});
  s.push_back({{sample_uniform({300, 300}, dt, g)}, Attrs().set("dims", Shape{0}), "300x300 cols (whole rows a task)"});
  s.push_back({{sample_uniform({}, dt, g)}, Attrs(), "0-d"});
  return s;
}

namespace {
std::vector<Sample> var_samples(DType dt, Generator& g) {
  auto s = reduce_samples(dt, g);
  for (size_t i = 0; i < s.size(); ++i) {
    bool single = s[i].in[0].numel() == 1;  // N - correction must stay positive
    s[i].attrs.set("correction", single ? 0.0 : double(int64_t(i) % 3));
  }
  return s;
}
std::vector<Sample> logsumexp_samples(DType dt, Generator& g) {
  auto s = reduce_samples(dt, g);
  s.push_back({{sample_uniform({5, 9}, dt, g, 995, 1005)}, Attrs().set("dims", Shape{1}), "large values"});
  return s;
}
}  // namespace

const OpImpl sum_impl{reduce_meta, kernels::sum_ref, sum_backward, reduce_samples, nullptr};
const OpImpl mean_impl{reduce_meta, kernels::mean_ref, mean_backward, reduce_samples, nullptr};
const OpImpl var_impl{reduce_meta, kernels::var_ref, var_backward, var_samples, nullptr};
const OpImpl logsumexp_impl{reduce_meta, kernels::logsumexp_ref, logsumexp_backward, logsumexp_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return ops::dispatch1(ops::OpKind::sum, {x}, Attrs().set("dims", dims).set("keepdim", keepdim));
}
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return ops::dispatch1(ops::OpKind::mean, {x}, Attrs().set("dims", dims).set("keepdim", keepdim));
}
Tensor var(const Tensor& x, const std::vector<int64_t>& dims, double correction, bool keepdim) {
  return ops::dispatch1(ops::OpKind::var, {x},
                        Attrs().set("dims", dims).set("keepdim", keepdim).set("correction", correction));
}
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return ops::dispatch1(ops::OpKind::logsumexp, {x}, Attrs().set("dims", dims).set("keepdim", keepdim));
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  QS_CHECK(x.dim() >= int64_t(shape.size()), "sum_to: cannot reduce {} to {}", shape_str(x.shape()), shape_str(shape));
  size_t lead = size_t(x.dim()) - shape.size();
  std::vector<int64_t> dims;
  for (size_t d = 0; d < size_t(x.dim()); ++d) {
    if (d < lead) {
      dims.push_back(int64_t(d));
      continue;
    }
    int64_t want = shape[d - lead];
    QS_CHECK(want == x.shape()[d] || want == 1, "sum_to: cannot reduce {} to {}", shape_str(x.shape()), shape_str(shape));
    if (want == 1 && x.shape()[d] != 1) dims.push_back(int64_t(d));
  }
  Tensor r = dims.empty() ? x : sum(x, dims, true);
  return r.reshape(shape);
}

}  // namespace qs
