// Convolution over 1 to 3 spatial dims (rank of the input), its two backward
// primitives, samples and the functional API (conv1d / conv2d / conv3d).
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "kernels/spatial.h"

namespace qs::ops {

namespace {

// bf16 operands (autocast) accumulate in f32 and give an f32 result, as matmul does, or a
// bf16 one where attr out_dtype says "bf16" (autocast's kLowpOut: the activations of a
// conv net stay bf16). f32 and f64 operands give their own dtype.
DType result_dtype(DType a, const Attrs& attrs) {
  if (a != DType::bf16) return a;
  if (!attrs.has("out_dtype")) return DType::f32;
  const std::string& o = attrs.s("out_dtype");
  QS_CHECK(o == "bf16" || o == "f32", "convolution: out_dtype must be 'bf16' or 'f32', got '{}'", o);
  return o == "bf16" ? DType::bf16 : DType::f32;
}

std::vector<TensorSpec> convolution_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &b = c.in[2];
  QS_CHECK(x.is_floating_point() && x.dtype() == w.dtype(), "convolution: x and weight must share a floating dtype, got "
           "{} and {}", dtype_name(x.dtype()), dtype_name(w.dtype()));
  Spatial g = conv_spatial(x.shape(), w.shape(), c.attrs, "convolution");
  const std::string act = c.attrs.has("activation") ? c.attrs.s("activation") : "none";
  QS_CHECK(act == "none" || act == "relu", "convolution: activation must be 'none' or 'relu', got '{}'", act);
  int64_t O = w.size(0);
  if (b.defined()) {
    QS_CHECK(b.dim() == 1 && b.size(0) == O, "convolution: bias must be [{}], got {}", O, shape_str(b.shape()));
    QS_CHECK(b.dtype() == x.dtype() || (x.dtype() == DType::bf16 && b.dtype() == DType::f32), "convolution: bias "
             "dtype {} does not match x ({})", dtype_name(b.dtype()), dtype_name(x.dtype()));
  }
  return {{spatial_shape(g, O, true), result_dtype(x.dtype(), c.attrs)}};
}

// convolution_backward_data(g [N, O, out...], w) -> dx [input_shape]
std::vector<TensorSpec> convolution_backward_data_meta(const OpCall& c) {
  const Tensor &gy = c.in[0], &w = c.in[1];
  const Shape& xs = c.attrs.ints("input_shape");
  Spatial s = conv_spatial(xs, w.shape(), c.attrs, "convolution_backward_data");
  QS_CHECK(gy.shape() == spatial_shape(s, w.size(0), true), "convolution_backward_data: gradient {} does not match the "
           "output shape {}", shape_str(gy.shape()), shape_str(spatial_shape(s, w.size(0), true)));
  QS_CHECK(gy.dtype() == w.dtype(), "convolution_backward_data: dtypes differ ({} vs {})", dtype_name(gy.dtype()),
           dtype_name(w.dtype()));
  return {{xs, result_dtype(gy.dtype(), c.attrs)}};
}

// convolution_backward_weight(g [N, O, out...], x) -> dw [weight_shape], db [O]
std::vector<TensorSpec> convolution_backward_weight_meta(const OpCall& c) {
  const Tensor &gy = c.in[0], &x = c.in[1];
  const Shape& ws = c.attrs.ints("weight_shape");
  Spatial s = conv_spatial(x.shape(), ws, c.attrs, "convolution_backward_weight");
  QS_CHECK(gy.shape() == spatial_shape(s, ws[0], true), "convolution_backward_weight: gradient {} does not match the "
           "output shape {}", shape_str(gy.shape()), shape_str(spatial_shape(s, ws[0], true)));
  QS_CHECK(gy.dtype() == x.dtype(), "convolution_backward_weight: dtypes differ ({} vs {})", dtype_name(gy.dtype()),
           dtype_name(x.dtype()));
  const DType r = gy.dtype() == DType::bf16 ? DType::f32 : gy.dtype();  // f32 master weights' gradients
  return {{ws, r}, {{ws[0]}, r}};
}

std::vector<Tensor> convolution_backward(const GradCtx& c, const std::vector<Tensor>& g0) {
  if (!g0[0].defined()) return {Tensor(), Tensor(), Tensor()};
  // ReLU activation: the gradient passes where the recomputed pre-activation is positive.
  std::vector<Tensor> g = g0;
  if (ops::conv_relu(c.attrs)) {
    Attrs plain = c.attrs;
    plain.set("activation", std::string("none"));
    Tensor z = dispatch1(OpKind::convolution, {c.in[0], c.in[1], c.in[2]}, plain).to(g[0].dtype());
    g[0] = where(gt(z, zeros(Shape{}, z.dtype())), g[0], zeros(Shape{}, g[0].dtype()));
  }
  // Under autocast the forward ran on bf16 operands: so do both backward products, on the
  // gradient in bf16 (as matmul's backward and PyTorch's autocast), with f32 weight
  // gradients and a data gradient in the forward's result dtype (bf16 with out_dtype
  // "bf16"). Elsewhere gradients are computed in the gradient's dtype.
  Tensor gy = c.in[0].dtype() == DType::bf16 ? g[0].to(DType::bf16) : g[0];
  Tensor x = c.in[0].to(gy.dtype()), w = c.in[1].to(gy.dtype());
  Tensor gx, gw, gb;
  StableOperands stable;  // both ops read gy: the oneDNN kernels reorder it once
  if (c.needs_grad[0]) {
    Attrs a = c.attrs;
    a.set("input_shape", x.shape());
    gx = dispatch1(OpKind::convolution_backward_data, {gy, w}, a);
  }
  const bool lowp = gy.dtype() != g[0].dtype();
  if (c.needs_grad[1]) {
    Attrs a = c.attrs;
    a.set("weight_shape", w.shape());
    auto r = dispatch(OpKind::convolution_backward_weight, {gy, x}, a);
    gw = r[0];
    gb = r[1];
  }
  // The bias gradient sums the upstream gradient over N and every position: from a
  // gradient rounded to bf16 here that sum cancels badly, so it reads the f32 one; a
  // gradient that arrived in bf16 (a bf16 result) is summed by the product's kernel.
  // Summed as [N, O, positions] over the contiguous positions first, then over N: a
  // reduction over dims {0, 2, ...} at once copies the tensor into another order first.
  if (c.needs_grad[2] && (!c.needs_grad[1] || lowp)) {
    const Tensor g0 = g[0].contiguous();
    gb = sum(sum(g0.reshape({g0.size(0), g0.size(1), -1}), {2}), {0});
  }
  return {gx, gw, c.needs_grad[2] ? gb : Tensor()};
}

struct ConvCase {
  Shape x, w;
  bool bias;
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;
  const char* label;
  bool transposed = false;  // x given as a non-contiguous view
};

std::vector<ConvCase> conv_cases(DType dt) {
  std::vector<ConvCase> cs = {
      {{2, 3, 5, 5}, {4, 3, 3, 3}, true, {1}, {1}, {1}, 1, "2d 3x3 pad 1"},
      {{2, 3, 7, 6}, {4, 3, 2, 3}, true, {2, 1}, {0, 1}, {2, 1}, 1, "2d stride 2 dilation 2"},
      {{1, 4, 5, 6}, {6, 2, 3, 3}, false, {1}, {1}, {1}, 2, "2d groups 2 no bias"},
      {{3, 2, 17}, {4, 2, 3}, true, {2}, {1}, {1}, 1, "1d stride 2"},
      {{1, 1, 7}, {1, 1, 7}, true, {1}, {0}, {1}, 1, "1d kernel = input"},
      {{1, 2, 5, 4, 5}, {3, 2, 3, 3, 3}, true, {1}, {1}, {1}, 1, "3d pad 1"},
      {{2, 3, 5, 5}, {3, 3, 3, 3}, true, {1}, {1}, {1}, 1, "2d strided x", true},
  };
  if (dt == DType::f32) {  // realistic layers: kernel comparison only (too big for gradcheck)
    cs.push_back({{8, 32, 14, 14}, {64, 32, 3, 3}, true, {1}, {1}, {1}, 1, "cnn conv2 (8 images)"});
    cs.push_back({{2, 1, 33, 17}, {32, 1, 3, 3}, true, {1}, {1}, {1}, 1, "first layer C=1"});
    cs.push_back({{2, 16, 8, 8, 8}, {32, 16, 3, 3, 3}, true, {1}, {1}, {1}, 1, "cnn3d conv2 (2 volumes)"});
    // One input channel (the 'c1' kernel): 3-D, an odd channel count, a wide 2-D kernel
    // without bias, a strided input, more taps than one pass holds (8 and 16 lanes).
    cs.push_back({{3, 1, 9, 13, 11}, {5, 1, 3, 3, 3}, true, {1}, {1}, {1}, 1, "3d C=1 O=5"});
    cs.push_back({{2, 1, 7, 30}, {6, 1, 3, 5}, false, {1}, {1, 2}, {1}, 1, "2d C=1 3x5 no bias"});
    cs.push_back({{2, 1, 9, 9}, {3, 1, 3, 3}, true, {1}, {0}, {1}, 1, "2d C=1 strided x", true});
    cs.push_back({{2, 1, 40}, {3, 1, 11}, true, {1}, {5}, {1}, 1, "1d C=1 kernel 11"});
    cs.push_back({{4, 1, 28, 28}, {32, 1, 3, 3}, true, {1}, {1}, {1}, 1, "cnn conv1 (4 images)"});
    cs.push_back({{2, 1, 12, 37}, {9, 1, 7, 7}, true, {1}, {3}, {1}, 1, "2d C=1 7x7 (two passes of taps)"});
    cs.push_back({{6, 1, 4, 3}, {12, 1, 3, 3}, true, {1}, {1}, {1}, 1, "2d C=1 rows narrower than a vector"});
    // Channels in multiples of 8 (the 'direct8' backward-weights): one o-vector, a kernel
    // wider than the padding, 1-D, a strided input, 24 input channels (groups of 6).
    cs.push_back({{3, 8, 9, 7}, {8, 8, 3, 2}, true, {1}, {1, 0}, {1}, 1, "2d C=8 O=8 3x2 pad (1,0)"});
    cs.push_back({{2, 16, 17}, {24, 16, 5}, false, {1}, {1}, {1}, 1, "1d C=16 O=24 kernel 5"});
    cs.push_back({{2, 8, 6, 6}, {16, 8, 3, 3}, true, {1}, {2}, {1}, 1, "2d C=8 pad 2 strided x", true});
    cs.push_back({{2, 24, 5, 6, 7}, {16, 24, 3, 3, 3}, true, {1}, {1}, {1}, 1, "3d C=24 O=16"});
  }
  return cs;
}

Attrs conv_attrs(const ConvCase& k) {
  return Attrs().set("stride", k.stride).set("padding", k.padding).set("dilation", k.dilation).set("groups", k.groups);
}

std::vector<Sample> convolution_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (auto& k : conv_cases(dt)) {
    Tensor x = k.transposed ? sample_transposed(k.x, dt, gen) : sample_uniform(k.x, dt, gen);
    Tensor b = k.bias ? sample_uniform({k.w[0]}, dt, gen) : Tensor();
    s.push_back({{x, sample_uniform(k.w, dt, gen, -1, 1), b}, conv_attrs(k), k.label});
  }
  // With ReLU: the oneDNN post-op, the c1 kernel's and the reference's.
  auto with_relu = [&](const Shape& x, const Shape& w, bool bias, const char* label) {
    Attrs a = conv_attrs({x, w, bias, {1}, {1}, {1}, 1, label}).set("activation", std::string("relu"));
    s.push_back({{sample_uniform(x, dt, gen), sample_uniform(w, dt, gen, -1, 1), bias ? sample_uniform({w[0]}, dt, gen) : Tensor()},
                 a, label});
  };
  with_relu({2, 3, 5, 5}, {4, 3, 3, 3}, true, "2d relu");
  with_relu({2, 1, 6, 7}, {5, 1, 3, 3}, false, "2d C=1 relu no bias");
  with_relu({1, 2, 4, 3, 5}, {3, 2, 3, 3, 3}, true, "3d relu");
  if (dt == DType::f32) with_relu({4, 32, 14, 14}, {64, 32, 3, 3}, true, "cnn conv2 relu (4 images)");
  // out_dtype "bf16" (autocast's): a bf16 result from bf16 operands; the same as the plain
  // cases in f32 and f64. The first layer (C = 1, the 'c1' kernel), a blocked layer, 3-D.
  auto bf16_out = [&](const Shape& x, const Shape& w, const char* act, const char* label) {
    Attrs a = conv_attrs({x, w, true, {1}, {1}, {1}, 1, label}).set("out_dtype", std::string("bf16"));
    a.set("activation", std::string(act));
    s.push_back({{sample_uniform(x, dt, gen), sample_uniform(w, dt, gen, -1, 1), sample_uniform({w[0]}, dt, gen)}, a,
                 label});
  };
  bf16_out({2, 1, 9, 13}, {6, 1, 3, 3}, "none", "C=1 bf16 result");
  bf16_out({2, 1, 6, 7}, {5, 1, 3, 3}, "relu", "C=1 relu bf16 result");
  bf16_out({1, 1, 5, 30, 31}, {5, 1, 3, 3, 3}, "relu", "C=1 3d planes of 4650, bf16 result by rows");
  bf16_out({2, 16, 6, 5}, {32, 16, 3, 3}, "none", "C=16 bf16 result");
  bf16_out({1, 8, 4, 5, 3}, {16, 8, 3, 3, 3}, "relu", "3d relu bf16 result");
  return s;
}

