// Dynamic and weight-only quantisation of the Linear layers of a model (include/qiusuo/quant/convert.h).
#include <map>
#include <set>

#include "qiusuo/quant/convert.h"
#include "quant/module_util.h"

namespace qs::quant {

namespace {

bool wanted(const std::string& name, const std::vector<std::string>& prefixes) {
  for (auto& p : prefixes)
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

std::shared_ptr<nn::Module> quantised_linear(const std::string& name, const nn::Linear& lin, const std::string& method,
                                             int64_t group, const std::string& activations) {
  if (method == "dynamic") return std::make_shared<DynamicQuantizedLinear>(lin);
  if (method == "weight-int8") return std::make_shared<WeightOnlyLinear>(lin, 8, 0, activations);
  QS_CHECK(lin.in_features() % group == 0,
           "quantize: layer '{}' has {} inputs, not a multiple of the int4 group size {}; hint: --group 32", name,
           lin.in_features(), group);
  return std::make_shared<WeightOnlyLinear>(lin, 4, group, activations);
}

}  // namespace

int64_t quantize_linears(nn::Module& model, const std::string& method, int64_t group,
                         const std::vector<std::string>& prefixes, const std::string& activations) {
  QS_CHECK(method == "dynamic" || method == "weight-int8" || method == "weight-int4",
           "quantize: unknown method '{}' for Linear layers (expected dynamic, weight-int8 or weight-int4)", method);
  QS_CHECK(group > 0 && group % 2 == 0, "quantize: the int4 group size must be positive and even, got {}", group);
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> done;
  std::map<std::string, std::string> types;  // dotted name -> type
  for (auto& [n, m] : model.named_modules()) types[n] = m->type_name();
  for (auto& [n, m] : model.named_modules()) {
    auto* lin = dynamic_cast<const nn::Linear*>(m.get());
    if (!lin || !wanted(n, prefixes)) continue;
    size_t dot = n.rfind('.');
    std::string parent = dot == std::string::npos ? "" : n.substr(0, dot);
    std::string ptype = parent.empty() ? model.type_name() : types[parent];
    QS_CHECK(detail::forwards_through_child(ptype),
             "quantize: layer '{}' sits in a {} '{}', whose forward holds the float layer directly; it cannot be "
             "swapped (supported parents: MultiheadAttention, GeluMLP, SwiGLU, Sequential)",
             n, ptype, parent);
    done.emplace_back(n, quantised_linear(n, *lin, method, group, activations));
  }
  for (auto& [n, q] : done) model.replace_child(n, q);
  model.eval();
  return int64_t(done.size());
}

}  // namespace qs::quant
