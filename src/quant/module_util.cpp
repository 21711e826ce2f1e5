#include <set>

#include "quant/module_util.h"

namespace qs::quant::detail {

Tensor buffer(const nn::Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_buffers(false))
    if (n == name) return t;
  QS_FAIL("{}: has no buffer '{}'", m.type_name(), name);
}

int64_t bytes(const Tensor& t) { return t.defined() ? t.numel() * int64_t(t.element_size()) : 0; }

void require_float_input(const nn::Module& m, const Tensor& x) {
  if (x.dtype() != DType::u8 && x.dtype() != DType::i8) return;
  QS_FAIL("{}: got a {} input {}, but this layer takes float activations (f32) and quantises them itself; a "
          "quantised tensor carries no scale, so its codes cannot be read safely. Pass f32 (for codes you hold: "
          "quant::dequantize(codes, their parameters) first). Only QuantizedConv layers wired by "
          "quant::chain_quantized_layers(model, example) hand u8 codes to each other",
          m.type_name(), dtype_name(x.dtype()), shape_str(x.shape()));
}

void register_act(nn::Module& m, const std::string& prefix, const QParams& p) {
  p.validate();
  QS_CHECK(p.per_tensor() && p.group_size == 0 && p.dtype != QDtype::s4,
           "{}: {} parameters must be per tensor u8 or s8, got {} axis {}", m.type_name(), prefix, qdtype_name(p.dtype),
           p.axis);
  m.register_buffer(prefix + "_scale", from_vector({double(p.scale[0])}, {1}, DType::f32));
  m.register_buffer(prefix + "_zero_point", from_vector({double(p.zero_point[0])}, {1}, DType::i32));
  m.register_buffer(prefix + "_qrange", from_vector({p.dtype == QDtype::u8 ? 1.0 : 0.0, double(p.qmin()), double(p.qmax())},
                                                    {3}, DType::i32));
}

bool has_act(const nn::Module& m, const std::string& prefix) {
  for (auto& [n, t] : m.named_buffers(false))
    if (n == prefix + "_scale") return true;
  return false;
}

QParams read_act(const nn::Module& m, const std::string& prefix) {
  Tensor s = buffer(m, prefix + "_scale"), z = buffer(m, prefix + "_zero_point"), r = buffer(m, prefix + "_qrange");
  auto rv = r.to_vector();
  QS_CHECK(rv.size() == 3 && (rv[0] == 0 || rv[0] == 1), "{}: buffer {}_qrange = {} (expected [dtype 0|1, qmin, qmax])",
           m.type_name(), prefix, r.to_string());
  QParams p;
  p.dtype = rv[0] == 1 ? QDtype::u8 : QDtype::s8;
  p.scale = {float(s.item())};
  p.zero_point = {int32_t(z.item())};
  p.quant_min = int32_t(rv[1]);
  p.quant_max = int32_t(rv[2]);
  int32_t lo = p.dtype == QDtype::u8 ? 0 : -128, hi = p.dtype == QDtype::u8 ? 255 : 127;
  try {
    QS_CHECK(p.quant_min >= lo && p.quant_max <= hi, "range [{}, {}] outside {}", p.quant_min, p.quant_max,
             qdtype_name(p.dtype));
    p.validate();
  } catch (const std::exception& e) {
    QS_FAIL("{}: buffers {}_scale / {}_zero_point / {}_qrange are inconsistent: {}", m.type_name(), prefix, prefix, prefix,
            e.what());
  }
  return p;
}

nlohmann::json act_json(const QParams& p) {
  return {{"dtype", qdtype_name(p.dtype)}, {"scale", p.scale[0]}, {"zero_point", p.zero_point[0]},
          {"quant_min", p.qmin()}, {"quant_max", p.qmax()}};
}

bool forwards_through_child(const std::string& parent_type) {
  static const std::set<std::string> ok = {"MultiheadAttention", "GeluMLP", "SwiGLU", "Sequential"};
  return ok.count(parent_type) > 0;
}

}  // namespace qs::quant::detail
