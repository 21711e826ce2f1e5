// Attrs: the named, typed attributes of one op call ("dim", "keepdim", "eps", ...).
// A small ordered list of name-value pairs kept in the order they were set; to_string()
// prints them for QS_VERBOSE=dispatch.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "qiusuo/error.h"

namespace qs {

using AttrValue = std::variant<int64_t, double, std::vector<int64_t>, std::string>;

class Attrs {
 public:
  Attrs() = default;
  Attrs& set(const char* name, int64_t v) { return put(name, AttrValue(v)); }
  Attrs& set(const char* name, int v) { return put(name, AttrValue(int64_t(v))); }
  Attrs& set(const char* name, bool v) { return put(name, AttrValue(int64_t(v))); }
  Attrs& set(const char* name, double v) { return put(name, AttrValue(v)); }
  Attrs& set(const char* name, std::vector<int64_t> v) { return put(name, AttrValue(std::move(v))); }
  Attrs& set(const char* name, std::string v) { return put(name, AttrValue(std::move(v))); }

  bool has(const char* name) const { return find(name) != nullptr; }
  int64_t i(const char* name) const { return get<int64_t>(name); }
  int64_t i(const char* name, int64_t dflt) const { return has(name) ? i(name) : dflt; }
  bool b(const char* name) const { return get<int64_t>(name) != 0; }
  bool b(const char* name, bool dflt) const { return has(name) ? b(name) : dflt; }
  double f(const char* name) const {
    const AttrValue* v = find(name);
    if (v && std::holds_alternative<int64_t>(*v)) return double(std::get<int64_t>(*v));
    return get<double>(name);
  }
  double f(const char* name, double dflt) const { return has(name) ? f(name) : dflt; }
  const std::vector<int64_t>& ints(const char* name) const { return get<std::vector<int64_t>>(name); }
  const std::string& s(const char* name) const { return get<std::string>(name); }

  const std::vector<std::pair<std::string, AttrValue>>& items() const { return items_; }
  std::string to_string() const;  // "dim=1, keepdim=0"

 private:
  Attrs& put(const char* name, AttrValue v) {
    for (auto& kv : items_)
      if (kv.first == name) {
        kv.second = std::move(v);
        return *this;
      }
    items_.emplace_back(name, std::move(v));
    return *this;
  }
  const AttrValue* find(const char* name) const {
    for (auto& kv : items_)
      if (kv.first == name) return &kv.second;
    return nullptr;
  }
  template <class T> const T& get(const char* name) const {
    const AttrValue* v = find(name);
    QS_CHECK(v != nullptr, "internal: op attribute '{}' is missing (have: {})", name, to_string());
    QS_CHECK(std::holds_alternative<T>(*v), "internal: op attribute '{}' has the wrong type", name);
    return std::get<T>(*v);
  }
  std::vector<std::pair<std::string, AttrValue>> items_;
};

}  // namespace qs
