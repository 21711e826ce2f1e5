// Annotation XML from outside (LIDC-IDRI's reads, Pascal VOC boxes), parsed with pugixml
// the same way everywhere: DTDs refused, errors as IOError "file:line: what", numbers
// read whole and finite. Only what links pugixml includes this (qiusuo_medical,
// qiusuo_defect).
#pragma once
#include <fmt/format.h>
#include <pugixml.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "qiusuo/error.h"

namespace qs::io {

class XmlFile {
 public:
  // Parses `text`, named `path` in errors. Refused: any <!DOCTYPE or <!ENTITY (pugixml would
  // not resolve an external entity, but a file carrying declarations is not what these
  // formats write, and keeping "&xxe;" as text would hide it; `kind` names the format in
  // the message), malformed XML, no root element.
  XmlFile(std::string path, std::string text, const char* kind) : path_(std::move(path)), text_(std::move(text)) {
    for (const char* bad : {"<!DOCTYPE", "<!ENTITY"})
      if (auto at = text_.find(bad); at != std::string::npos)
        throw IOError(fmt::format("{}:{}: {} declarations are refused (no DTD or entity is expected in {})", path_,
                                  line_at(at), bad, kind));
    const pugi::xml_parse_result res = doc_.load_buffer(text_.data(), text_.size(), pugi::parse_default);
    if (!res)
      throw IOError(fmt::format("{}:{}: not well-formed XML: {}", path_,
                                line_at(size_t(std::clamp<ptrdiff_t>(res.offset, 0, ptrdiff_t(text_.size())))),
                                res.description()));
    if (!doc_.document_element()) throw IOError(fmt::format("{}: no root element", path_));
  }
  XmlFile(const XmlFile&) = delete;
  XmlFile& operator=(const XmlFile&) = delete;

  pugi::xml_node root() const { return doc_.document_element(); }
  const std::string& path() const { return path_; }

  // The 1-based line of a node (0 when pugixml cannot say).
  int64_t line(const pugi::xml_node& n) const {
    const ptrdiff_t off = n.offset_debug();
    return off < 0 || size_t(off) > text_.size() ? 0 : line_at(size_t(off));
  }
  [[noreturn]] void fail(const pugi::xml_node& n, const std::string& what) const {
    throw IOError(fmt::format("{}:{}: {}", path_, line(n), what));
  }
  // A node's text without surrounding blanks.
  static std::string value(const pugi::xml_node& n) {
    std::string v = n.child_value();
    const size_t a = v.find_first_not_of(" \t\r\n"), b = v.find_last_not_of(" \t\r\n");
    return a == std::string::npos ? "" : v.substr(a, b - a + 1);
  }
  // A node's whole text as a finite number; else fail "<name> holds 'text', not a number".
  double number(const pugi::xml_node& n) const {
    const std::string v = value(n);
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || errno != 0 || !end || *end != '\0' || !std::isfinite(x))
      fail(n, fmt::format("<{}> holds '{}', not a number", n.name(), v));
    return x;
  }

 private:
  int64_t line_at(size_t offset) const {
    return 1 + std::count(text_.begin(), text_.begin() + ptrdiff_t(std::min(offset, text_.size())), '\n');
  }
  std::string path_, text_;
  pugi::xml_document doc_;
};

}  // namespace qs::io
