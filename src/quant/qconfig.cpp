// QConfig (include/qiusuo/quant/qconfig.h).
#include "qiusuo/quant/qconfig.h"

namespace qs::quant {

ObserverOptions FakeQuantConfig::observer_options(int64_t axis, int64_t channels) const {
  ObserverOptions o;
  o.dtype = dtype;
  o.symmetric = symmetric;
  o.reduce_range = reduce_range;
  o.axis = axis;
  o.channels = channels;
  o.averaging_constant = averaging_constant;
  o.bins = bins;
  o.method = method;
  o.percentile = percentile;
  return o;
}

std::optional<LayerQConfig> QConfig::for_module(const std::string& name, const std::string& type) const {
  for (auto& s : skip_names)
    if (s == name || (!s.empty() && s.back() == '.' && name.rfind(s, 0) == 0)) return std::nullopt;
  for (auto& t : skip_types)
    if (t == type) return std::nullopt;
  for (auto& [n, c] : by_name)
    if (n == name) return c;
  for (auto& [t, c] : by_type)
    if (t == type) return c;
  return global;
}

QConfig QConfig::default_qat() {
  QConfig q;
  q.global.activation = {ObserverKind::moving_average_minmax, QDtype::u8, false, true};
  q.global.weight = {ObserverKind::moving_average_per_channel_minmax, QDtype::s8, true};
  return q;
}

QConfig QConfig::default_ptq() {
  QConfig q;
  q.global.activation = {ObserverKind::histogram, QDtype::u8, false, true};
  q.global.weight = {ObserverKind::per_channel_minmax, QDtype::s8, true};
  return q;
}

}  // namespace qs::quant
