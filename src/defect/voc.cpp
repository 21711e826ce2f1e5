// Pascal VOC annotation XML (include/qiusuo/defect/voc.h), through pugixml.
#include "qiusuo/defect/voc.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "io/atomic_file.h"
#include "io/read_file.h"
#include "io/xml_file.h"
#include "qiusuo/error.h"

namespace qs::defect {

namespace {

// io::XmlFile plus the VOC field rules.
struct Ctx {
  const io::XmlFile& xml;
  [[noreturn]] void fail(const pugi::xml_node& n, const std::string& what) const { xml.fail(n, what); }
  static std::string value(const pugi::xml_node& n) { return io::XmlFile::value(n); }
  pugi::xml_node need(const pugi::xml_node& parent, const char* name) const {
    pugi::xml_node n = parent.child(name);
    if (!n) fail(parent, fmt::format("<{}> has no <{}>", parent.name(), name));
    return n;
  }
  double number(const pugi::xml_node& n) const { return xml.number(n); }
  int size_field(const pugi::xml_node& n) const {
    const double x = number(n);
    if (x != std::floor(x) || x < 1 || x > 16384) fail(n, fmt::format("<{}> is {}; 1..16384 expected", n.name(), x));
    return int(x);
  }
  bool flag(const pugi::xml_node& parent, const char* name) const {
    pugi::xml_node n = parent.child(name);
    if (!n) return false;
    const std::string v = value(n);
    if (v != "0" && v != "1") fail(n, fmt::format("<{}> is '{}', not 0 or 1", name, v));
    return v == "1";
  }
};

// "12" for integers, else the shortest round-trip form.
std::string coord(double v) { return v == std::floor(v) && std::abs(v) < 1e15 ? fmt::format("{}", int64_t(v)) : fmt::format("{}", v); }

std::string escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

VocAnnotation parse_voc(const std::string& text, const std::string& where) {
  const io::XmlFile xml(where, text, "a VOC annotation");
  const Ctx cx{xml};
  pugi::xml_node root = xml.root();
  if (std::strcmp(root.name(), "annotation") != 0)
    cx.fail(root, fmt::format("the root element is <{}>, not <annotation>", root.name()));
  VocAnnotation a;
  a.folder = cx.value(root.child("folder"));
  a.filename = cx.value(root.child("filename"));
  pugi::xml_node size = cx.need(root, "size");
  a.width = cx.size_field(cx.need(size, "width"));
  a.height = cx.size_field(cx.need(size, "height"));
  if (pugi::xml_node d = size.child("depth")) {
    const double v = cx.number(d);
    if (v != 0 && v != 1 && v != 3) cx.fail(d, fmt::format("<depth> is {}; 1 or 3 expected", v));
    a.depth = int(v);
  }
  for (pugi::xml_node o : root.children("object")) {
    VocObject ob;
    ob.name = cx.value(cx.need(o, "name"));
    if (ob.name.empty()) cx.fail(o, "an <object> with an empty <name>");
    ob.pose = cx.value(o.child("pose"));
    ob.truncated = cx.flag(o, "truncated");
    ob.difficult = cx.flag(o, "difficult");
    pugi::xml_node b = cx.need(o, "bndbox");
    ob.xmin = cx.number(cx.need(b, "xmin"));
    ob.ymin = cx.number(cx.need(b, "ymin"));
    ob.xmax = cx.number(cx.need(b, "xmax"));
    ob.ymax = cx.number(cx.need(b, "ymax"));
    if (ob.xmin > ob.xmax || ob.ymin > ob.ymax)
      cx.fail(b, fmt::format("box ({}, {}) - ({}, {}) has xmin > xmax or ymin > ymax", ob.xmin, ob.ymin, ob.xmax, ob.ymax));
    // Pixel indices run 1..width: a box wholly outside is an error, one reaching out (a tool
    // that counts from 0, or writes width + 1) is clipped.
    if (ob.xmax < 1 || ob.xmin > a.width || ob.ymax < 1 || ob.ymin > a.height)
      cx.fail(b, fmt::format("box ({}, {}) - ({}, {}) lies outside the {} x {} image", ob.xmin, ob.ymin, ob.xmax,
                             ob.ymax, a.width, a.height));
    const VocObject written = ob;
    ob.xmin = std::clamp(ob.xmin, 1.0, double(a.width));
    ob.xmax = std::clamp(ob.xmax, 1.0, double(a.width));
    ob.ymin = std::clamp(ob.ymin, 1.0, double(a.height));
    ob.ymax = std::clamp(ob.ymax, 1.0, double(a.height));
    if (ob.xmin != written.xmin || ob.xmax != written.xmax || ob.ymin != written.ymin || ob.ymax != written.ymax)
      ++a.clipped;
    a.objects.push_back(std::move(ob));
  }
  return a;
}

VocAnnotation read_voc(const std::string& path) {
  return parse_voc(io::read_file_bounded(path, uint64_t(4) << 20, "VOC annotation"), path);
}

std::string voc_xml(const VocAnnotation& a) {
  QS_CHECK(a.width >= 1 && a.width <= 16384 && a.height >= 1 && a.height <= 16384, "voc: image size {} x {} outside "
           "1..16384", a.width, a.height);
  std::string x = "<annotation>\n";
  if (!a.folder.empty()) x += fmt::format("  <folder>{}</folder>\n", escaped(a.folder));
  x += fmt::format("  <filename>{}</filename>\n", escaped(a.filename));
  x += fmt::format("  <size>\n    <width>{}</width>\n    <height>{}</height>\n    <depth>{}</depth>\n  </size>\n",
                   a.width, a.height, a.depth == 0 ? 1 : a.depth);
  for (const VocObject& o : a.objects) {
    QS_CHECK(!o.name.empty(), "voc: an object without a class name");
    x += fmt::format("  <object>\n    <name>{}</name>\n    <pose>{}</pose>\n    <truncated>{}</truncated>\n"
                     "    <difficult>{}</difficult>\n    <bndbox>\n      <xmin>{}</xmin>\n      <ymin>{}</ymin>\n"
                     "      <xmax>{}</xmax>\n      <ymax>{}</ymax>\n    </bndbox>\n  </object>\n",
                     escaped(o.name), escaped(o.pose.empty() ? "Unspecified" : o.pose), int(o.truncated),
                     int(o.difficult), coord(o.xmin), coord(o.ymin), coord(o.xmax), coord(o.ymax));
  }
  return x + "</annotation>\n";
}

void write_voc(const VocAnnotation& a, const std::string& path) { io::write_file_atomic(path, voc_xml(a)); }

std::array<double, 4> voc_box_continuous(const VocObject& o) { return {o.xmin - 1, o.ymin - 1, o.xmax, o.ymax}; }

void set_voc_box(VocObject& o, const std::array<double, 4>& c) {
  o.xmin = c[0] + 1;
  o.ymin = c[1] + 1;
  o.xmax = c[2];
  o.ymax = c[3];
}

}  // namespace qs::defect
