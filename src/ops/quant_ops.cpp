// Integer quantisation rows: quantize, dequantize, qlinear, qconv, dynamic_linear and
// woq_linear. Shape and dtype rules, and the harness samples (full-range and 7-bit
// activations, u8 and s8, per-channel scales, odd sizes, groups, 3-D, strided inputs).
// The formulas are in include/qiusuo/quant/int8.h and src/kernels/ref/quant_ref.cpp.
#include "ops/quant_ops.h"

#include <cmath>

#include "kernels/ref/ref_kernels.h"
#include "ops/samples.h"
#include "kernels/spatial.h"

namespace qs::ops {

int32_t qdtype_min(DType t) { return t == DType::u8 ? 0 : -128; }
int32_t qdtype_max(DType t) { return t == DType::u8 ? 255 : 127; }

void check_qparam_tensors(const char* op, const Tensor& scale, const Tensor& zp, int64_t channels) {
  QS_CHECK(scale.dtype() == DType::f32 && scale.dim() == 1, "{}: scale must be f32 [C], got {} {}", op,
           dtype_name(scale.dtype()), shape_str(scale.shape()));
  QS_CHECK(zp.dtype() == DType::i32 && zp.dim() == 1, "{}: zero_point must be i32 [C], got {} {}", op,
           dtype_name(zp.dtype()), shape_str(zp.shape()));
  QS_CHECK(scale.size(0) == channels && zp.size(0) == channels,
           "{}: expected {} scales and zero points, got {} and {}", op, channels, scale.size(0), zp.size(0));
}

void check_out_attrs(const char* op, const Attrs& a) {
  double xs = a.f("x_scale");
  QS_CHECK(std::isfinite(xs) && xs > 0, "{}: x_scale = {} (expected finite and > 0)", op, xs);
  std::string out = a.has("out") ? a.s("out") : "f32";
  QS_CHECK(out == "f32" || out == "u8" || out == "s8", "{}: out = '{}' (expected f32, u8 or s8)", op, out);
  if (out == "f32") return;
  DType dt = out == "u8" ? DType::u8 : DType::i8;
  double os = a.f("out_scale");
  QS_CHECK(std::isfinite(os) && os > 0, "{}: out_scale = {} (expected finite and > 0)", op, os);
  int64_t lo = a.i("out_qmin", qdtype_min(dt)), hi = a.i("out_qmax", qdtype_max(dt)), zp = a.i("out_zp", 0);
  QS_CHECK(lo >= qdtype_min(dt) && hi <= qdtype_max(dt) && lo <= hi, "{}: out_qmin/out_qmax [{}, {}] outside the {} "
           "range [{}, {}]", op, lo, hi, out, qdtype_min(dt), qdtype_max(dt));
  QS_CHECK(zp >= lo && zp <= hi, "{}: out_zp {} outside [{}, {}]", op, zp, lo, hi);
}

DType out_dtype(const Attrs& a) {
  std::string out = a.has("out") ? a.s("out") : "f32";
  return out == "u8" ? DType::u8 : out == "s8" ? DType::i8 : DType::f32;
}

namespace {

std::vector<TensorSpec> quantize_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  QS_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, "quantize: x must be f32 or f64, got {}",
           dtype_name(x.dtype()));
  std::string dt = c.attrs.s("dtype");
  QS_CHECK(dt == "s8" || dt == "u8", "quantize: dtype '{}' (expected s8 or u8; s4 is s8 storage in [-8, 7])", dt);
  DType out = dt == "u8" ? DType::u8 : DType::i8;
  int64_t axis = c.attrs.i("axis", -1);
  QS_CHECK(axis >= -1 && axis < x.dim(), "quantize: axis {} for a tensor of rank {}", axis, x.dim());
  check_qparam_tensors("quantize", c.in[1], c.in[2], axis < 0 ? 1 : x.size(axis));
  int64_t lo = c.attrs.i("qmin"), hi = c.attrs.i("qmax");
  QS_CHECK(lo <= hi && lo >= qdtype_min(out) && hi <= qdtype_max(out), "quantize: [qmin, qmax] = [{}, {}] outside the "
           "{} range", lo, hi, dt);
  return {{x.shape(), out}};
}

