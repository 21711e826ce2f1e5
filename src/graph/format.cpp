// The graph files: the text form (Graph::to_text) and a safetensors file of the params'
// and constants' data beside it.
#include <fstream>
#include <map>
#include <sstream>

#include "io/atomic_file.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/io/safetensors.h"

namespace qs::graph {

namespace {

std::string weights_path(const std::string& path) { return path + ".safetensors"; }

bool name_ok(const std::string& n) {
  return !n.empty() && n.find_first_of(" \t\r\n,:()={}[]\"") == std::string::npos;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

class Parser {
 public:
  Parser(const std::string& file) : file_(file) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw IOError(fmt::format("{}:{}: {}", file_, line_no_, what));
  }
  void at_line(int n) { line_no_ = n; }

  // Splits at `sep` outside brackets and quotes; the parts trimmed.
  std::vector<std::string> split_top(const std::string& s, char sep) const {
    std::vector<std::string> parts;
    int depth = 0;
    bool quoted = false;
    std::string cur;
    for (char ch : s) {
      if (ch == '"') quoted = !quoted;
      if (!quoted && (ch == '[' || ch == '(' || ch == '{')) ++depth;
      if (!quoted && (ch == ']' || ch == ')' || ch == '}')) --depth;
      if (depth < 0) fail(fmt::format("unbalanced '{}' in '{}'", ch, s));
      if (ch == sep && depth == 0 && !quoted) {
        parts.push_back(trim(cur));
        cur.clear();
      } else {
        cur += ch;
      }
    }
    if (depth != 0 || quoted) fail(fmt::format("unbalanced brackets or quotes in '{}'", s));
    parts.push_back(trim(cur));
    return parts;
  }

  int64_t integer(const std::string& s) const {
    if (s.empty()) fail("expected an integer, found nothing");
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno || *end != '\0') fail(fmt::format("expected an integer, found '{}'", s));
    return int64_t(v);
  }

  // An integer, or a symbol: "N" the dynamic batch (kBatch), "S" the sequence length (kSeq).
  int64_t size_or_symbol(const std::string& s) const { return s == "N" ? kBatch : s == "S" ? kSeq : integer(s); }

  std::vector<int64_t> int_list(const std::string& s) const {
    if (s.size() < 2 || s.front() != '[' || s.back() != ']') fail(fmt::format("expected a list [a, b, ...], found '{}'", s));
    std::vector<int64_t> v;
    std::string inner = trim(s.substr(1, s.size() - 2));
    if (inner.empty()) return v;
    for (auto& p : split_top(inner, ',')) v.push_back(size_or_symbol(p));
    return v;
  }

  // "f32[3, 1, 28, 28]"
  std::pair<DType, Shape> type(const std::string& s) const {
    size_t b = s.find('[');
    if (b == std::string::npos) fail(fmt::format("expected a type such as f32[2, 3], found '{}'", s));
    std::string dt = trim(s.substr(0, b));
    for (int k = 0; k < kNumDTypes; ++k)
      if (dt == dtype_name(DType(k))) {
        Shape shape = int_list(trim(s.substr(b)));
        for (int64_t d : shape)
          if (d < 0 && !is_symbol(d)) fail(fmt::format("negative size in '{}'", s));
        return {DType(k), shape};
      }
    fail(fmt::format("unknown dtype '{}'", dt));
  }

  AttrValue attr_value(const std::string& s) const {
    if (s.empty()) fail("an attribute without a value");
    if (s.front() == '[') return int_list(s);
    if (s.front() == '"') {
      if (s.size() < 2 || s.back() != '"') fail(fmt::format("unterminated string {}", s));
      return s.substr(1, s.size() - 2);
    }
    if (s.find_first_of(".eEn") != std::string::npos) {
      char* end = nullptr;
      double v = std::strtod(s.c_str(), &end);
      if (*end != '\0') fail(fmt::format("expected a number, found '{}'", s));
      return v;
    }
    return size_or_symbol(s);
  }

 private:
  std::string file_;
  int line_no_ = 0;
};

}  // namespace