// Backward samples: an upstream gradient of the forward output's shape.
std::vector<Sample> convolution_backward_data_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (auto& k : conv_cases(dt)) {
    Attrs a = conv_attrs(k).set("input_shape", k.x);
    Spatial g = conv_spatial(k.x, k.w, a, "sample");
    Tensor gy = k.transposed ? sample_transposed(spatial_shape(g, k.w[0], true), dt, gen)
                             : sample_uniform(spatial_shape(g, k.w[0], true), dt, gen);
    s.push_back({{gy, sample_uniform(k.w, dt, gen, -1, 1)}, a, k.label});
    if (k.x[1] == 1 || k.x[1] == 8)  // a bf16 data gradient (out_dtype "bf16") for some
      s.push_back({{s.back().in[0], s.back().in[1]}, Attrs(a).set("out_dtype", std::string("bf16")),
                   std::string(k.label) + ", bf16 result"});
  }
  return s;
}
std::vector<Sample> convolution_backward_weight_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (auto& k : conv_cases(dt)) {
    Attrs a = conv_attrs(k).set("weight_shape", k.w);
    Spatial g = conv_spatial(k.x, k.w, a, "sample");
    Tensor x = k.transposed ? sample_transposed(k.x, dt, gen) : sample_uniform(k.x, dt, gen);
    // Small upstream gradients keep the long f32 sums of the big layers well conditioned.
    s.push_back({{sample_uniform(spatial_shape(g, k.w[0], true), dt, gen, -0.1, 0.1), x}, a, k.label});
  }
  return s;
}

}  // namespace

