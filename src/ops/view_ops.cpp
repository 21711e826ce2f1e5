// View primitives (metadata only, aliasing their input) and copies.
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "tensor/strided.h"

namespace qs::ops {

namespace {

Tensor alias(const Tensor& x, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = x.dtype();
  return Tensor(impl);
}

Tensor view_view(const OpCall& c) {
  const Tensor& x = c.in[0];
  Shape st;
  const Shape& shape = c.attrs.ints("shape");
  QS_CHECK(compute_view_strides(x.shape(), x.strides(), shape, st), "view: cannot view {} as {}",
           shape_str(x.shape()), shape_str(shape));
  return alias(x, shape, st, x.offset());
}
std::vector<Tensor> view_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  return {g[0].reshape(c.in_spec[0].shape)};
}
std::vector<Sample> view_samples(DType dt, Generator& g) {
  return {{{sample_uniform({3, 7}, dt, g)}, Attrs().set("shape", Shape{7, 3}), "3x7->7x3"},
          {{sample_uniform({2, 3, 5}, dt, g)}, Attrs().set("shape", Shape{6, 5}), "merge"},
          {{sample_uniform({33}, dt, g)}, Attrs().set("shape", Shape{3, 11, 1}), "split"}};
}

Tensor permute_view(const OpCall& c) {
  const Tensor& x = c.in[0];
  const Shape& d = c.attrs.ints("dims");
  Shape shape(d.size()), st(d.size());
  for (size_t i = 0; i < d.size(); ++i) {
    shape[i] = x.shape()[size_t(d[i])];
    st[i] = x.strides()[size_t(d[i])];
  }
  return alias(x, shape, st, x.offset());
}
std::vector<Tensor> permute_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Shape& d = c.attrs.ints("dims");
  Shape inv(d.size());
  for (size_t i = 0; i < d.size(); ++i) inv[size_t(d[i])] = int64_t(i);
  return {g[0].permute(inv)};
}
std::vector<Sample> permute_samples(DType dt, Generator& g) {
  return {{{sample_uniform({3, 7}, dt, g)}, Attrs().set("dims", Shape{1, 0}), "transpose"},
          {{sample_uniform({2, 3, 5}, dt, g)}, Attrs().set("dims", Shape{2, 0, 1}), "3d"}};
}

Tensor slice_view(const OpCall& c) {
  const Tensor& x = c.in[0];
  int64_t d = c.attrs.i("dim"), start = c.attrs.i("start"), end = c.attrs.i("end"), step = c.attrs.i("step");
  Shape shape = x.shape(), st = x.strides();
  shape[size_t(d)] = end > start ? (end - start + step - 1) / step : 0;
  st[size_t(d)] *= step;
  return alias(x, shape, st, x.offset() + start * x.strides()[size_t(d)]);
}
std::vector<Tensor> slice_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  Tensor r = zeros(c.in_spec[0].shape, g[0].dtype());
  Tensor window = r.slice(c.attrs.i("dim"), c.attrs.i("start"), c.attrs.i("end"), c.attrs.i("step"));
  strided_copy(window, g[0]);
  return {r};
}
std::vector<Sample> slice_samples(DType dt, Generator& g) {
  return {{{sample_uniform({7, 17}, dt, g)}, Attrs().set("dim", 1).set("start", 3).set("end", 16).set("step", 2), "step 2"},
          {{sample_uniform({7, 17}, dt, g)}, Attrs().set("dim", 0).set("start", 1).set("end", 4).set("step", 1), "rows"}};
}

Tensor expand_view(const OpCall& c) {
  const Tensor& x = c.in[0];
  const Shape& shape = c.attrs.ints("shape");
  return alias(x, shape, broadcast_strides(x, shape), x.offset());
}
std::vector<Tensor> expand_backward(const GradCtx& c, const std::vector<Tensor>& g) { return {g[0]}; }
std::vector<Sample> expand_samples(DType dt, Generator& g) {
  return {{{sample_uniform({3, 1}, dt, g)}, Attrs().set("shape", Shape{2, 3, 7}), "expand"}};
}

std::vector<TensorSpec> copy_meta(const OpCall& c) { return {{c.in[0].shape(), c.in[0].dtype()}}; }
std::vector<Tensor> identity_backward(const GradCtx& c, const std::vector<Tensor>& g) { return {g[0]}; }
std::vector<Sample> copy_samples(DType dt, Generator& g) {
  return {{{sample_transposed({7, 17}, dt, g)}, {}, "transposed"}, {{sample_uniform({33}, dt, g)}, {}, "33"}};
}

std::vector<TensorSpec> cast_meta(const OpCall& c) {
  int64_t t = c.attrs.i("dtype");
  QS_CHECK(t >= 0 && t < kNumDTypes, "cast: unknown dtype code {}", t);
  return {{c.in[0].shape(), DType(t)}};
}
// 7 x 17 values: vectors of eight and a tail. bf16 both ways (autocast's casts).
std::vector<Sample> cast_samples(DType dt, Generator& g) {
  auto to = [](DType t) { return Attrs().set("dtype", int64_t(t)); };
  DType other = dt == DType::f64 ? DType::f32 : DType::f64;
  std::vector<Sample> s = {{{sample_uniform({7, 17}, dt, g)}, to(other), "float cast"}};
  if (dt == DType::f32) s.push_back({{sample_uniform({7, 17}, dt, g, -300, 300)}, to(DType::bf16), "to bf16"});
  if (dt == DType::bf16) s.push_back({{sample_uniform({7, 17}, dt, g)}, to(DType::f32), "bf16 to f32"});
  if (dt == DType::f32) {  // f16 both ways (a half-precision KV cache): overflow, subnormals, strided
    Tensor x = sample_uniform({7, 17}, dt, g, -1, 1);
    x.select(0, 1).copy_(x.select(0, 1) * 1e5);   // beyond 65504: inf
    x.select(0, 2).copy_(x.select(0, 2) * 1e-5);  // subnormal halves
    x.select(0, 3).copy_(x.select(0, 3) * 1e-8);  // below the smallest: 0 or the smallest
    s.push_back({{x}, to(DType::f16), "to f16"});
    s.push_back({{sample_transposed({9, 13}, dt, g, -3, 3)}, to(DType::f16), "strided to f16"});
    s.push_back({{sample_uniform({7, 17}, dt, g, -8, 8).to(DType::f16)}, to(DType::f32), "f16 to f32"});
    s.push_back({{sample_uniform({5, 11}, dt, g).to(DType::f16)}, to(DType::f64), "f16 to f64"});
  }
  return s;
}

}  // namespace

const OpImpl view_impl{nullptr, nullptr, view_backward, view_samples, view_view};
const OpImpl permute_impl{nullptr, nullptr, permute_backward, permute_samples, permute_view};
const OpImpl slice_impl{nullptr, nullptr, slice_backward, slice_samples, slice_view};
const OpImpl expand_impl{nullptr, nullptr, expand_backward, expand_samples, expand_view};
const OpImpl copy_impl{copy_meta, kernels::copy_ref, identity_backward, copy_samples, nullptr};
const OpImpl cast_impl{cast_meta, kernels::copy_ref, identity_backward, cast_samples, nullptr};

}  // namespace qs::ops
