// The description of a quantised module tree (quantized_layers), the shells rebuilt from
// it, and weight bytes (include/qiusuo/quant/convert.h).
#include <cmath>

#include "qiusuo/nn/activation.h"
#include "qiusuo/quant/convert.h"
#include "quant/module_util.h"

namespace qs::quant {

namespace {

using nlohmann::json;

bool has_buffer(const nn::Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_buffers(false))
    if (n == name) return true;
  return false;
}

// qparams_json() of a quantised module, or empty for any other module.
std::string spec_text(const nn::Module& m) {
  if (auto* q = dynamic_cast<const QuantizedLinear*>(&m)) return q->qparams_json();
  if (auto* q = dynamic_cast<const QuantizedConv*>(&m)) return q->qparams_json();
  if (auto* q = dynamic_cast<const DynamicQuantizedLinear*>(&m)) return q->qparams_json();
  if (auto* q = dynamic_cast<const WeightOnlyLinear*>(&m)) return q->qparams_json();
  return "";
}

int64_t quantised_weight_bytes(const nn::Module& m) {
  if (auto* q = dynamic_cast<const QuantizedLinear*>(&m)) return q->weight_bytes();
  if (auto* q = dynamic_cast<const QuantizedConv*>(&m)) return q->weight_bytes();
  if (auto* q = dynamic_cast<const DynamicQuantizedLinear*>(&m)) return q->weight_bytes();
  if (auto* q = dynamic_cast<const WeightOnlyLinear*>(&m)) return q->weight_bytes();
  return -1;
}

template <class T> T field(const std::string& name, const json& j, const char* key) {
  QS_CHECK(j.is_object() && j.contains(key), "quantised layer '{}': its description lacks \"{}\" (found {})", name, key,
           j.dump());
  try {
    return j.at(key).get<T>();
  } catch (const std::exception& e) {
    QS_FAIL("quantised layer '{}': field \"{}\" = {} has the wrong type ({})", name, key, j.at(key).dump(), e.what());
  }
}

QParams act_from_json(const std::string& name, const json& j) {
  QParams p;
  p.dtype = parse_qdtype(field<std::string>(name, j, "dtype"));
  p.scale = {field<float>(name, j, "scale")};
  p.zero_point = {field<int32_t>(name, j, "zero_point")};
  p.quant_min = field<int32_t>(name, j, "quant_min");
  p.quant_max = field<int32_t>(name, j, "quant_max");
  return p;
}

std::optional<QParams> output_from_json(const std::string& name, const json& spec) {
  const json& o = spec.contains("output") ? spec["output"] : json("f32");
  if (o.is_string() && o.get<std::string>() == "f32") return std::nullopt;
  return act_from_json(name, o);
}

SizeArg size_arg(const std::string& name, const json& spec, const char* key) {
  SizeArg a;
  a.v = field<std::vector<int64_t>>(name, spec, key);
  return a;
}

}  // namespace

json quantized_layers(const nn::Module& model) {
  json out = json::object();
  for (auto& [n, m] : model.named_modules()) {
    std::string s = spec_text(*m);
    if (!s.empty()) {
      json j = json::parse(s);
      j["bias"] = has_buffer(*m, "bias");
      out[n] = j;
    } else if (dynamic_cast<const nn::Identity*>(m.get())) {
      out[n] = {{"type", "Identity"}};
    }
  }
  return out;
}

std::shared_ptr<nn::Module> quantized_module_from_spec(const std::string& name, const json& spec) {
  std::string type = field<std::string>(name, spec, "type");
  if (type == "Identity") return std::make_shared<nn::Identity>();
  bool bias = field<bool>(name, spec, "bias");
  if (type == "QuantizedLinear")
    return std::make_shared<QuantizedLinear>(field<int64_t>(name, spec, "in_features"),
                                             field<int64_t>(name, spec, "out_features"), bias,
                                             act_from_json(name, spec.value("input", json())),
                                             output_from_json(name, spec), field<bool>(name, spec, "relu"));
  if (type.rfind("QuantizedConv", 0) == 0) {
    nn::ConvOptions o;
    o.stride = size_arg(name, spec, "stride");
    o.padding = size_arg(name, spec, "padding");
    o.dilation = size_arg(name, spec, "dilation");
    o.groups = field<int64_t>(name, spec, "groups");
    o.bias = bias;
    return std::make_shared<QuantizedConv>(field<Shape>(name, spec, "weight_shape"), o,
                                           act_from_json(name, spec.value("input", json())),
                                           output_from_json(name, spec), field<bool>(name, spec, "relu"));
  }
  int64_t in = field<int64_t>(name, spec, "in_features"), out = field<int64_t>(name, spec, "out_features");
  if (type == "DynamicQuantizedLinear")
    return std::make_shared<DynamicQuantizedLinear>(in, out, bias, field<std::string>(name, spec, "granularity"),
                                                    field<bool>(name, spec, "reduce_range"));
  if (type == "WeightOnlyLinear") {
    const int bits = field<int>(name, spec, "bits");
    const int64_t group = field<int64_t>(name, spec, "group_size");
    // files written before q8 activations existed hold none: they ran with f32 activations
    const std::string act = spec.contains("activations") ? field<std::string>(name, spec, "activations") : "f32";
    try {
      return std::make_shared<WeightOnlyLinear>(in, out, bias, bits, group, act);
    } catch (const std::exception& e) {
      QS_FAIL("quantised layer '{}': {}", name, e.what());
    }
  }
  QS_FAIL("quantised layer '{}': unknown type '{}' (expected QuantizedLinear, QuantizedConvNd, "
          "DynamicQuantizedLinear, WeightOnlyLinear or Identity)",
          name, type);
}

void apply_quantized_layers(nn::Module& model, const json& layers) {
  QS_CHECK(layers.is_object(), "quantised model: the layer list must be a JSON object, found {}", layers.dump());
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> shells;
  for (auto& [name, spec] : layers.items()) shells.emplace_back(name, quantized_module_from_spec(name, spec));
  for (auto& [name, m] : shells) model.replace_child(name, m);
}

int64_t model_weight_bytes(const nn::Module& model) {
  int64_t total = 0;
  auto count = [&](const nn::Module& m) {
    int64_t q = quantised_weight_bytes(m);
    if (q >= 0) {
      total += q + (has_buffer(m, "bias") ? detail::bytes(detail::buffer(m, "bias")) : 0);
      return;
    }
    for (auto& [n, t] : m.named_parameters(false)) total += detail::bytes(t);
  };
  count(model);
  for (auto& [n, m] : model.named_modules()) count(*m);
  return total;
}

}  // namespace qs::quant
