// LIDC-IDRI annotation XML (include/qiusuo/medical/lidc.h), through pugixml.
#include "qiusuo/medical/lidc.h"

#include <pugixml.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <fstream>
#include <sstream>

#include "io/atomic_file.h"
#include "io/xml_file.h"
#include "qiusuo/error.h"

namespace qs::medical {

namespace {

// The file (io::XmlFile: parsing, line numbers, numbers) and the strictness of this read.
struct Ctx {
  const io::XmlFile& xml;
  bool strict = true;
  [[noreturn]] void fail(const pugi::xml_node& n, const std::string& what) const { xml.fail(n, what); }
  void unknown(const pugi::xml_node& n, const pugi::xml_node& parent) const {
    if (strict) fail(n, fmt::format("unknown element <{}> in <{}>", n.name(), parent.name()));
  }
  double number(const pugi::xml_node& n) const { return xml.number(n); }
  int rating(const pugi::xml_node& n) const {
    const double x = number(n);
    if (x != std::floor(x) || x < 1 || x > 6) fail(n, fmt::format("<{}> rating {} is not 1 to 6", n.name(), x));
    return int(x);
  }
};

void read_characteristics(const Ctx& cx, const pugi::xml_node& node, LidcCharacteristics& c) {
  const std::map<std::string, int LidcCharacteristics::*> fields = {
      {"subtlety", &LidcCharacteristics::subtlety},       {"internalStructure", &LidcCharacteristics::internal_structure},
      {"calcification", &LidcCharacteristics::calcification}, {"sphericity", &LidcCharacteristics::sphericity},
      {"margin", &LidcCharacteristics::margin},           {"lobulation", &LidcCharacteristics::lobulation},
      {"spiculation", &LidcCharacteristics::spiculation}, {"texture", &LidcCharacteristics::texture},
      {"malignancy", &LidcCharacteristics::malignancy}};
  for (pugi::xml_node f : node.children()) {
    if (f.type() != pugi::node_element) continue;
    auto it = fields.find(f.name());
    if (it == fields.end()) cx.unknown(f, node);
    else c.*(it->second) = cx.rating(f);
  }
}

LidcRoi read_roi(const Ctx& cx, const pugi::xml_node& node) {
  LidcRoi r;
  bool has_z = false;
  for (pugi::xml_node f : node.children()) {
    if (f.type() != pugi::node_element) continue;
    const std::string n = f.name();
    if (n == "imageZposition") {
      r.z = cx.number(f), has_z = true;
    } else if (n == "imageSOP_UID") {
      r.sop_uid = io::XmlFile::value(f);
    } else if (n == "inclusion") {
      const std::string v = io::XmlFile::value(f);
      if (v != "TRUE" && v != "FALSE") cx.fail(f, fmt::format("<inclusion> is '{}', not TRUE or FALSE", v));
      r.inclusion = v == "TRUE";
    } else if (n == "edgeMap") {
      pugi::xml_node x = f.child("xCoord"), y = f.child("yCoord");
      for (pugi::xml_node g : f.children())
        if (g.type() == pugi::node_element && std::strcmp(g.name(), "xCoord") != 0 && std::strcmp(g.name(), "yCoord") != 0)
          cx.unknown(g, f);
      if (!x || !y) cx.fail(f, "<edgeMap> without <xCoord> and <yCoord>");
      r.points.push_back({cx.number(x), cx.number(y)});
    } else {
      cx.unknown(f, node);
    }
  }
  if (r.sop_uid.empty()) cx.fail(node, "<roi> without an <imageSOP_UID>");
  if (!has_z) cx.fail(node, "<roi> without an <imageZposition>");
  if (r.points.empty()) cx.fail(node, "<roi> without <edgeMap> points");
  return r;
}

}  // namespace

LidcRead read_lidc_xml(const std::string& path, const LidcReadOptions& opt) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw IOError(fmt::format("{}: cannot read: {}", path, ec.message()));
  if (int64_t(size) > opt.max_bytes)
    throw IOError(fmt::format("{}: {} bytes, over the limit of {} for an annotation file", path, size, opt.max_bytes));
  std::string text;
  {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  }
  const io::XmlFile xml(path, std::move(text), "LIDC XML");
  const Ctx cx{xml, opt.strict};
  pugi::xml_node root = xml.root();
  if (std::strcmp(root.name(), "LidcReadMessage") != 0)
    cx.fail(root, fmt::format("the root element is <{}>, not <LidcReadMessage>", root.name()));
  LidcRead out;
  for (pugi::xml_node n : root.children()) {
    if (n.type() != pugi::node_element) continue;
    const std::string name = n.name();
    if (name == "ResponseHeader") {
      out.series_uid = io::XmlFile::value(n.child("SeriesInstanceUid"));
      out.study_uid = io::XmlFile::value(n.child("StudyInstanceUID"));
    } else if (name == "CXRreadingSession") {
      cx.fail(n, "a chest X-ray reading (CXRreadingSession), not a CT one");
    } else if (name == "readingSession") {
      const int session = out.sessions++;
      std::string reader;
      for (pugi::xml_node s : n.children()) {
        if (s.type() != pugi::node_element) continue;
        const std::string sn = s.name();
        if (sn == "servicingRadiologistID") {
          reader = io::XmlFile::value(s);
        } else if (sn == "annotationVersion") {
        } else if (sn == "unblindedReadNodule") {
          LidcAnnotation a;
          a.session = session, a.reader = reader;
          for (pugi::xml_node f : s.children()) {
            if (f.type() != pugi::node_element) continue;
            const std::string fn = f.name();
            if (fn == "noduleID") a.nodule_id = io::XmlFile::value(f);
            else if (fn == "characteristics") a.has_characteristics = true, read_characteristics(cx, f, a.c);
            else if (fn == "roi") a.rois.push_back(read_roi(cx, f));
            else cx.unknown(f, s);
          }
          if (a.rois.empty()) cx.fail(s, fmt::format("nodule '{}' has no <roi>", a.nodule_id));
          out.annotations.push_back(std::move(a));
        } else if (sn == "nonNodule") {
          LidcNonNodule m;
          m.session = session;
          for (pugi::xml_node f : s.children()) {
            if (f.type() != pugi::node_element) continue;
            const std::string fn = f.name();
            if (fn == "nonNoduleID") m.id = io::XmlFile::value(f);
            else if (fn == "imageZposition") m.z = cx.number(f);
            else if (fn == "imageSOP_UID") m.sop_uid = io::XmlFile::value(f);
            else if (fn == "locus") {
              if (!f.child("xCoord") || !f.child("yCoord")) cx.fail(f, "<locus> without <xCoord> and <yCoord>");
              m.column = cx.number(f.child("xCoord")), m.row = cx.number(f.child("yCoord"));
            } else cx.unknown(f, s);
          }
          out.non_nodules.push_back(m);
        } else {
          cx.unknown(s, n);
        }
      }
      // A reader ID may come after the nodules in the file.
      for (LidcAnnotation& a : out.annotations)
        if (a.session == session) a.reader = reader;
    } else {
      cx.unknown(n, root);
    }
  }
  return out;
}

