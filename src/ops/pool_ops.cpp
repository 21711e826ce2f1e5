// Pooling primitives (max, average, adaptive average over 1 to 3 spatial dims), their
// backward primitives, samples and the functional API.
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "kernels/spatial.h"

namespace qs::ops {

namespace {

void check_float(const Tensor& x, const char* op) {
  QS_CHECK(x.is_floating_point(), "{}: expected a floating-point input, got {}", op, dtype_name(x.dtype()));
}

// f32/f64 (differentiable, indices i64 of the output's shape), or u8 quantised codes:
// inference only, no backward (u8 tensors never require grad) and no indices (the second
// output is an empty i64 [0]); the max of codes is the code of the max because quantisation
// is monotone. A channels-last u8 input gives a channels-last output.
std::vector<TensorSpec> max_pool_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  bool u8 = x.dtype() == DType::u8;
  QS_CHECK(x.is_floating_point() || u8, "max_pool: expected a floating-point or u8 (quantised, inference-only) input, "
           "got {}", dtype_name(x.dtype()));
  Spatial g = pool_spatial(x.shape(), c.attrs, "max_pool", 2, 3);
  Shape out = spatial_shape(g, g.C, true);
  if (!u8) return {{out, x.dtype()}, {out, DType::i64}};
  TensorSpec y{out, DType::u8};
  if (is_channels_last(x)) y.layout = channels_last_layout(x.dim());
  return {y, {Shape{0}, DType::i64}};
}
std::vector<TensorSpec> avg_pool_meta(const OpCall& c) {
  check_float(c.in[0], "avg_pool");
  Spatial g = pool_spatial(c.in[0].shape(), c.attrs, "avg_pool", 2, 3);
  return {{spatial_shape(g, g.C, true), c.in[0].dtype()}};
}
std::vector<TensorSpec> adaptive_avg_pool_meta(const OpCall& c) {
  check_float(c.in[0], "adaptive_avg_pool");
  Spatial g = adaptive_spatial(c.in[0].shape(), c.attrs, "adaptive_avg_pool");
  return {{spatial_shape(g, g.C, true), c.in[0].dtype()}};
}

// Backward rows: (dy[, indices]) -> dx [input_shape]; dy must have the forward output's shape.
std::vector<TensorSpec> pool_backward_meta(const OpCall& c) {
  const Tensor& gy = c.in[0];
  const char* name = op_def(c.op).name;
  check_float(gy, name);
  const Shape& xs = c.attrs.ints("input_shape");
  Spatial g = c.op == OpKind::adaptive_avg_pool_backward ? adaptive_spatial(xs, c.attrs, name)
                                                         : pool_spatial(xs, c.attrs, name, 2, 3);
  Shape out = spatial_shape(g, g.C, true);
  QS_CHECK(gy.shape() == out, "{}: gradient {} does not match the forward output {}", name, shape_str(gy.shape()),
           shape_str(out));
  if (c.op == OpKind::max_pool_backward)
    QS_CHECK(c.in[1].dtype() == DType::i64 && c.in[1].shape() == out, "max_pool_backward: indices must be i64 {}, got "
             "{} {}", shape_str(out), dtype_name(c.in[1].dtype()), shape_str(c.in[1].shape()));
  return {{xs, gy.dtype()}};
}

Attrs with_input_shape(const GradCtx& c) {
  Attrs a = c.attrs;
  a.set("input_shape", c.in_spec[0].shape);
  return a;
}
std::vector<Tensor> max_pool_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  if (!g[0].defined()) return {Tensor()};
  return {dispatch1(OpKind::max_pool_backward, {g[0], c.out[1]}, with_input_shape(c))};
}
std::vector<Tensor> avg_pool_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  return {dispatch1(OpKind::avg_pool_backward, {g[0]}, with_input_shape(c))};
}
std::vector<Tensor> adaptive_avg_pool_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  return {dispatch1(OpKind::adaptive_avg_pool_backward, {g[0]}, with_input_shape(c))};
}