std::vector<TensorSpec> dequantize_meta(const OpCall& c) {
  const Tensor& q = c.in[0];
  QS_CHECK(q.dtype() == DType::i8 || q.dtype() == DType::u8, "dequantize: q must be i8 or u8, got {}",
           dtype_name(q.dtype()));
  int64_t axis = c.attrs.i("axis", -1);
  QS_CHECK(axis >= -1 && axis < q.dim(), "dequantize: axis {} for a tensor of rank {}", axis, q.dim());
  check_qparam_tensors("dequantize", c.in[1], c.in[2], axis < 0 ? 1 : q.size(axis));
  return {{q.shape(), DType::f32}};
}

// Checks shared by qlinear / qconv / dynamic_linear on the weight side.
void check_weight_side(const char* op, const Tensor& wq, const Tensor& ws, const Tensor& b, int64_t N) {
  QS_CHECK(wq.dtype() == DType::i8, "{}: weights must be i8 (s8), got {}", op, dtype_name(wq.dtype()));
  QS_CHECK(ws.dtype() == DType::f32 && ws.dim() == 1 && ws.size(0) == N, "{}: w_scale must be f32 [{}], got {} {}", op,
           N, dtype_name(ws.dtype()), shape_str(ws.shape()));
  if (b.defined())
    QS_CHECK(b.dtype() == DType::f32 && b.dim() == 1 && b.size(0) == N, "{}: bias must be f32 [{}], got {} {}", op, N,
             dtype_name(b.dtype()), shape_str(b.shape()));
}

// The s32 accumulator holds at most K products of 255 x 128 exactly.
void check_depth(const char* op, int64_t K) {
  QS_CHECK(K <= 65536, "{}: reduction length {} exceeds 65536 (the s32 accumulator could overflow)", op, K);
}

void check_qx(const char* op, const Tensor& x, const Attrs& a) {
  QS_CHECK(x.dtype() == DType::u8 || x.dtype() == DType::i8, "{}: xq must be u8 or i8, got {}", op,
           dtype_name(x.dtype()));
  int64_t zp = a.i("x_zp", 0);
  QS_CHECK(zp >= qdtype_min(x.dtype()) && zp <= qdtype_max(x.dtype()), "{}: x_zp {} outside the {} range", op, zp,
           dtype_name(x.dtype()));
  check_out_attrs(op, a);
}

std::vector<TensorSpec> qlinear_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1];
  check_qx("qlinear", x, c.attrs);
  QS_CHECK(x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1), "qlinear: expected xq [..., K] and wq [N, K], "
           "got {} and {}", shape_str(x.shape()), shape_str(w.shape()));
  check_weight_side("qlinear", w, c.in[2], c.in[3], w.size(0));
  check_depth("qlinear", w.size(1));
  Shape out = x.shape();
  out.back() = w.size(0);
  return {{out, out_dtype(c.attrs)}};
}

// qconv's chained input (quant_epilogue.h: QInputRemap): u8 codes in (x_from_scale,
// x_from_zp) requantised to (x_scale, x_zp) within [x_qmin, x_qmax] before the product.
void check_input_remap(const Tensor& x, const Attrs& a) {
  if (!a.has("x_from_scale")) return;
  QS_CHECK(x.dtype() == DType::u8, "qconv: x_from_scale (a requantised chained input) needs u8 xq, got {}",
           dtype_name(x.dtype()));
  double fs = a.f("x_from_scale");
  int64_t fz = a.i("x_from_zp", 0), lo = a.i("x_qmin", 0), hi = a.i("x_qmax", 255), zp = a.i("x_zp", 0);
  QS_CHECK(std::isfinite(fs) && fs > 0, "qconv: x_from_scale = {} (expected finite and > 0)", fs);
  QS_CHECK(fz >= 0 && fz <= 255, "qconv: x_from_zp {} outside the u8 range", fz);
  QS_CHECK(lo >= 0 && hi <= 255 && lo <= hi && zp >= lo && zp <= hi,
           "qconv: x_qmin/x_qmax [{}, {}] must lie in [0, 255] and hold x_zp {}", lo, hi, zp);
}

std::vector<TensorSpec> qconv_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1];
  check_qx("qconv", x, c.attrs);
  Spatial g = conv_spatial(x.shape(), w.shape(), c.attrs, "qconv");
  check_weight_side("qconv", w, c.in[2], c.in[3], w.size(0));
  check_depth("qconv", w.numel() / std::max<int64_t>(w.size(0), 1));
  check_input_remap(x, c.attrs);
  TensorSpec y{spatial_shape(g, w.size(0), true), out_dtype(c.attrs)};
  if (c.attrs.b("channels_last_out", false)) y.layout = channels_last_layout(x.dim());
  return {y};
}

