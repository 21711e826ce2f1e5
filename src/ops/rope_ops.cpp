// Rotary position embedding (rotate-half layout) as a primitive: shape rules, the
// gradient (the rotation by the opposite angle, plus the gradients of the tables),
// samples, and the functional API.
#include <cmath>

#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"

namespace qs::ops {

namespace {

std::vector<TensorSpec> rope_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &cos = c.in[1], &sin = c.in[2];
  QS_CHECK(x.defined() && cos.defined() && sin.defined(), "rope: x, cos and sin are all required");
  QS_CHECK(x.dim() >= 2 && x.size(-1) > 0 && x.size(-1) % 2 == 0, "rope: x must be [..., n, d] with d even and > 0, got {}",
           shape_str(x.shape()));
  QS_CHECK(x.is_floating_point(), "rope: x must be floating point, got {}", dtype_name(x.dtype()));
  const int64_t n = x.size(-2), half = x.size(-1) / 2;
  QS_CHECK((cos.shape() == Shape{n, half} && sin.shape() == Shape{n, half}),
           "rope: cos and sin must be [n, d / 2] = [{}, {}] for x {}, got {} and {}", n, half, shape_str(x.shape()),
           shape_str(cos.shape()), shape_str(sin.shape()));
  QS_CHECK(cos.dtype() == x.dtype() && sin.dtype() == x.dtype(), "rope: cos and sin must have x's dtype {}, got {} and {}",
           dtype_name(x.dtype()), dtype_name(cos.dtype()), dtype_name(sin.dtype()));
  return {{x.shape(), x.dtype()}};
}

// The rotation is orthogonal, so dx is g rotated back: rope(g, cos, -sin). The tables
// get, per [..., t, j], g1 x1 + g2 x2 (cos) and g2 x1 - g1 x2 (sin), summed over the
// leading dims by the engine.
std::vector<Tensor> rope_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor &x = c.in[0], &cos = c.in[1], &sin = c.in[2];
  Tensor dx, dcos, dsin;
  if (c.needs_grad[0]) dx = rope(g[0], cos, neg(sin));
  if (c.needs_grad[1] || c.needs_grad[2]) {
    const int64_t h = x.size(-1) / 2;
    Tensor g1 = g[0].narrow(-1, 0, h), g2 = g[0].narrow(-1, h, h);
    Tensor x1 = x.narrow(-1, 0, h), x2 = x.narrow(-1, h, h);
    if (c.needs_grad[1]) dcos = g1 * x1 + g2 * x2;
    if (c.needs_grad[2]) dsin = g2 * x1 - g1 * x2;
  }
  return {dx, dcos, dsin};
}

// cos/sin of pos * 10000^(-j / h) for positions first .. first + n - 1 (the usual tables).
std::pair<Tensor, Tensor> rope_tables(int64_t n, int64_t h, DType dt, int64_t first = 0) {
  std::vector<double> cs(size_t(n * h)), sn(size_t(n * h));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < h; ++j) {
      double angle = double(first + t) * std::pow(10000.0, -double(j) / double(h));
      cs[size_t(t * h + j)] = std::cos(angle);
      sn[size_t(t * h + j)] = std::sin(angle);
    }
  return {from_vector(cs, {n, h}, dt), from_vector(sn, {n, h}, dt)};
}

std::vector<Sample> rope_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  auto add = [&](Tensor x, int64_t first, std::string label) {
    auto [cs, sn] = rope_tables(x.size(-2), x.size(-1) / 2, dt, first);
    s.push_back({{x, cs, sn}, {}, std::move(label)});
  };
  const std::vector<std::pair<int64_t, int64_t>> nd = {{1, 2}, {3, 6}, {7, 14}, {17, 34}, {33, 2}, {127, 66}};
  for (auto [n, d] : nd) add(sample_uniform({n, d}, dt, g), 0, fmt::format("n={} d={}", n, d));
  add(sample_uniform({2, 3, 7, 34}, dt, g), 5, "b=2 h=3 n=7 d=34, positions from 5");
  // A head slice of a fused projection [b, n, 3 * H * d] seen as [b, H, n, d]: the last
  // dim is contiguous, the others are not.
  Tensor qkv = sample_uniform({2, 5, 3 * 4 * 6}, dt, g).view({2, 5, 3, 4, 6});
  add(qkv.select(2, 1).permute({0, 2, 1, 3}), 0, "k slice of qkv [2, 4, 5, 6]");
  add(sample_transposed({7, 6}, dt, g), 0, "transposed (last dim strided)");
  add(sample_uniform({1, 8, 128, 64}, dt, g), 0, "b=1 h=8 n=128 d=64");
  // Tables that are a window of a longer one (decoding with a KV cache).
  auto [cs, sn] = rope_tables(40, 3, dt);
  s.push_back({{sample_uniform({2, 5, 6}, dt, g), cs.narrow(0, 17, 5), sn.narrow(0, 17, 5)}, {}, "table rows 17..21"});
  return s;
}

}  // namespace

const OpImpl rope_impl{rope_meta, kernels::rope_ref, rope_backward, rope_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin) { return ops::dispatch1(ops::OpKind::rope, {x, cos, sin}); }

}  // namespace qs
