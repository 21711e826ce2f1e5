// Matrix products: matmul (batched, broadcast batch dims) and linear.
#include "kernels/matmul_layout.h"
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"

namespace qs::ops {

namespace {

// Under autocast, bf16 operands produce f32 results (f32 accumulation).
DType result_dtype(DType a) { return a == DType::bf16 ? DType::f32 : a; }

std::vector<TensorSpec> matmul_meta(const OpCall& c) {
  const Tensor &a = c.in[0], &b = c.in[1];
  QS_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: the primitive needs rank >= 2 operands, got {} and {}",
           shape_str(a.shape()), shape_str(b.shape()));
  QS_CHECK(a.dtype() == b.dtype(), "matmul: dtypes differ ({} vs {})", dtype_name(a.dtype()), dtype_name(b.dtype()));
  QS_CHECK(a.is_floating_point(), "matmul: expected floating-point operands, got {}", dtype_name(a.dtype()));
  QS_CHECK(a.size(-1) == b.size(-2), "matmul: inner dimensions differ: {} @ {} ({} vs {})", shape_str(a.shape()),
           shape_str(b.shape()), a.size(-1), b.size(-2));
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape out = broadcast_shapes(ba, bb);
  out.push_back(a.size(-2));
  out.push_back(b.size(-1));
  return {{out, result_dtype(a.dtype())}};
}

std::vector<Tensor> matmul_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor &a = c.in[0], &b = c.in[1];
  Tensor ga, gb;
  Tensor gg = g[0].to(a.dtype());
  if (c.needs_grad[0]) ga = matmul(gg, b.transpose(-1, -2));
  if (c.needs_grad[1]) gb = matmul(a.transpose(-1, -2), gg);
  return {ga, gb};
}

std::vector<Sample> matmul_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : {1, 3, 7, 17, 33})
    s.push_back({{sample_uniform({n, n + 2}, dt, g), sample_uniform({n + 2, 5}, dt, g)}, {}, fmt::format("M={}", n)});
  s.push_back({{sample_transposed({7, 17}, dt, g), sample_transposed({17, 3}, dt, g)}, {}, "both transposed"});
  s.push_back({{sample_uniform({2, 3, 5, 7}, dt, g), sample_uniform({3, 7, 4}, dt, g)}, {}, "broadcast batch"});
  s.push_back({{sample_uniform({4, 1, 5, 7}, dt, g), sample_uniform({1, 3, 7, 2}, dt, g)}, {}, "broadcast both"});
  s.push_back({{sample_uniform({64, 127}, dt, g), sample_uniform({127, 96}, dt, g)}, {}, "64x127x96"});
  return s;
}

std::vector<TensorSpec> linear_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &b = c.in[2];
  QS_CHECK(x.dim() >= 1 && w.dim() == 2, "linear: expected x [..., K] and w [N, K], got {} and {}", shape_str(x.shape()),
           shape_str(w.shape()));
  QS_CHECK(x.size(-1) == w.size(1), "linear: x has {} features but the weight {} expects {}", x.size(-1),
           shape_str(w.shape()), w.size(1));
  QS_CHECK(x.dtype() == w.dtype(), "linear: dtypes differ (x {} vs w {})", dtype_name(x.dtype()), dtype_name(w.dtype()));
  if (b.defined())
    QS_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "linear: bias shape {} does not match {} outputs",
             shape_str(b.shape()), w.size(0));
  const std::string act = c.attrs.has("activation") ? c.attrs.s("activation") : "none";
  QS_CHECK(act == "none" || act == "gelu", "linear: activation must be 'none' or 'gelu', got '{}'", act);
  Shape out = x.shape();
  out.back() = w.size(0);
  return {{out, result_dtype(x.dtype())}};
}