struct PoolCase {
  Shape x;
  Attrs a;
  const char* label;
  bool transposed = false;
};
Attrs pool_attrs(std::vector<int64_t> k, std::vector<int64_t> s, std::vector<int64_t> p) {
  return Attrs().set("kernel", k).set("stride", s).set("padding", p);
}
std::vector<PoolCase> pool_cases(OpKind op, DType dt) {
  std::vector<PoolCase> cs;
  if (op == OpKind::adaptive_avg_pool) {
    cs = {{{2, 3, 7, 5}, Attrs().set("output_size", Shape{3, 2}), "2d 7x5 -> 3x2"},
          {{1, 2, 17}, Attrs().set("output_size", Shape{5}), "1d 17 -> 5"},
          {{2, 3, 5, 5}, Attrs().set("output_size", Shape{1}), "global", true},
          {{1, 2, 3, 4, 5}, Attrs().set("output_size", Shape{2, 3, 3}), "3d upsampling 3x4x5 -> 2x3x3"}};
    if (dt == DType::f32) cs.push_back({{32, 128, 7, 7}, Attrs().set("output_size", Shape{1}), "cnn global pool"});
    return cs;
  }
  cs = {{{2, 3, 6, 6}, pool_attrs({2}, {2}, {0}), "2d 2x2"},
        {{1, 2, 7, 5}, pool_attrs({3, 2}, {2, 1}, {1, 1}), "2d 3x2 stride 2,1 pad 1"},
        {{2, 3, 5, 7}, pool_attrs({3}, {}, {1}), "2d strided x, default stride", true},
        {{1, 2, 5, 4, 6}, pool_attrs({2}, {2}, {0}), "3d 2x2x2"},
        {{1, 1, 3, 5, 3}, pool_attrs({3}, {1}, {1}), "3d 3x3x3 pad 1"}};
  if (op == OpKind::avg_pool) {
    cs.push_back({{1, 2, 7, 5}, pool_attrs({3, 2}, {2, 1}, {1, 1}).set("count_include_pad", false), "exclude pad"});
    cs.push_back({{1, 1, 3, 5, 3}, pool_attrs({3}, {1}, {1}).set("count_include_pad", false), "3d exclude pad"});
  }
  if (dt == DType::f32) {
    cs.push_back({{16, 32, 28, 28}, pool_attrs({2}, {2}, {0}), "cnn pool1 (16 images)"});
    cs.push_back({{2, 16, 32, 32, 32}, pool_attrs({2}, {2}, {0}), "cnn3d pool1 (2 volumes)"});
  }
  return cs;
}

std::vector<Sample> pool_samples(OpKind op, DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (auto& k : pool_cases(op, dt)) {
    Tensor x = k.transposed ? sample_transposed(k.x, dt, gen) : sample_uniform(k.x, dt, gen);
    s.push_back({{x}, k.a, k.label});
  }
  return s;
}
// u8 codes (with the f32 run): the plain cases, channels-last views (permuted contiguous
// [N, spatial..., C]) with C = 1, 17, 32, 33 and 64 around the AVX2 kernel's 32-channel
// steps, the CNN's 2x2 stride-2 pools, padding and odd windows.
std::vector<Sample> max_pool_u8_samples(Generator& gen) {
  std::vector<Sample> s;
  for (auto& k : pool_cases(OpKind::max_pool, DType::u8))
    s.push_back({{randint(0, 256, k.x, DType::u8, &gen)}, k.a, "u8 " + std::string(k.label)});
  auto cl = [&](Shape nchw, Attrs a, std::string label) {
    Shape phys{nchw[0]};
    for (size_t d = 2; d < nchw.size(); ++d) phys.push_back(nchw[d]);
    phys.push_back(nchw[1]);
    auto l = channels_last_layout(int64_t(nchw.size()));
    Shape inv(l.size());
    for (size_t k = 0; k < l.size(); ++k) inv[size_t(l[k])] = int64_t(k);
    s.push_back({{randint(0, 256, phys, DType::u8, &gen).permute(inv)}, a, "u8 channels-last " + label});
  };
  cl({2, 32, 6, 6}, pool_attrs({2}, {2}, {0}), "2x2 C=32");
  cl({3, 33, 7, 5}, pool_attrs({2}, {2}, {0}), "2x2 odd plane C=33");
  cl({1, 17, 7, 5}, pool_attrs({3, 2}, {2, 1}, {1, 1}), "3x2 stride 2,1 pad 1 C=17");
  cl({2, 64, 9, 9}, pool_attrs({3}, {2}, {1}), "3x3 stride 2 pad 1 C=64");
  cl({1, 1, 5, 4}, pool_attrs({2}, {1}, {0}), "2x2 stride 1 C=1");
  cl({2, 40, 4, 6, 5}, pool_attrs({2}, {2}, {0}), "3d 2x2x2 C=40");
  cl({16, 32, 28, 28}, pool_attrs({2}, {2}, {0}), "cnn pool1 (16 images)");
  cl({16, 64, 14, 14}, pool_attrs({2}, {2}, {0}), "cnn pool2 (16 images)");
  return s;
}
std::vector<Sample> max_pool_samples(DType dt, Generator& g) {
  auto s = pool_samples(OpKind::max_pool, dt, g);
  if (dt == DType::f32)
    for (auto& u : max_pool_u8_samples(g)) s.push_back(std::move(u));
  return s;
}
std::vector<Sample> avg_pool_samples(DType dt, Generator& g) { return pool_samples(OpKind::avg_pool, dt, g); }
std::vector<Sample> adaptive_avg_pool_samples(DType dt, Generator& g) {
  return pool_samples(OpKind::adaptive_avg_pool, dt, g);
}