void save(const Graph& g, const std::string& path) {
  g.check_replayable();
  g.verify();
  io::NamedTensors tensors;
  for (size_t id = 0; id < g.values.size(); ++id) {
    const Value& v = g.values[id];
    if (!name_ok(v.name))
      throw IOError(fmt::format("{}: value {} is named '{}', which the text form cannot carry (no spaces or ,:()={{}}[]\")",
                                path, id, v.name));
    if (v.kind == ValueKind::param || v.kind == ValueKind::constant) tensors.emplace_back(v.name, g.data[id]);
  }
  for (size_t n = 0; n < g.nodes.size(); ++n)
    for (auto& [k, a] : g.nodes[n].attrs.items())
      if (auto* s = std::get_if<std::string>(&a); s && s->find_first_of("\"\n") != std::string::npos)
        throw IOError(fmt::format("{}: node {} ({}) has a string attribute {} with a quote or newline", path, n,
                                  g.nodes[n].op, k));
  io::save_safetensors(weights_path(path), tensors, {{"format", "qsgraph"}, {"version", std::to_string(kFormatVersion)}});
  io::write_file_atomic(path, g.to_text());
}

Graph load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IOError(fmt::format("{}: cannot open the graph file", path));
  Parser p(path);
  Graph g;
  std::map<std::string, int> ids;
  auto declare = [&](const std::string& name, ValueKind kind, const std::pair<DType, Shape>& t, int producer) {
    if (!name_ok(name)) p.fail(fmt::format("'{}' is not a valid value name", name));
    if (ids.count(name)) p.fail(fmt::format("value '{}' is declared twice", name));
    ids[name] = int(g.values.size());
    g.values.push_back(Value{name, kind, t.second, t.first, producer});
    g.data.emplace_back();
    return int(g.values.size()) - 1;
  };
  auto lookup = [&](const std::string& name) {
    auto it = ids.find(name);
    if (it == ids.end()) p.fail(fmt::format("value '{}' is used but not declared", name));
    return it->second;
  };

  std::string line;
  int line_no = 0;
  bool have_header = false;
  int64_t version = 0;
  while (std::getline(in, line)) {
    p.at_line(++line_no);
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (!have_header) {
      if (line.rfind("qsgraph ", 0) != 0) p.fail(fmt::format("not a qiusuo graph: the first line is '{}', expected 'qsgraph <version>'", line.substr(0, 60)));
      version = p.integer(trim(line.substr(8)));
      if (version > kFormatVersion)
        p.fail(fmt::format("format version {} is newer than this build reads (up to {}); use a newer qiusuo", version,
                           kFormatVersion));
      if (version < 1) p.fail(fmt::format("format version {} does not exist", version));
      have_header = true;
      continue;
    }
    size_t eq = line.find(" = ");
    if (eq == std::string::npos) {
      size_t sp = line.find(' ');
      std::string word = line.substr(0, sp), rest = sp == std::string::npos ? "" : trim(line.substr(sp + 1));
      if (word == "output") {
        g.outputs.push_back(lookup(rest));
        continue;
      }
      if (word == "max_seq") {
        if (version < 3) p.fail(fmt::format("'max_seq' is a line of format version 3, this file is version {}", version));
        g.max_seq = p.integer(rest);
        if (g.max_seq < 1 || g.max_seq > (int64_t(1) << 40)) p.fail(fmt::format("max_seq {} out of range", g.max_seq));
        continue;
      }
      ValueKind kind = ValueKind::input;
      if (word == "param")
        kind = ValueKind::param;
      else if (word == "const")
        kind = ValueKind::constant;
      else if (word != "input")
        p.fail(fmt::format("unknown line '{}'", line.substr(0, 60)));
      size_t colon = rest.find(':');
      if (colon == std::string::npos) p.fail(fmt::format("expected '{} NAME: TYPE', found '{}'", word, line));
      int id = declare(trim(rest.substr(0, colon)), kind, p.type(trim(rest.substr(colon + 1))), -1);
      if (kind == ValueKind::input) g.inputs.push_back(id);
      continue;
    }
    // OUTS = op(INS) {ATTRS}
    std::string rhs = trim(line.substr(eq + 3));
    size_t open = rhs.find('(');
    if (open == std::string::npos) p.fail(fmt::format("expected 'op(inputs)', found '{}'", rhs));
    size_t close = rhs.find(')', open);
    if (close == std::string::npos) p.fail(fmt::format("missing ')' in '{}'", rhs));
    Node node;
    node.op = trim(rhs.substr(0, open));
    std::string ins = trim(rhs.substr(open + 1, close - open - 1)), tail = trim(rhs.substr(close + 1));
    if (!ins.empty())
      for (auto& name : p.split_top(ins, ',')) node.inputs.push_back(name == "_" ? -1 : lookup(name));
    if (!tail.empty()) {
      if (tail.front() != '{' || tail.back() != '}') p.fail(fmt::format("expected '{{attributes}}', found '{}'", tail));
      std::string body = trim(tail.substr(1, tail.size() - 2));
      if (!body.empty())
        for (auto& kv : p.split_top(body, ',')) {
          size_t e = kv.find('=');
          if (e == std::string::npos) p.fail(fmt::format("expected name=value, found '{}'", kv));
          std::string key = trim(kv.substr(0, e));
          if (node.attrs.has(key.c_str())) p.fail(fmt::format("attribute '{}' given twice", key));
          std::visit([&](auto&& v) { node.attrs.set(key.c_str(), v); }, p.attr_value(trim(kv.substr(e + 1))));
        }
    }
    for (auto& out : p.split_top(trim(line.substr(0, eq)), ',')) {
      size_t colon = out.find(':');
      if (colon == std::string::npos) p.fail(fmt::format("expected 'NAME: TYPE' for an output, found '{}'", out));
      node.outputs.push_back(declare(trim(out.substr(0, colon)), ValueKind::node, p.type(trim(out.substr(colon + 1))),
                                     int(g.nodes.size())));
    }
    g.nodes.push_back(std::move(node));
  }
  for (const Value& v : g.values)
    for (int64_t d : v.shape) {
      if (d == kBatch && version < 2)
        throw IOError(fmt::format("{}: '{}' has a dynamic batch dimension (N), which format version {} does not have",
                                  path, v.name, version));
      if (d == kSeq && g.max_seq == 0)
        throw IOError(fmt::format("{}: '{}' has a dynamic sequence length (S), but the file has no 'max_seq' line{}",
                                  path, v.name, version < 3 ? fmt::format(" (format version {} has neither)", version) : ""));
    }
  if (!have_header) throw IOError(fmt::format("{}: empty file, expected 'qsgraph <version>'", path));

  io::SafetensorsFile w = io::load_safetensors(weights_path(path));
  std::map<std::string, Tensor> by_name(w.tensors.begin(), w.tensors.end());
  for (size_t id = 0; id < g.values.size(); ++id) {
    const Value& v = g.values[id];
    if (v.kind != ValueKind::param && v.kind != ValueKind::constant) continue;
    auto it = by_name.find(v.name);
    if (it == by_name.end())
      throw IOError(fmt::format("{}: {} '{}' is not in the weights file {}", path, value_kind_name(v.kind), v.name,
                                weights_path(path)));
    if (it->second.shape() != v.shape || it->second.dtype() != v.dtype)
      throw IOError(fmt::format("{}: {} '{}' is declared {}{} but {} holds {}{}", path, value_kind_name(v.kind), v.name,
                                dtype_name(v.dtype), shape_str(v.shape), weights_path(path),
                                dtype_name(it->second.dtype()), shape_str(it->second.shape())));
    g.data[id] = it->second;
    by_name.erase(it);
  }
  if (!by_name.empty())
    throw IOError(fmt::format("{}: the weights file {} holds '{}', which the graph does not declare", path,
                              weights_path(path), by_name.begin()->first));
  try {
    g.verify();
  } catch (const IOError&) {
    throw;
  } catch (const Error& e) {
    throw IOError(fmt::format("{}: {}", path, e.what()));
  }
  return g;
}

}  // namespace qs::graph
