// JSON helpers shared by the model configs (LMConfig, Seq2SeqConfig): strict key
// checking, typed reads with errors that name the config and the key, and the
// positional-encoding fields both configs carry.
#pragma once

#include <nlohmann/json.hpp>

#include "qiusuo/error.h"
#include "qiusuo/nn/positional.h"

namespace qs::nn::detail {

// Reads j[key] into out when present; a value of the wrong type is an error naming `what` and the key.
template <class T> void json_read(const nlohmann::json& j, const char* what, const char* key, T& out) {
  if (!j.contains(key)) return;
  try {
    out = j.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    QS_FAIL("{}: key '{}' has the wrong type ({}): {}", what, key, j.at(key).type_name(), e.what());
  }
}

// Errors unless j is an object whose keys all appear in `known` (the config's own to_json()).
inline void json_check_keys(const nlohmann::json& j, const nlohmann::json& known, const char* what) {
  QS_CHECK(j.is_object(), "{}: expected a JSON object, got {}", what, j.type_name());
  for (auto it = j.begin(); it != j.end(); ++it) QS_CHECK(known.contains(it.key()), "{}: unknown key '{}'", what, it.key());
}

// The PositionConfig fields a checkpoint records (max_len is the config's own length field).
inline void position_to_json(const PositionConfig& p, nlohmann::json& out) {
  out["position"] = position_encoding_name(p.kind), out["rope_base"] = p.rope_base;
  out["rope_scaling"] = rope_scaling_name(p.rope_scaling), out["rope_factor"] = p.rope_factor;
  out["yarn_beta_fast"] = p.yarn_beta_fast, out["yarn_beta_slow"] = p.yarn_beta_slow;
  out["t5_num_buckets"] = p.t5_num_buckets, out["t5_max_distance"] = p.t5_max_distance;
  out["shaw_max_distance"] = p.shaw_max_distance;
}

inline void position_from_json(const nlohmann::json& j, const char* what, PositionConfig& p) {
  std::string position = position_encoding_name(p.kind), scaling = rope_scaling_name(p.rope_scaling);
  json_read(j, what, "position", position), json_read(j, what, "rope_scaling", scaling);
  p.kind = parse_position_encoding(position);
  p.rope_scaling = parse_rope_scaling(scaling);
  json_read(j, what, "rope_base", p.rope_base), json_read(j, what, "rope_factor", p.rope_factor);
  json_read(j, what, "yarn_beta_fast", p.yarn_beta_fast), json_read(j, what, "yarn_beta_slow", p.yarn_beta_slow);
  json_read(j, what, "t5_num_buckets", p.t5_num_buckets), json_read(j, what, "t5_max_distance", p.t5_max_distance);
  json_read(j, what, "shaw_max_distance", p.shaw_max_distance);
}

}  // namespace qs::nn::detail