// Backward samples: the forward samples' output shapes as gradients (max pool: with the
// indices of a forward run on the reference kernel).
std::vector<Sample> pool_backward_samples(OpKind fwd_op, DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (auto& f : pool_samples(fwd_op, dt, gen)) {
    OpCall fwd{fwd_op, f.in, f.attrs, {}};
    auto specs = run_meta(fwd);
    for (auto& sp : specs) fwd.out.push_back(empty(sp.shape, sp.dtype));
    Attrs a = f.attrs;
    a.set("input_shape", f.in[0].shape());
    std::vector<Tensor> in{sample_uniform(specs[0].shape, dt, gen)};
    if (fwd_op == OpKind::max_pool) {
      op_def(fwd_op).impl->ref(fwd);
      in.push_back(fwd.out[1]);
    }
    s.push_back({in, a, f.label, {0}});
  }
  return s;
}
std::vector<Sample> max_pool_backward_samples(DType dt, Generator& g) {
  return pool_backward_samples(OpKind::max_pool, dt, g);
}
std::vector<Sample> avg_pool_backward_samples(DType dt, Generator& g) {
  return pool_backward_samples(OpKind::avg_pool, dt, g);
}
std::vector<Sample> adaptive_avg_pool_backward_samples(DType dt, Generator& g) {
  return pool_backward_samples(OpKind::adaptive_avg_pool, dt, g);
}

}  // namespace

const OpImpl max_pool_impl{max_pool_meta, kernels::max_pool_ref, max_pool_backward, max_pool_samples, nullptr};
const OpImpl max_pool_backward_impl{pool_backward_meta, kernels::max_pool_backward_ref, nullptr,
                                    max_pool_backward_samples, nullptr};
const OpImpl avg_pool_impl{avg_pool_meta, kernels::avg_pool_ref, avg_pool_backward, avg_pool_samples, nullptr};
const OpImpl avg_pool_backward_impl{pool_backward_meta, kernels::avg_pool_backward_ref, nullptr,
                                    avg_pool_backward_samples, nullptr};
const OpImpl adaptive_avg_pool_impl{adaptive_avg_pool_meta, kernels::adaptive_avg_pool_ref, adaptive_avg_pool_backward,
                                    adaptive_avg_pool_samples, nullptr};
const OpImpl adaptive_avg_pool_backward_impl{pool_backward_meta, kernels::adaptive_avg_pool_backward_ref, nullptr,
                                             adaptive_avg_pool_backward_samples, nullptr};

}  // namespace qs::ops

namespace qs {

namespace {
Attrs pool_attrs(const SizeArg& kernel, const SizeArg& stride, const SizeArg& padding) {
  return Attrs().set("kernel", kernel.v).set("stride", stride.v).set("padding", padding.v);
}
void check_rank(const Tensor& x, int nsp, const char* op) {
  QS_CHECK(x.dim() == nsp + 2, "{}: expected an input [N, C, {} spatial dims], got {}", op, nsp, shape_str(x.shape()));
}
}  // namespace

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, SizeArg kernel, SizeArg stride, SizeArg padding) {
  check_rank(x, 2, "max_pool2d");
  auto r = ops::dispatch(ops::OpKind::max_pool, {x}, pool_attrs(kernel, stride, padding));
  return {r[0], r[1]};
}
std::pair<Tensor, Tensor> max_pool3d_with_indices(const Tensor& x, SizeArg kernel, SizeArg stride, SizeArg padding) {
  check_rank(x, 3, "max_pool3d");
  auto r = ops::dispatch(ops::OpKind::max_pool, {x}, pool_attrs(kernel, stride, padding));
  return {r[0], r[1]};
}
Tensor max_pool2d(const Tensor& x, SizeArg kernel, SizeArg stride, SizeArg padding) {
  return max_pool2d_with_indices(x, kernel, stride, padding).first;
}
Tensor max_pool3d(const Tensor& x, SizeArg kernel, SizeArg stride, SizeArg padding) {
  return max_pool3d_with_indices(x, kernel, stride, padding).first;
}
Tensor avg_pool2d(const Tensor& x, SizeArg kernel, SizeArg stride, SizeArg padding, bool count_include_pad) {
  check_rank(x, 2, "avg_pool2d");
  return ops::dispatch1(ops::OpKind::avg_pool, {x},
                        pool_attrs(kernel, stride, padding).set("count_include_pad", count_include_pad));
}
Tensor avg_pool3d(const Tensor& x, SizeArg kernel, SizeArg stride, SizeArg padding, bool count_include_pad) {
  check_rank(x, 3, "avg_pool3d");
  return ops::dispatch1(ops::OpKind::avg_pool, {x},
                        pool_attrs(kernel, stride, padding).set("count_include_pad", count_include_pad));
}
Tensor adaptive_avg_pool1d(const Tensor& x, SizeArg output_size) {
  check_rank(x, 1, "adaptive_avg_pool1d");
  return ops::dispatch1(ops::OpKind::adaptive_avg_pool, {x}, Attrs().set("output_size", output_size.v));
}
Tensor adaptive_avg_pool2d(const Tensor& x, SizeArg output_size) {
  check_rank(x, 2, "adaptive_avg_pool2d");
  return ops::dispatch1(ops::OpKind::adaptive_avg_pool, {x}, Attrs().set("output_size", output_size.v));
}
Tensor adaptive_avg_pool3d(const Tensor& x, SizeArg output_size) {
  check_rank(x, 3, "adaptive_avg_pool3d");
  return ops::dispatch1(ops::OpKind::adaptive_avg_pool, {x}, Attrs().set("output_size", output_size.v));
}

}  // namespace qs