void write_lidc_xml(const std::string& path, const LidcRead& read) {
  pugi::xml_document doc;
  pugi::xml_node root = doc.append_child("LidcReadMessage");
  root.append_attribute("xmlns") = "http://www.nih.gov";
  pugi::xml_node h = root.append_child("ResponseHeader");
  h.append_child("SeriesInstanceUid").text() = read.series_uid.c_str();
  h.append_child("StudyInstanceUID").text() = read.study_uid.c_str();
  auto num = [](pugi::xml_node parent, const char* name, double v) {
    parent.append_child(name).text() = fmt::format("{:.10g}", v).c_str();
  };
  for (int s = 0; s < read.sessions; ++s) {
    pugi::xml_node rs = root.append_child("readingSession");
    rs.append_child("annotationVersion").text() = "3.12";
    std::string reader;
    for (const LidcAnnotation& a : read.annotations)
      if (a.session == s) reader = a.reader;
    rs.append_child("servicingRadiologistID").text() = reader.c_str();
    for (const LidcAnnotation& a : read.annotations) {
      if (a.session != s) continue;
      pugi::xml_node n = rs.append_child("unblindedReadNodule");
      n.append_child("noduleID").text() = a.nodule_id.c_str();
      if (a.has_characteristics) {
        pugi::xml_node c = n.append_child("characteristics");
        const std::pair<const char*, int> fields[] = {
            {"subtlety", a.c.subtlety},         {"internalStructure", a.c.internal_structure},
            {"calcification", a.c.calcification}, {"sphericity", a.c.sphericity},
            {"margin", a.c.margin},             {"lobulation", a.c.lobulation},
            {"spiculation", a.c.spiculation},   {"texture", a.c.texture},
            {"malignancy", a.c.malignancy}};
        for (const auto& [name, v] : fields)
          if (v > 0) c.append_child(name).text() = v;
      }
      for (const LidcRoi& r : a.rois) {
        pugi::xml_node roi = n.append_child("roi");
        num(roi, "imageZposition", r.z);
        roi.append_child("imageSOP_UID").text() = r.sop_uid.c_str();
        roi.append_child("inclusion").text() = r.inclusion ? "TRUE" : "FALSE";
        for (const auto& p : r.points) {
          pugi::xml_node e = roi.append_child("edgeMap");
          num(e, "xCoord", p[0]);
          num(e, "yCoord", p[1]);
        }
      }
    }
    for (const LidcNonNodule& m : read.non_nodules) {
      if (m.session != s) continue;
      pugi::xml_node n = rs.append_child("nonNodule");
      n.append_child("nonNoduleID").text() = m.id.c_str();
      num(n, "imageZposition", m.z);
      n.append_child("imageSOP_UID").text() = m.sop_uid.c_str();
      pugi::xml_node l = n.append_child("locus");
      num(l, "xCoord", m.column);
      num(l, "yCoord", m.row);
    }
  }
  std::ostringstream ss;
  doc.save(ss, "  ", pugi::format_default, pugi::encoding_utf8);
  io::write_file_atomic(path, ss.str());
}

