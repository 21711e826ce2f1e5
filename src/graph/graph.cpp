// The graph's verifier and its text form.
#include <fmt/format.h>

#include <algorithm>

#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"
#include "graph/text.h"

namespace qs::graph {

const char* value_kind_name(ValueKind k) {
  switch (k) {
    case ValueKind::input: return "input";
    case ValueKind::param: return "param";
    case ValueKind::constant: return "const";
    case ValueKind::node: return "node";
  }
  return "?";
}

bool has_symbols(const Shape& s) {
  for (int64_t d : s)
    if (is_symbol(d)) return true;
  return false;
}

Shape with_sizes(Shape s, const Sizes& z) {
  for (int64_t& d : s) d = z(d);
  return s;
}

Attrs with_sizes(const Attrs& a, const Sizes& z) {
  Attrs out;
  for (auto& [k, v] : a.items()) {
    if (auto* i = std::get_if<int64_t>(&v))
      out.set(k.c_str(), z(*i));
    else if (auto* l = std::get_if<std::vector<int64_t>>(&v))
      out.set(k.c_str(), with_sizes(*l, z));
    else
      std::visit([&out, name = k.c_str()](auto&& x) { out.set(name, x); }, v);  // clang 14 cannot capture bindings
  }
  return out;
}

namespace {

// The sizes verify() gives a dynamic graph's stand-ins: a batch of 3, a sequence of 5 (or
// max_seq when shorter).
Sizes verify_sizes(const Graph& g) { return {3, g.max_seq > 0 ? std::min<int64_t>(5, g.max_seq) : 5}; }

std::string int_text(int64_t i) { return i == kBatch ? "N" : i == kSeq ? "S" : std::to_string(i); }

std::string dims_text(const Shape& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + int_text(s[i]);
  return t + "]";
}

std::string typed(const Value& v) { return fmt::format("{}{}", dtype_name(v.dtype), dims_text(v.shape)); }

// The most elements a value may declare: a file cannot make verify() or run() size
// anything by a lying shape (2^48 elements is far beyond any memory).
constexpr int64_t kMaxElements = int64_t(1) << 48;

// A zero stand-in of the value's shape that holds one element whatever the shape (stride 0
// in every dim): shape rules read shapes (and a few check integer inputs: zeros are valid
// indices), never the values of a real run.
Tensor stand_in(const Value& v, const Sizes& z) {
  const Shape shape = with_sizes(v.shape, z);
  return zeros(Shape(shape.size(), 1), v.dtype).expand(shape);
}


}  // namespace

std::string attr_text(const AttrValue& v) {
  if (auto* i = std::get_if<int64_t>(&v)) return int_text(*i);
  if (auto* d = std::get_if<double>(&v)) {
    std::string s = fmt::format("{}", *d);
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // "n": nan, inf
    return s;
  }
  if (auto* l = std::get_if<std::vector<int64_t>>(&v)) return dims_text(*l);
  return "\"" + std::get<std::string>(v) + "\"";
}

void Graph::check_replayable() const {
  if (value_dependent.empty()) return;
  std::string where;
  for (const std::string& w : value_dependent) where += (where.empty() ? "" : "; ") + w;
  QS_FAIL("graph: the traced forward chose its path by tensor values ({}): the graph holds the example's choice and "
          "would replay it for every input, so it cannot be saved, exported or run",
          where);
}

void Graph::verify() const {
  const int nv = int(values.size());
  QS_CHECK(data.size() == values.size(), "graph: {} values but {} data slots", values.size(), data.size());
  QS_CHECK(max_seq >= 0, "graph: max_seq {} is negative", max_seq);
  const Sizes vz = verify_sizes(*this);
  std::vector<char> ready(values.size(), 0);
  auto check_id = [&](int id, const std::string& where) {
    QS_CHECK(id >= 0 && id < nv, "graph: {} refers to value {}, but the graph has values 0..{}", where, id, nv - 1);
  };
  for (int id : inputs) {
    check_id(id, "the input list");
    QS_CHECK(values[size_t(id)].kind == ValueKind::input, "graph: value {} ('{}') is listed as an input but is a {}",
             id, values[size_t(id)].name, value_kind_name(values[size_t(id)].kind));
    QS_CHECK(!ready[size_t(id)], "graph: value {} ('{}') is listed twice as an input", id, values[size_t(id)].name);
    ready[size_t(id)] = 1;
  }
  for (int id = 0; id < nv; ++id) {
    const Value& v = values[size_t(id)];
    int64_t n = 1;
    for (int64_t d : v.shape) {
      QS_CHECK(d >= 0 || is_symbol(d), "graph: value {} ('{}') has a negative size in {}", id, v.name, typed(v));
      const int64_t size = is_symbol(d) ? 1 : d;
      QS_CHECK(size == 0 || n <= kMaxElements / size, "graph: value {} ('{}') declares {}: more than 2^48 elements",
               id, v.name, typed(v));
      n *= size;
    }
  }
  for (int id = 0; id < nv; ++id) {
    const Value& v = values[size_t(id)];
    if (v.kind == ValueKind::input)
      QS_CHECK(ready[size_t(id)], "graph: value {} ('{}') is an input missing from the input list", id, v.name);
    if (v.kind != ValueKind::param && v.kind != ValueKind::constant) continue;
    const Tensor& t = data[size_t(id)];
    QS_CHECK(t.defined(), "graph: {} '{}' has no data", value_kind_name(v.kind), v.name);
    QS_CHECK(!has_symbols(v.shape), "graph: {} '{}' is declared {}, but data cannot follow the batch size or sequence length",
             value_kind_name(v.kind), v.name, typed(v));
    QS_CHECK(t.shape() == v.shape && t.dtype() == v.dtype, "graph: {} '{}' is declared {} but its data is {}{}",
             value_kind_name(v.kind), v.name, typed(v), dtype_name(t.dtype()), shape_str(t.shape()));
    ready[size_t(id)] = 1;
  }
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Node& node = nodes[n];
    const ops::OpDef* def = ops::find_op(node.op);
    QS_CHECK(def != nullptr, "graph: node {} has unknown op '{}'", n, node.op);
    const std::string where = fmt::format("node {} ({})", n, node.op);
    QS_CHECK(def->nin < 0 || int(node.inputs.size()) == def->nin, "graph: {} has {} inputs; the op takes {}", where,
             node.inputs.size(), def->nin);
    QS_CHECK(int(node.outputs.size()) == def->nout, "graph: {} has {} outputs; the op gives {}", where,
             node.outputs.size(), def->nout);
    ops::OpCall call{def->kind, {}, with_sizes(node.attrs, vz), {}};
    for (int id : node.inputs) {
      if (id == -1) {
        call.in.emplace_back();
        continue;
      }
      check_id(id, where);
      QS_CHECK(ready[size_t(id)], "graph: {} reads value {} ('{}') before it is produced (a cycle, or nodes out of order)",
               where, id, values[size_t(id)].name);
      call.in.push_back(stand_in(values[size_t(id)], vz));
    }
    for (int id : node.outputs) {
      check_id(id, where);
      const Value& v = values[size_t(id)];
      QS_CHECK(v.kind == ValueKind::node && v.producer == int(n), "graph: {} writes value {} ('{}'), which is {}", where,
               id, v.name,
               v.kind != ValueKind::node ? fmt::format("a {}", value_kind_name(v.kind))
                                         : fmt::format("marked as produced by node {}", v.producer));
      QS_CHECK(!ready[size_t(id)], "graph: {} writes value {} ('{}'), which is already produced", where, id, v.name);
    }
    std::vector<std::pair<Shape, DType>> got;
    try {
      NoGrad ng;
      if (def->flags & ops::kView) {
        Tensor out = def->impl->view(call);
        got.emplace_back(out.shape(), out.dtype());
      } else {
        for (auto& s : ops::run_meta(call)) got.emplace_back(s.shape, s.dtype);
      }
    } catch (const Error& e) {
      throw Error(fmt::format("graph: {} is invalid for its inputs: {}", where, e.what()));
    }
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      const Value& v = values[size_t(node.outputs[k])];
      QS_CHECK(k < got.size() && got[k].first == with_sizes(v.shape, vz) && got[k].second == v.dtype,
               "graph: {} declares output {} ('{}') as {}, but its inputs give {}{}", where, k, v.name, typed(v),
               k < got.size() ? dtype_name(got[k].second) : "?", k < got.size() ? shape_str(got[k].first) : "");
      ready[size_t(node.outputs[k])] = 1;
    }
  }
  for (int id = 0; id < nv; ++id)
    if (values[size_t(id)].kind == ValueKind::node)
      QS_CHECK(ready[size_t(id)], "graph: value {} ('{}') is a node output that no node produces", id,
               values[size_t(id)].name);
  QS_CHECK(!outputs.empty(), "graph: no outputs");
  for (int id : outputs) check_id(id, "the output list");
}

