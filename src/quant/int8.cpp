// Functional API of the integer quantisation ops and weight preparation
// (include/qiusuo/quant/int8.h).
#include "qiusuo/quant/int8.h"

#include <cfloat>
#include <cmath>

#include "backend/dnnl_util.h"
#include "kernels/quant_math.h"
#include "ops/op.h"
#include "quant/packed_hook.h"

namespace qs::quant {

namespace detail {
void (*clear_packed_hook)() = nullptr;
}

namespace {

Tensor scale_tensor(const QParams& p) {
  return from_vector(std::vector<double>(p.scale.begin(), p.scale.end()), {int64_t(p.scale.size())}, DType::f32);
}
Tensor zp_tensor(const QParams& p) {
  return from_vector(std::vector<double>(p.zero_point.begin(), p.zero_point.end()), {int64_t(p.zero_point.size())},
                     DType::i32);
}
DType storage_dtype(QDtype d) { return d == QDtype::u8 ? DType::u8 : DType::i8; }

void check_per_tensor_act(const char* op, const Tensor& xq, const QParams& x) {
  x.validate();
  QS_CHECK(x.per_tensor() && x.group_size == 0, "{}: activation parameters must be per tensor (axis -1), got axis {}",
           op, x.axis);
  QS_CHECK(x.dtype != QDtype::s4, "{}: activations cannot be s4", op);
  QS_CHECK(xq.dtype() == storage_dtype(x.dtype), "{}: xq is {} but its parameters say {}", op, dtype_name(xq.dtype()),
           qdtype_name(x.dtype));
}

Attrs epilogue_attrs(const char* op, const QParams& x, const QOutput& o) {
  Attrs a;
  a.set("x_scale", double(x.scale[0])).set("x_zp", int64_t(x.zero_point[0])).set("relu", o.relu);
  if (!o.out) return a.set("out", std::string("f32"));
  const QParams& q = *o.out;
  q.validate();
  QS_CHECK(q.per_tensor() && q.dtype != QDtype::s4, "{}: output parameters must be per tensor u8 or s8", op);
  return a.set("out", qdtype_name(q.dtype)).set("out_scale", double(q.scale[0])).set("out_zp", int64_t(q.zero_point[0]))
      .set("out_qmin", int64_t(q.qmin())).set("out_qmax", int64_t(q.qmax()));
}

}  // namespace

bool cpu_has_vnni() { return backend::exact_u8s8(); }
bool default_reduce_range() { return !cpu_has_vnni(); }

Tensor quantize(const Tensor& x, const QParams& p) {
  p.validate();
  QS_CHECK(p.group_size == 0, "quantize: group-wise parameters (group_size {}); hint: use quantize_weight_int4_groups",
           p.group_size);
  Attrs a;
  a.set("axis", p.axis).set("qmin", int64_t(p.qmin())).set("qmax", int64_t(p.qmax()));
  a.set("dtype", std::string(p.dtype == QDtype::u8 ? "u8" : "s8"));
  return ops::dispatch1(ops::OpKind::quantize, {x, scale_tensor(p), zp_tensor(p)}, std::move(a));
}

Tensor dequantize(const Tensor& q, const QParams& p) {
  p.validate();
  QS_CHECK(p.group_size == 0, "dequantize: group-wise parameters (group_size {}) are not supported", p.group_size);
  QS_CHECK(q.dtype() == storage_dtype(p.dtype), "dequantize: q is {} but its parameters say {}", dtype_name(q.dtype()),
           qdtype_name(p.dtype));
  return ops::dispatch1(ops::OpKind::dequantize, {q, scale_tensor(p), zp_tensor(p)}, Attrs().set("axis", p.axis));
}

Tensor pack_int4(const Tensor& q) {
  QS_CHECK(q.dtype() == DType::i8 && q.dim() >= 1, "pack_int4: expected i8 [..., K], got {} {}", dtype_name(q.dtype()),
           shape_str(q.shape()));
  Tensor qc = q.contiguous();
  int64_t K = q.size(-1), rows = K == 0 ? 0 : q.numel() / K, Kp = (K + 1) / 2;
  Shape shape = q.shape();
  shape.back() = Kp;
  Tensor out = zeros(shape, DType::u8);
  const int8_t* src = qc.data_ptr<int8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) {
      int8_t v = src[r * K + k];
      QS_CHECK(v >= -8 && v <= 7, "pack_int4: element {} of row {} is {} (expected [-8, 7])", k, r, int(v));
      dst[r * Kp + k / 2] |= uint8_t((v & 15) << (k % 2 == 0 ? 0 : 4));
    }
  return out;
}

Tensor unpack_int4(const Tensor& packed, int64_t K) {
  QS_CHECK(packed.dtype() == DType::u8 && packed.dim() >= 1, "unpack_int4: expected u8 [..., K/2], got {} {}",
           dtype_name(packed.dtype()), shape_str(packed.shape()));
  QS_CHECK(K >= 0 && (K + 1) / 2 == packed.size(-1), "unpack_int4: {} elements do not fit {} bytes per row", K,
           packed.size(-1));
  Tensor pc = packed.contiguous();
  int64_t Kp = packed.size(-1), rows = Kp == 0 ? 0 : packed.numel() / Kp;
  Shape shape = packed.shape();
  shape.back() = K;
  Tensor out = empty(shape, DType::i8);
  const uint8_t* src = pc.data_ptr<uint8_t>();
  int8_t* dst = out.data_ptr<int8_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) {
      int nib = (src[r * Kp + k / 2] >> (k % 2 == 0 ? 0 : 4)) & 15;
      dst[r * K + k] = int8_t(nib >= 8 ? nib - 16 : nib);
    }
  return out;
}

