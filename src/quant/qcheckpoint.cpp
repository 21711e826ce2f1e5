// Quantised checkpoints (include/qiusuo/quant/checkpoint.h).
#include "qiusuo/quant/checkpoint.h"

#include <cmath>

#include "qiusuo/quant/convert.h"
#include "quant/module_util.h"

namespace qs::quant {

namespace {

using nlohmann::json;

// The activation parameters of a loaded layer must be valid and equal the header's.
void check_act(const std::string& name, const nn::Module& m, const json& spec, const char* prefix) {
  if (!spec.contains(prefix) || !spec[prefix].is_object() || !spec[prefix].contains("scale")) return;  // dynamic: none
  QParams p;
  try {
    p = detail::read_act(m, prefix);
  } catch (const std::exception& e) {
    QS_FAIL("tensor '{}.{}_scale' (with its zero point and range): {}", name, prefix, e.what());
  }
  const json& h = spec[prefix];
  json have = detail::act_json(p);
  for (const char* k : {"scale", "zero_point", "quant_min", "quant_max"})
    QS_CHECK(h.contains(k) && h[k] == have[k], "tensor '{}.{}_{}': the file's tensors give {} = {}, its header says {}",
             name, prefix, std::string(k).rfind("quant_", 0) == 0 ? "qrange" : k, k, have[k].dump(),
             h.contains(k) ? h[k].dump() : "nothing");
}

void check_weight_scales(const std::string& name, const nn::Module& m) {
  for (auto& [n, t] : m.named_buffers(false)) {
    if (n != "weight_scale") continue;
    for (double v : t.to(DType::f64).to_vector())
      QS_CHECK(std::isfinite(v) && v > 0, "tensor '{}.weight_scale' holds {} (scales must be finite and positive)", name,
               v);
  }
}

std::shared_ptr<nn::Module> module_at(const nn::Module& root, const std::string& path) {
  for (auto& [n, m] : root.named_modules())
    if (n == path) return m;
  QS_FAIL("the model has no module '{}'", path);
}

}  // namespace

void save_quantized_checkpoint(const std::string& path, const nn::Module& model, json float_config,
                               const std::string& method, const json& extra) {
  if (!float_config.is_object()) float_config = json::object();
  float_config["quantized"] = {{"method", method}, {"layers", quantized_layers(model)}};
  io::Checkpoint ck;
  ck.model = model.state_dict();
  ck.config = float_config;
  ck.extra = extra;
  io::save_checkpoint(path, ck);
}

bool is_quantized_checkpoint(const io::Checkpoint& ck) {
  return ck.config.is_object() && ck.config.contains("quantized") && ck.config["quantized"].is_object();
}

void load_quantized_checkpoint(const std::string& path, const io::Checkpoint& ck, nn::Module& model) {
  QS_CHECK(is_quantized_checkpoint(ck), "{}: not a quantised checkpoint (its config has no \"quantized\" section); hint: "
           "make one with 'qiusuo quantize'", path);
  try {
    const json& layers = ck.config["quantized"].value("layers", json());
    apply_quantized_layers(model, layers);
    model.load_state_dict(ck.model, true);
    for (auto& [name, spec] : layers.items()) {
      if (spec.value("type", "") == "Identity") continue;
      auto m = module_at(model, name);
      check_act(name, *m, spec, "input");
      check_act(name, *m, spec, "output");
      check_weight_scales(name, *m);
    }
  } catch (const std::exception& e) {
    QS_FAIL("{}: cannot load the quantised model: {}", path, e.what());
  }
  clear_packed_weights();
  model.eval();
}

}  // namespace qs::quant