std::string Graph::to_text() const {
  std::string s = fmt::format("qsgraph {}\n", kFormatVersion);
  if (max_seq > 0) s += fmt::format("max_seq {}\n", max_seq);
  for (int id : inputs) s += fmt::format("input {}: {}\n", values[size_t(id)].name, typed(values[size_t(id)]));
  for (const Value& v : values)
    if (v.kind == ValueKind::param || v.kind == ValueKind::constant)
      s += fmt::format("{} {}: {}\n", value_kind_name(v.kind), v.name, typed(v));
  auto name = [&](int id) { return id < 0 ? std::string("_") : values[size_t(id)].name; };
  for (const Node& n : nodes) {
    std::string outs, ins, attrs;
    for (int id : n.outputs) outs += fmt::format("{}{}: {}", outs.empty() ? "" : ", ", name(id), typed(values[size_t(id)]));
    for (int id : n.inputs) ins += fmt::format("{}{}", ins.empty() ? "" : ", ", name(id));
    for (auto& [k, v] : n.attrs.items()) attrs += fmt::format("{}{}={}", attrs.empty() ? "" : ", ", k, attr_text(v));
    s += fmt::format("{} = {}({}){}\n", outs, n.op, ins, attrs.empty() ? "" : " {" + attrs + "}");
  }
  for (int id : outputs) s += fmt::format("output {}\n", name(id));
  return s;
}

