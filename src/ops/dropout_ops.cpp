// dropout as a seeded primitive: the mask is a pure function of the "seed" attribute and
// the element index (kernels/dropout_mask.h), so forward, backward and every kernel agree
// and nothing but the seed is saved.
#include <omp.h>

#include "kernels/dropout_mask.h"
#include "kernels/elementwise_fns.h"
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"

namespace qs::ops {

using kernels::visit_float;

namespace {

std::vector<TensorSpec> dropout_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  QS_CHECK(x.is_floating_point(), "dropout: expected a floating-point tensor, got {}", dtype_name(x.dtype()));
  double p = c.attrs.f("p");
  QS_CHECK(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got {}", p);
  QS_CHECK(c.attrs.has("seed"), "dropout: the seed attribute is missing");
  return {{x.shape(), x.dtype()}};
}

// gx = g * mask / (1 - p), the mask regenerated from the seed.
std::vector<Tensor> dropout_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  Tensor gc = g[0].contiguous();
  Tensor gx = empty(gc.shape(), gc.dtype());
  double p = c.attrs.f("p");
  uint64_t seed = uint64_t(c.attrs.i("seed"));
  visit_float(gc.dtype(), "dropout backward", [&]<class T>() {
    const T* gp = gc.data_ptr<T>();
    T* o = gx.data_ptr<T>();
    int64_t n = gc.numel();
#pragma omp parallel for if (n > 32768)
    for (int64_t i = 0; i < n; ++i) o[i] = gp[i] * T(kernels::dropout_factor(seed, i, p));
  });
  return {gx};
}

std::vector<Sample> dropout_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  auto attrs = [](double p, int64_t seed) { return Attrs().set("p", p).set("seed", seed); };
  for (int64_t n : odd_sizes()) s.push_back({{sample_uniform({n}, dt, g)}, attrs(0.3, 17 + n), fmt::format("n={}", n)});
  s.push_back({{sample_transposed({7, 17}, dt, g)}, attrs(0.5, 3), "strided"});
  s.push_back({{sample_uniform({7, 17}, dt, g)}, attrs(1.0, 4), "p=1"});
  s.push_back({{sample_uniform({64, 512}, dt, g)}, attrs(0.1, 5), "64x512"});
  return s;
}

}  // namespace

const OpImpl dropout_impl{dropout_meta, kernels::dropout_ref, dropout_backward, dropout_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  QS_CHECK(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got {}", p);
  if (!training || p == 0.0) return x;
  Generator& g = gen ? *gen : default_generator();
  int64_t seed = int64_t(g.next_u64() >> 1);
  return ops::dispatch1(ops::OpKind::dropout, {x}, Attrs().set("p", p).set("seed", seed));
}

}  // namespace qs