std::vector<LidcCase> find_lidc_cases(const std::string& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw IOError(fmt::format("{}: not a folder", root));
  std::vector<LidcCase> out;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::path& p = it->path();
    if (!it->is_regular_file() || p.extension() != ".xml" || it->file_size() > (int64_t(64) << 20)) continue;
    std::ifstream f(p, std::ios::binary);
    std::string head(4096, '\0');
    f.read(head.data(), std::streamsize(head.size()));
    head.resize(size_t(f.gcount()));
    if (head.find("<LidcReadMessage") == std::string::npos) continue;
    std::ostringstream ss;
    ss << f.rdbuf();
    const std::string all = head + ss.str();
    if (all.find("<readingSession") == std::string::npos) continue;  // X-ray readings use CXRreadingSession
    out.push_back({p.parent_path().string(), p.string()});
  }
  if (ec) throw IOError(fmt::format("{}: cannot walk: {}", root, ec.message()));
  std::sort(out.begin(), out.end(), [](const LidcCase& a, const LidcCase& b) { return a.xml < b.xml; });
  return out;
}

std::vector<LidcNodule> group_nodules(const LidcRead& read, const DicomSeries& series, double tolerance_mm) {
  QS_CHECK(read.series_uid.empty() || series.series_uid.empty() || read.series_uid == series.series_uid,
           "LIDC: the annotations are for series {}, the images are series {}", read.series_uid, series.series_uid);
  std::map<std::string, int64_t> slice_of;
  for (size_t k = 0; k < series.sop_uids.size(); ++k) slice_of[series.sop_uids[k]] = int64_t(k);
  struct Item {
    int annotation;
    std::array<double, 3> voxel, mm;
    double diameter;
  };
  std::vector<Item> items;
  for (size_t a = 0; a < read.annotations.size(); ++a) {
    const LidcAnnotation& an = read.annotations[a];
    if (!an.has_characteristics) continue;
    std::array<double, 3> sum{};
    std::vector<std::array<double, 3>> pts;
    for (const LidcRoi& r : an.rois) {
      auto it = slice_of.find(r.sop_uid);
      QS_CHECK(it != slice_of.end(), "LIDC: nodule '{}' outlines slice {}, which is not in series {}", an.nodule_id,
               r.sop_uid, series.series_uid);
      if (!r.inclusion) continue;
      for (const auto& p : r.points) pts.push_back(series.volume.world(p[0], p[1], double(it->second)));
      for (const auto& p : r.points) sum[0] += p[0], sum[1] += p[1], sum[2] += double(it->second);
    }
    if (pts.empty()) continue;
    Item it{int(a), {}, {}, 0};
    for (int d = 0; d < 3; ++d) it.voxel[size_t(d)] = sum[size_t(d)] / double(pts.size());
    it.mm = series.volume.world(it.voxel[0], it.voxel[1], it.voxel[2]);
    for (size_t p = 0; p < pts.size(); ++p)
      for (size_t q = p + 1; q < pts.size(); ++q) {
        const double dx = pts[p][0] - pts[q][0], dy = pts[p][1] - pts[q][1], dz = pts[p][2] - pts[q][2];
        it.diameter = std::max(it.diameter, std::sqrt(dx * dx + dy * dy + dz * dz));
      }
    items.push_back(it);
  }
  // Single linkage over the centres, closest pairs first, never joining two groups that
  // share a reading session.
  std::vector<int> group(items.size());
  for (size_t i = 0; i < items.size(); ++i) group[i] = int(i);
  std::vector<std::set<int>> sessions(items.size());
  for (size_t i = 0; i < items.size(); ++i) sessions[i] = {read.annotations[size_t(items[i].annotation)].session};
  struct Pair {
    double d;
    size_t a, b;
  };
  std::vector<Pair> pairs;
  for (size_t a = 0; a < items.size(); ++a)
    for (size_t b = a + 1; b < items.size(); ++b) {
      double d2 = 0;
      for (size_t k = 0; k < 3; ++k) d2 += (items[a].mm[k] - items[b].mm[k]) * (items[a].mm[k] - items[b].mm[k]);
      if (std::sqrt(d2) <= tolerance_mm) pairs.push_back({std::sqrt(d2), a, b});
    }
  std::sort(pairs.begin(), pairs.end(), [](const Pair& x, const Pair& y) { return x.d < y.d; });
  auto find = [&](int i) {
    while (group[size_t(i)] != i) i = group[size_t(i)];
    return i;
  };
  for (const Pair& p : pairs) {
    const int ga = find(int(p.a)), gb = find(int(p.b));
    if (ga == gb) continue;
    bool shared = false;
    for (int s : sessions[size_t(gb)]) shared |= sessions[size_t(ga)].count(s) > 0;
    if (shared) continue;
    group[size_t(gb)] = ga;
    sessions[size_t(ga)].insert(sessions[size_t(gb)].begin(), sessions[size_t(gb)].end());
  }
  std::map<int, LidcNodule> by_group;
  std::map<int, int> order;
  for (size_t i = 0; i < items.size(); ++i) {
    const int g = find(int(i));
    if (!order.count(g)) order[g] = int(order.size());
    LidcNodule& n = by_group[order[g]];
    n.annotations.push_back(items[i].annotation);
    n.diameter_mm = std::max(n.diameter_mm, items[i].diameter);
    n.malignancy.push_back(read.annotations[size_t(items[i].annotation)].c.malignancy);
    for (size_t d = 0; d < 3; ++d) n.centre[d] += items[i].voxel[d];
  }
  std::vector<LidcNodule> out;
  for (auto& [k, n] : by_group) {
    const double m = double(n.annotations.size());
    for (double& c : n.centre) c /= m;
    n.centre_mm = series.volume.world(n.centre[0], n.centre[1], n.centre[2]);
    double s = 0;
    int rated = 0;
    for (int r : n.malignancy)
      if (r > 0) s += r, ++rated;
    n.mean_malignancy = rated ? s / rated : 0;
    out.push_back(std::move(n));
  }
  return out;
}

int label(const LidcNodule& n, const LabelRule& rule) {
  int rated = 0;
  for (int r : n.malignancy) rated += r > 0;
  if (rated < std::max(1, rule.min_readers)) return -1;
  if (n.mean_malignancy > rule.malignant_above) return 1;
  if (n.mean_malignancy < rule.benign_below) return 0;
  return -1;
}

}  // namespace qs::medical
