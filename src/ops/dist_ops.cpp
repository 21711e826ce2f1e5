// all_reduce: y = the sum of x over the ranks of a data-parallel job (include/qiusuo/dist/dist.h),
// on every rank. Each rank's loss depends on its own y, so the gradient of the total loss
// with respect to x on rank r is the sum over ranks of dL/dy: the backward is all_reduce
// again. With one rank it is the identity, which is what the generic tests check; the
// two-rank tests (tests/dist) check sync batch norm, composed from it, against batch norm
// over the whole global batch.
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "qiusuo/dist/dist.h"

namespace qs::ops {

namespace {

std::vector<TensorSpec> all_reduce_meta(const OpCall& c) {
  QS_CHECK(c.in[0].dtype() == DType::f32 || c.in[0].dtype() == DType::f64, "all_reduce: expected f32 or f64, got {}",
           dtype_name(c.in[0].dtype()));
  return {{c.in[0].shape(), c.in[0].dtype()}};
}

// Every rank calls it in the same order (the forward and backward run the same graph).
void all_reduce_ref(OpCall& c) {
  kernels::copy_ref(c);
  dist::all_reduce_sum_inplace(c.out[0]);
}

std::vector<Tensor> all_reduce_backward(const GradCtx&, const std::vector<Tensor>& g) {
  return {dispatch1(OpKind::all_reduce, {g[0]})};
}

std::vector<Sample> all_reduce_samples(DType dt, Generator& g) {
  return {{{sample_uniform({3, 5}, dt, g)}, {}, "3x5"}, {{sample_transposed({4, 7}, dt, g)}, {}, "transposed"}};
}

}  // namespace

const OpImpl all_reduce_impl{all_reduce_meta, all_reduce_ref, all_reduce_backward, all_reduce_samples, nullptr};

}  // namespace qs::ops

namespace qs::dist {
Tensor all_reduce(const Tensor& x) { return ops::dispatch1(ops::OpKind::all_reduce, {x}); }
}  // namespace qs::dist
