// Resampling: interpolate (nearest, linear, bilinear, trilinear) over 1 to 3 spatial
// dims, its backward primitive, samples and the functional API.
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "kernels/spatial.h"

namespace qs::ops {

namespace {

std::vector<TensorSpec> interpolate_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  QS_CHECK(x.is_floating_point(), "interpolate: expected a floating-point input, got {}", dtype_name(x.dtype()));
  Spatial g = interp_spatial(x.shape(), c.attrs);
  return {{spatial_shape(g, g.C, true), x.dtype()}};
}

std::vector<TensorSpec> interpolate_backward_meta(const OpCall& c) {
  const Tensor& gy = c.in[0];
  const Shape& xs = c.attrs.ints("input_shape");
  Spatial g = interp_spatial(xs, c.attrs);
  QS_CHECK(gy.shape() == spatial_shape(g, g.C, true), "interpolate_backward: gradient {} does not match the output {}",
           shape_str(gy.shape()), shape_str(spatial_shape(g, g.C, true)));
  return {{xs, gy.dtype()}};
}

std::vector<Tensor> interpolate_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  Attrs a = c.attrs;
  a.set("input_shape", c.in_spec[0].shape);
  return {dispatch1(OpKind::interpolate_backward, {g[0]}, a)};
}

struct InterpCase {
  Shape x;
  Attrs a;
  const char* label;
  bool transposed = false;
};
Attrs interp_attrs(const char* mode, std::vector<int64_t> size, bool align) {
  return Attrs().set("mode", std::string(mode)).set("size", size).set("align_corners", align);
}
std::vector<InterpCase> interp_cases(DType dt) {
  std::vector<InterpCase> cs = {
      {{2, 3, 7}, interp_attrs("linear", {17}, false), "linear 7 -> 17"},
      {{1, 2, 5, 4}, interp_attrs("bilinear", {7, 9}, false), "bilinear up"},
      {{1, 2, 5, 4}, interp_attrs("bilinear", {7, 9}, true), "bilinear align_corners"},
      {{2, 3, 7, 6}, interp_attrs("bilinear", {3, 4}, false), "bilinear down, strided x", true},
      {{1, 2, 3, 4, 3}, interp_attrs("trilinear", {5, 7, 6}, false), "trilinear"},
      {{1, 1, 3, 2, 3}, interp_attrs("trilinear", {4, 1, 5}, true), "trilinear align_corners, size 1"},
      {{1, 2, 3, 5}, interp_attrs("nearest", {7, 10}, false), "nearest up"},
      {{1, 2, 7, 5}, interp_attrs("nearest", {3, 2}, false), "nearest down"},
      {{1, 2, 3, 4}, interp_attrs("nearest", {6, 8}, false).set("scale", 2.0), "nearest scale 2"},
      {{1, 2, 3, 4}, interp_attrs("bilinear", {4, 6}, false).set("scale", 1.5), "bilinear scale 1.5"},
      {{1, 1, 3, 3, 3}, interp_attrs("nearest", {5, 5, 5}, false), "nearest 3d"}};
  if (dt == DType::f32) cs.push_back({{8, 16, 14, 14}, interp_attrs("bilinear", {28, 28}, false), "bilinear 14 -> 28"});
  return cs;
}

std::vector<Sample> interpolate_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (auto& k : interp_cases(dt))
    s.push_back({{k.transposed ? sample_transposed(k.x, dt, gen) : sample_uniform(k.x, dt, gen)}, k.a, k.label});
  return s;
}
std::vector<Sample> interpolate_backward_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (auto& k : interp_cases(dt)) {
    Attrs a = k.a;
    a.set("input_shape", k.x);
    Spatial g = interp_spatial(k.x, a);
    s.push_back({{sample_uniform(spatial_shape(g, g.C, true), dt, gen)}, a, k.label});
  }
  return s;
}

}  // namespace

const OpImpl interpolate_impl{interpolate_meta, kernels::interpolate_ref, interpolate_backward, interpolate_samples,
                              nullptr};
const OpImpl interpolate_backward_impl{interpolate_backward_meta, kernels::interpolate_backward_ref, nullptr,
                                       interpolate_backward_samples, nullptr};

}  // namespace qs::ops

namespace qs {

namespace {
Attrs interp_call_attrs(const Tensor& x, std::vector<int64_t> size, const std::string& mode, bool align_corners) {
  QS_CHECK(x.dim() >= 3 && x.dim() <= 5, "interpolate: expected an input [N, C, spatial...] with 1 to 3 spatial dims, "
           "got {}", shape_str(x.shape()));
  if (size.size() == 1)
    size.assign(size_t(x.dim() - 2), size[0]);
  return Attrs().set("mode", mode).set("size", std::move(size)).set("align_corners", align_corners);
}
}  // namespace

Tensor interpolate(const Tensor& x, SizeArg size, const std::string& mode, bool align_corners) {
  return ops::dispatch1(ops::OpKind::interpolate, {x}, interp_call_attrs(x, size.v, mode, align_corners));
}

Tensor interpolate_scale(const Tensor& x, double scale_factor, const std::string& mode, bool align_corners) {
  QS_CHECK(scale_factor > 0, "interpolate: scale_factor must be positive, got {}", scale_factor);
  std::vector<int64_t> size;
  for (int64_t d = 2; d < x.dim(); ++d) size.push_back(int64_t(double(x.size(d)) * scale_factor));
  Attrs a = interp_call_attrs(x, size, mode, align_corners);
  a.set("scale", scale_factor);
  return ops::dispatch1(ops::OpKind::interpolate, {x}, std::move(a));
}

}  // namespace qs
