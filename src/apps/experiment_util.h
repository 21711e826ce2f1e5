// What the apps' JSON results and pages share (the experiments, `heads`, the LM trainer).
#pragma once
#include <cmath>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace qs::apps {

// A number, or null where it is not one (NaN: a length an encoding cannot run at, a value an
// older run did not record).
inline nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

// A table cell: the number formatted by `f`, or "—" where the value is not a number.
inline std::string fmt_num(const nlohmann::json& v, const char* f = "{:.3f}") {
  return v.is_number() ? fmt::format(fmt::runtime(f), v.get<double>()) : std::string("—");
}

}  // namespace qs::apps