const OpImpl convolution_impl{convolution_meta, kernels::convolution_ref, convolution_backward, convolution_samples,
                              nullptr};
const OpImpl convolution_backward_data_impl{convolution_backward_data_meta, kernels::convolution_backward_data_ref,
                                            nullptr, convolution_backward_data_samples, nullptr};
const OpImpl convolution_backward_weight_impl{convolution_backward_weight_meta,
                                              kernels::convolution_backward_weight_ref, nullptr,
                                              convolution_backward_weight_samples, nullptr};

}  // namespace qs::ops

namespace qs {

namespace {
Tensor conv_nd(int nsp, const Tensor& x, const Tensor& w, const Tensor& b, const SizeArg& stride,
               const SizeArg& padding, const SizeArg& dilation, int64_t groups) {
  static const char* names[] = {"", "conv1d", "conv2d", "conv3d"};
  QS_CHECK(x.dim() == nsp + 2, "{}: expected an input [N, C, {} spatial dims], got {}", names[nsp], nsp,
           shape_str(x.shape()));
  Attrs a;
  a.set("stride", stride.v).set("padding", padding.v).set("dilation", dilation.v).set("groups", groups);
  return ops::dispatch1(ops::OpKind::convolution, {x, w, b}, std::move(a));
}
}  // namespace

Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b, SizeArg stride, SizeArg padding,
              SizeArg dilation, int64_t groups) {
  return conv_nd(1, x, w, b, stride, padding, dilation, groups);
}
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, SizeArg stride, SizeArg padding,
              SizeArg dilation, int64_t groups) {
  return conv_nd(2, x, w, b, stride, padding, dilation, groups);
}
Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, SizeArg stride, SizeArg padding,
              SizeArg dilation, int64_t groups) {
  return conv_nd(3, x, w, b, stride, padding, dilation, groups);
}

}  // namespace qs