QuantizedWeight quantize_weight_per_channel(const Tensor& w, int64_t axis) {
  QS_CHECK(w.is_floating_point() && w.dim() >= 1, "quantize_weight_per_channel: expected a float tensor, got {} {}",
           dtype_name(w.dtype()), shape_str(w.shape()));
  QS_CHECK(axis >= 0 && axis < w.dim(), "quantize_weight_per_channel: axis {} for rank {}", axis, w.dim());
  int64_t C = w.size(axis);
  std::vector<double> v = w.transpose(0, axis).contiguous().to_vector();
  int64_t inner = C == 0 ? 0 : int64_t(v.size()) / C;
  QParams p;
  p.axis = axis;
  p.zero_point.assign(size_t(C), 0);
  for (int64_t c = 0; c < C; ++c) {
    float amax = 0;
    for (int64_t i = 0; i < inner; ++i) amax = std::max(amax, std::abs(float(v[size_t(c * inner + i)])));
    QS_CHECK(std::isfinite(amax), "quantize_weight_per_channel: channel {} holds a non-finite value", c);
    p.scale.push_back(std::max(amax / 127.0f, FLT_EPSILON));
  }
  if (C == 0) return {empty(w.shape(), DType::i8), empty({0}, DType::f32)};
  return {quantize(w, p), scale_tensor(p)};
}

QuantizedWeight quantize_weight_int4_groups(const Tensor& w, int64_t group) {
  QS_CHECK(w.is_floating_point() && w.dim() == 2, "quantize_weight_int4_groups: expected a float [N, K], got {} {}",
           dtype_name(w.dtype()), shape_str(w.shape()));
  int64_t N = w.size(0), K = w.size(1);
  QS_CHECK(group > 0 && group % 2 == 0 && K % group == 0,
           "quantize_weight_int4_groups: group {} must be even and divide K = {}", group, K);
  std::vector<double> v = w.contiguous().to_vector();
  Tensor scale = empty({N, K / group}, DType::f32), q = empty({N, K}, DType::i8);
  float* s = scale.data_ptr<float>();
  int8_t* qp = q.data_ptr<int8_t>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < K / group; ++g) {
      float amax = 0;
      for (int64_t k = g * group; k < (g + 1) * group; ++k) amax = std::max(amax, std::abs(float(v[size_t(n * K + k)])));
      QS_CHECK(std::isfinite(amax), "quantize_weight_int4_groups: row {} group {} holds a non-finite value", n, g);
      float sc = std::max(amax / 7.0f, FLT_EPSILON), inv = inv_scale(sc);
      s[n * (K / group) + g] = sc;
      for (int64_t k = g * group; k < (g + 1) * group; ++k)
        qp[n * K + k] = int8_t(quantize_value(float(v[size_t(n * K + k)]), inv, 0, -8, 7));
    }
  return {pack_int4(q), scale};
}

Tensor qlinear(const Tensor& xq, const QParams& x, const Tensor& wq, const Tensor& w_scale, const Tensor& bias,
               const QOutput& o) {
  check_per_tensor_act("qlinear", xq, x);
  return ops::dispatch1(ops::OpKind::qlinear, {xq, wq, w_scale, bias}, epilogue_attrs("qlinear", x, o));
}

Tensor qconv(const Tensor& xq, const QParams& x, const Tensor& wq, const Tensor& w_scale, const Tensor& bias,
             const QConvOptions& conv, const QOutput& o) {
  check_per_tensor_act("qconv", xq, x);
  Attrs a = epilogue_attrs("qconv", x, o);
  a.set("stride", conv.stride.v).set("padding", conv.padding.v).set("dilation", conv.dilation.v);
  a.set("groups", conv.groups);
  if (conv.channels_last_out) a.set("channels_last_out", true);
  if (conv.x_from) {
    const QParams& f = *conv.x_from;
    f.validate();
    QS_CHECK(f.per_tensor() && f.dtype == QDtype::u8 && x.dtype == QDtype::u8,
             "qconv: x_from (a chained input) needs per-tensor u8 parameters on both sides, got {} (axis {}) -> {}",
             qdtype_name(f.dtype), f.axis, qdtype_name(x.dtype));
    a.set("x_from_scale", double(f.scale[0])).set("x_from_zp", int64_t(f.zero_point[0]));
    a.set("x_qmin", int64_t(x.qmin())).set("x_qmax", int64_t(x.qmax()));
  }
  return ops::dispatch1(ops::OpKind::qconv, {xq, wq, w_scale, bias}, std::move(a));
}

Tensor dynamic_linear(const Tensor& x, const Tensor& wq, const Tensor& w_scale, const Tensor& bias,
                      const std::string& granularity, bool reduce_range) {
  Attrs a;
  a.set("granularity", granularity).set("reduce_range", reduce_range);
  return ops::dispatch1(ops::OpKind::dynamic_linear, {x, wq, w_scale, bias}, std::move(a));
}

Tensor woq_linear(const Tensor& x, const Tensor& w, const Tensor& scales, const Tensor& bias, int bits,
                  int64_t group_size, const std::string& activations) {
  Attrs a;
  a.set("bits", int64_t(bits)).set("group_size", group_size).set("activations", activations);
  return ops::dispatch1(ops::OpKind::woq_linear, {x, w, scales, bias}, std::move(a));
}

void clear_packed_weights() {
  if (detail::clear_packed_hook) detail::clear_packed_hook();
}

}  // namespace qs::quant