std::vector<TensorSpec> dynamic_linear_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1];
  QS_CHECK(x.dtype() == DType::f32, "dynamic_linear: x must be f32, got {}", dtype_name(x.dtype()));
  QS_CHECK(x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1), "dynamic_linear: expected x [..., K] and wq "
           "[N, K], got {} and {}", shape_str(x.shape()), shape_str(w.shape()));
  std::string g = c.attrs.has("granularity") ? c.attrs.s("granularity") : "token";
  QS_CHECK(g == "token" || g == "tensor", "dynamic_linear: granularity '{}' (expected token or tensor)", g);
  check_weight_side("dynamic_linear", w, c.in[2], c.in[3], w.size(0));
  check_depth("dynamic_linear", w.size(1));
  Shape out = x.shape();
  out.back() = w.size(0);
  return {{out, DType::f32}};
}

std::vector<TensorSpec> woq_linear_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &s = c.in[2], &b = c.in[3];
  QS_CHECK(x.dtype() == DType::f32 && x.dim() >= 1, "woq_linear: x must be f32 [..., K], got {} {}",
           dtype_name(x.dtype()), shape_str(x.shape()));
  int64_t bits = c.attrs.i("bits", 8), K = x.size(-1);
  QS_CHECK(bits == 8 || bits == 4, "woq_linear: bits = {} (expected 8 or 4)", bits);
  QS_CHECK(w.dim() == 2, "woq_linear: weights must be 2-D, got {}", shape_str(w.shape()));
  int64_t N = w.size(0);
  if (bits == 8) {
    QS_CHECK(w.dtype() == DType::i8 && w.size(1) == K, "woq_linear: 8-bit weights must be i8 [N, {}], got {} {}", K,
             dtype_name(w.dtype()), shape_str(w.shape()));
    QS_CHECK(s.dtype() == DType::f32 && s.dim() == 1 && s.size(0) == N, "woq_linear: scales must be f32 [{}], got {} {}",
             N, dtype_name(s.dtype()), shape_str(s.shape()));
  } else {
    int64_t g = c.attrs.i("group_size");
    QS_CHECK(g > 0 && g % 2 == 0 && K % g == 0, "woq_linear: group_size {} must be even and divide K = {}", g, K);
    QS_CHECK(w.dtype() == DType::u8 && w.size(1) * 2 == K, "woq_linear: 4-bit weights must be packed u8 [N, {}], got "
             "{} {}", K / 2, dtype_name(w.dtype()), shape_str(w.shape()));
    QS_CHECK(s.dtype() == DType::f32 && s.dim() == 2 && s.size(0) == N && s.size(1) == K / g,
             "woq_linear: scales must be f32 [{}, {}], got {} {}", N, K / g, dtype_name(s.dtype()),
             shape_str(s.shape()));
  }
  if (c.attrs.has("activations"))
    QS_CHECK(c.attrs.s("activations") == "f32" || c.attrs.s("activations") == "q8",
             "woq_linear: activations '{}' (expected f32 or q8)", c.attrs.s("activations"));
  if (b.defined())
    QS_CHECK(b.dtype() == DType::f32 && b.dim() == 1 && b.size(0) == N, "woq_linear: bias must be f32 [{}], got {} {}",
             N, dtype_name(b.dtype()), shape_str(b.shape()));
  Shape out = x.shape();
  out.back() = N;
  return {{out, DType::f32}};
}

}  // namespace

const OpImpl quantize_impl{quantize_meta, kernels::quantize_ref, nullptr, quantize_samples, nullptr};
const OpImpl dequantize_impl{dequantize_meta, kernels::dequantize_ref, nullptr, dequantize_samples, nullptr};
const OpImpl qlinear_impl{qlinear_meta, kernels::qlinear_ref, nullptr, qlinear_samples, nullptr};
const OpImpl qconv_impl{qconv_meta, kernels::qconv_ref, nullptr, qconv_samples, nullptr};
const OpImpl dynamic_linear_impl{dynamic_linear_meta, kernels::dynamic_linear_ref, nullptr, dynamic_linear_samples,
                                 nullptr};
const OpImpl woq_linear_impl{woq_linear_meta, kernels::woq_linear_ref, nullptr, woq_linear_samples, nullptr};

}  // namespace qs::ops