std::vector<Tensor> linear_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor &x = c.in[0], &w = c.in[1];
  // gelu activation: the gradient through it, at the recomputed pre-activation.
  const Tensor g0 = kernels::linear_gelu(c.attrs) ? gelu_grad(g[0], linear(x, w, c.in[2]).to(g[0].dtype())) : g[0];
  int64_t N = w.size(0), K = w.size(1);
  Tensor gx, gw, gb;
  // The bias gradient sums g0 beside another pass over it, while it is in cache: after the
  // products when they read g0 itself, before the cast when they read its bf16 copy
  // (autocast; summing after those products read g0 back from memory, 1.3-1.6x the time).
  const bool cast = g0.dtype() != x.dtype();
  if (c.needs_grad[2] && cast) gb = sum(g0.reshape({-1, N}), {0});
  Tensor g2 = g0.to(x.dtype()).reshape({-1, N});
  if (c.needs_grad[0]) gx = matmul(g2, w).reshape(x.shape());
  if (c.needs_grad[1]) gw = matmul(g2.t(), x.reshape({-1, K}));
  if (c.needs_grad[2] && !cast) gb = sum(g0.reshape({-1, N}), {0});
  return {gx, gw, gb};
}

std::vector<Sample> linear_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  for (int64_t n : {1, 3, 7, 17, 33})
    s.push_back({{sample_uniform({n, 5}, dt, g), sample_uniform({n + 1, 5}, dt, g), sample_uniform({n + 1}, dt, g)},
                 {}, fmt::format("N={}", n + 1)});
  s.push_back({{sample_uniform({2, 3, 7}, dt, g), sample_uniform({4, 7}, dt, g), Tensor()}, {}, "3d no bias"});
  s.push_back({{sample_transposed({7, 9}, dt, g), sample_transposed({6, 9}, dt, g), sample_uniform({6}, dt, g)}, {}, "strided"});
  s.push_back({{sample_uniform({128, 256}, dt, g), sample_uniform({64, 256}, dt, g), sample_uniform({64}, dt, g)}, {}, "128x256x64"});
  const Attrs gelu = Attrs().set("activation", std::string("gelu"));
  s.push_back({{sample_uniform({7, 17}, dt, g, -2, 2), sample_uniform({33, 17}, dt, g), sample_uniform({33}, dt, g)}, gelu,
               "gelu 7x17x33"});
  s.push_back({{sample_transposed({3, 5, 9}, dt, g, -2, 2), sample_uniform({6, 9}, dt, g), Tensor()}, gelu,
               "gelu strided no bias"});
  s.push_back({{sample_uniform({64, 256}, dt, g), sample_uniform({96, 256}, dt, g), sample_uniform({96}, dt, g)}, gelu,
               "gelu 64x256x96"});
  // at most 4 rows: the GEMV kernel (tails of K and of the 4-row passes, threaded and not)
  s.push_back({{sample_uniform({1, 37}, dt, g), sample_uniform({9, 37}, dt, g), sample_uniform({9}, dt, g)}, {},
               "gemv 1x37x9"});
  s.push_back({{sample_uniform({4, 40}, dt, g), sample_uniform({13, 40}, dt, g), Tensor()}, {}, "gemv 4x40x13 no bias"});
  s.push_back({{sample_transposed({3, 24}, dt, g, -2, 2), sample_uniform({6, 24}, dt, g), sample_uniform({6}, dt, g)},
               gelu, "gemv gelu strided x 3x24x6"});
  s.push_back({{sample_uniform({1, 1, 512}, dt, g), sample_uniform({70, 512}, dt, g), sample_uniform({70}, dt, g)}, {},
               "gemv 1x512x70 (threaded)"});
  return s;
}

}  // namespace

const OpImpl matmul_impl{matmul_meta, kernels::matmul_ref, matmul_backward, matmul_samples, nullptr};
const OpImpl linear_impl{linear_meta, kernels::linear_ref, linear_backward, linear_samples, nullptr};

}  // namespace qs::ops

namespace qs {

Tensor matmul(const Tensor& a, const Tensor& b) {
  QS_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: 0-dim operands are not allowed ({} @ {})", shape_str(a.shape()),
           shape_str(b.shape()));
  if (a.dim() == 1 && b.dim() == 1) return matmul(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  return ops::dispatch1(ops::OpKind::matmul, {a, b});
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) { return ops::dispatch1(ops::OpKind::linear, {x, w, b}); }
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, const std::string& activation) {
  if (activation == "none") return linear(x, w, b);
  return ops::dispatch1(ops::OpKind::linear, {x, w, b}, Attrs().set("activation", activation));
}

}  // namespace qs