int64_t Graph::param_bytes() const {
  int64_t b = 0;
  for (const Tensor& t : data)
    if (t.defined()) b += t.numel() * int64_t(t.element_size());
  return b;
}

int64_t Graph::flops() const {
  auto numel = [&](int id) {
    int64_t n = 1;
    for (int64_t d : values[size_t(id)].shape) n *= is_symbol(d) ? 1 : d;
    return n;
  };
  int64_t f = 0;
  for (const Node& n : nodes) {
    if (n.op == "convolution" || n.op == "qconv") {
      // Each output element: C / groups x kernel multiply-adds, C / groups x kernel = w.numel() / O.
      const Shape& w = values[size_t(n.inputs[1])].shape;
      f += 2 * numel(n.outputs[0]) * (numel(n.inputs[1]) / std::max<int64_t>(w[0], 1));
    } else if (n.op == "linear" || n.op == "matmul" || n.op == "qlinear" || n.op == "dynamic_linear" ||
               n.op == "woq_linear") {
      const Shape& x = values[size_t(n.inputs[0])].shape;
      const int64_t k = x.empty() ? 1 : is_symbol(x.back()) ? 1 : x.back();
      f += 2 * numel(n.outputs[0]) * k;
    }
  }
  return f;
}

}  // namespace qs::graph
