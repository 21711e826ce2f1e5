// Reduction primitives: sum and mean over any dims (more in later rows).
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/reduce_util.h"
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

// The gradient of a reduction broadcasts back over the reduced dims.
Tensor unreduce(const Tensor& g, const TensorSpec& in, const Attrs& a) {
  std::vector<int64_t> dims = a.has("dims") ? a.ints("dims") : std::vector<int64_t>{};
  if (dims.empty())
    for (int64_t d = 0; d < int64_t(in.shape.size()); ++d) dims.push_back(d);
  for (auto& d : dims) d = wrap_dim(d, int64_t(in.shape.size()), "reduce");
  return g.reshape(keepdim_shape(in.shape, dims)).expand(in.shape);
}

std::vector<Tensor> sum_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  return {unreduce(g[0], c.in_spec[0], c.attrs)};
}
std::vector<Tensor> mean_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  int64_t n = shape_numel(c.in_spec[0].shape) / std::max<int64_t>(1, shape_numel(g[0].shape()));
  return {unreduce(g[0] / double(n), c.in_spec[0], c.attrs)};
}

std::vector<Sample> reduce_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes()) s.push_back({{sample_uniform({n}, dt, g)}, Attrs().set("dims", Shape{}), fmt::format("all n={}", n)});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, Attrs().set("dims", Shape{1}), "rows"});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, Attrs().set("dims", Shape{0}).set("keepdim", true), "cols keepdim"});
  s.push_back({{sample_uniform({3, 5, 7}, dt, g)}, Attrs().set("dims", Shape{0, 2}), "outer+inner"});
  s.push_back({{sample_transposed({17, 7}, dt, g)}, Attrs().set("dims", Shape{-1}), "strided"});
  s.push_back({{sample_uniform({64, 1000}, dt, g)}, Attrs().set("dims", Shape{1}), "64x1000"});
  return s;
}

}  // namespace

const OpImpl sum_impl{reduce_meta, kernels::sum_ref, sum_backward, reduce_samples, nullptr};
const OpImpl mean_impl{reduce_meta, kernels::mean_ref, mean_backward, reduce_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return ops::dispatch1(ops::OpKind::sum, {x}, Attrs().set("dims", dims).set("keepdim", keepdim));
}
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return ops::dispatch1(ops::OpKind::mean, {x}, Attrs().set("dims", dims).set("keepdim", keepdim));
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
