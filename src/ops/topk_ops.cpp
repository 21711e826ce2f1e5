// topk as a primitive (torch.topk): shape rules, the gradient of the values (scattered
// back to the selected positions), samples, and the functional API.
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "tensor/strided.h"

namespace qs::ops {

namespace {

std::vector<TensorSpec> topk_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  QS_CHECK(x.dim() >= 1, "topk: expected a tensor of rank >= 1, got a 0-d tensor");
  QS_CHECK(x.dtype() != DType::b8, "topk: expected a numeric tensor, got bool");
  const int64_t dim = c.attrs.i("dim"), k = c.attrs.i("k");
  QS_CHECK(dim >= 0 && dim < x.dim(), "topk: dim {} is out of range for a tensor of rank {}", dim, x.dim());
  QS_CHECK(k >= 0 && k <= x.size(dim), "topk: k = {} is out of range for dim {} of size {} (shape {})", k, dim,
           x.size(dim), shape_str(x.shape()));
  Shape s = x.shape();
  s[size_t(dim)] = k;
  return {{s, x.dtype()}, {s, DType::i64}};
}

// The selected positions along dim are distinct, so scattering adds each value's
// gradient to exactly one element.
std::vector<Tensor> topk_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  if (!g[0].defined()) return {Tensor()};
  return {scatter_add(zeros(c.in_spec[0].shape, g[0].dtype()), c.attrs.i("dim"), c.out[1], g[0])};
}

Attrs topk_attrs(int64_t k, int64_t dim, bool largest = true, bool sorted = true) {
  return Attrs().set("k", k).set("dim", dim).set("largest", largest).set("sorted", sorted);
}

std::vector<Sample> topk_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : odd_sizes())
    s.push_back({{sample_uniform({n}, dt, g)}, topk_attrs((n + 1) / 2, 0), fmt::format("n={} k={}", n, (n + 1) / 2)});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, topk_attrs(3, 1), "rows k=3"});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, topk_attrs(3, 1, false), "rows smallest"});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, topk_attrs(5, 1, true, false), "rows unsorted"});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, topk_attrs(17, 1), "k = size (full sort)"});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, topk_attrs(0, 1), "k = 0"});
  s.push_back({{sample_uniform({17, 7}, dt, g)}, topk_attrs(5, 0), "dim 0"});
  s.push_back({{sample_uniform({3, 17, 5}, dt, g)}, topk_attrs(4, 1, false, false), "3-d middle, smallest unsorted"});
  s.push_back({{sample_transposed({17, 33}, dt, g)}, topk_attrs(7, 1), "transposed"});
  s.push_back({{sample_uniform({256, 64}, dt, g)}, topk_attrs(8, 1), "router 256 tokens x 64 experts, k=8"});
  s.push_back({{sample_uniform({2, 32000}, dt, g)}, topk_attrs(50, 1), "vocab 32000, k=50"});
  // Ties decide which index wins; in integers so that gradcheck (which central
  // differences at a tie would not confirm) leaves them to the kernel comparison.
  Tensor ties = randint(0, 3, {7, 17}, DType::i64, &g);
  s.push_back({{ties}, topk_attrs(5, 1), "ties (i64), largest"});
  s.push_back({{ties}, topk_attrs(5, 1, false), "ties (i64), smallest"});
  s.push_back({{ties.t()}, topk_attrs(9, 0, true, false), "ties (i64), dim 0 unsorted"});
  return s;
}

}  // namespace

const OpImpl topk_impl{topk_meta, kernels::topk_ref, topk_backward, topk_samples, nullptr};

}  // namespace qs::ops

namespace qs {

ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted) {
  QS_CHECK(x.dim() >= 1, "topk: expected a tensor of rank >= 1, got a 0-d tensor");
  int64_t d = wrap_dim(dim, x.dim(), "topk");
  auto r = ops::dispatch(ops::OpKind::topk, {x}, Attrs().set("k", k).set("dim", d).set("largest", largest).set("sorted", sorted));
  return {r[0], r[1]};
}

}  // namespace qs
