// Quantisation parameters (include/qiusuo/quant/qparams.h).
#include "qiusuo/quant/qparams.h"

#include <cmath>

#include "qiusuo/error.h"

namespace qs::quant {

std::string qdtype_name(QDtype d) {
  switch (d) {
    case QDtype::s8: return "s8";
    case QDtype::u8: return "u8";
    case QDtype::s4: return "s4";
  }
  return "?";
}

QDtype parse_qdtype(const std::string& s) {
  if (s == "s8") return QDtype::s8;
  if (s == "u8") return QDtype::u8;
  if (s == "s4") return QDtype::s4;
  throw Error(fmt::format("quantisation dtype '{}' is not one of s8, u8, s4", s));
}

int32_t QParams::qmin() const {
  if (quant_min < quant_max) return quant_min;
  return dtype == QDtype::s8 ? -128 : dtype == QDtype::u8 ? 0 : -8;
}

int32_t QParams::qmax() const {
  if (quant_min < quant_max) return quant_max;
  return dtype == QDtype::s8 ? 127 : dtype == QDtype::u8 ? 255 : 7;
}

bool QParams::symmetric() const {
  const int32_t mid = dtype == QDtype::u8 ? 128 : 0;
  for (int32_t z : zero_point)
    if (z != mid) return false;
  return true;
}

void QParams::validate() const {
  QS_CHECK(!scale.empty(), "qparams: scale is empty");
  QS_CHECK(scale.size() == zero_point.size(), "qparams: {} scales but {} zero points", scale.size(),
           zero_point.size());
  QS_CHECK(axis >= -1, "qparams: axis {} (expected -1 for per tensor or a dim >= 0)", axis);
  QS_CHECK(axis >= 0 || scale.size() == 1 || group_size > 0, "qparams: per-tensor parameters hold {} scales (expected 1)",
           scale.size());
  QS_CHECK(group_size >= 0, "qparams: group_size {} is negative", group_size);
  QS_CHECK(quant_min <= quant_max, "qparams: quant_min {} > quant_max {}", quant_min, quant_max);
  const int32_t lo = qmin(), hi = qmax();
  for (size_t i = 0; i < scale.size(); ++i) {
    QS_CHECK(std::isfinite(scale[i]) && scale[i] > 0, "qparams: scale[{}] = {} (expected finite and > 0)", i, scale[i]);
    QS_CHECK(zero_point[i] >= lo && zero_point[i] <= hi, "qparams: zero_point[{}] = {} outside [{}, {}]", i,
             zero_point[i], lo, hi);
  }
}

}  // namespace qs::quant
