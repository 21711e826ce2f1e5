// Graph passes (include/qiusuo/graph/passes.h). Each marks nodes to drop and rewires uses;
// compact() then renumbers what is left.
#include "qiusuo/graph/passes.h"

#include <cmath>
#include <map>

#include "graph/text.h"
#include "kernels/attention_common.h"
#include "ops/op.h"
#include "qiusuo/autograd.h"

namespace qs::graph {

namespace {

bool is_data(const Value& v) { return v.kind == ValueKind::param || v.kind == ValueKind::constant; }

// A dynamic batch dimension counts as 1.
int64_t bytes_of(const Value& v) {
  int64_t n = 1;
  for (int64_t d : v.shape) n *= is_symbol(d) ? 1 : d;
  return n * int64_t(dtype_size(v.dtype));
}

// How many times each value is read (node inputs and graph outputs).
std::vector<int> use_counts(const Graph& g) {
  std::vector<int> uses(g.values.size(), 0);
  for (const Node& n : g.nodes)
    for (int id : n.inputs)
      if (id >= 0) ++uses[size_t(id)];
  for (int id : g.outputs) ++uses[size_t(id)];
  return uses;
}

void replace_uses(Graph& g, int from, int to) {
  for (Node& n : g.nodes)
    for (int& id : n.inputs)
      if (id == from) id = to;
  for (int& id : g.outputs)
    if (id == from) id = to;
}

int add_constant(Graph& g, const std::string& base, const Tensor& t) {
  std::string name = base;
  for (int k = 1;; ++k) {
    bool taken = false;
    for (const Value& v : g.values) taken = taken || v.name == name;
    if (!taken) break;
    name = fmt::format("{}.{}", base, k);
  }
  g.values.push_back(Value{name, ValueKind::constant, t.shape(), t.dtype(), -1});
  g.data.push_back(t);
  return int(g.values.size()) - 1;
}

// Drops the nodes marked in `drop`, every param and constant nothing reads any more, and
// renumbers values (in their old order) and nodes.
void compact(Graph& g, const std::vector<char>& drop) {
  std::vector<Node> nodes;
  for (size_t n = 0; n < g.nodes.size(); ++n)
    if (!drop[n]) nodes.push_back(std::move(g.nodes[n]));
  g.nodes = std::move(nodes);
  std::vector<char> keep(g.values.size(), 0);
  for (int id : g.inputs) keep[size_t(id)] = 1;
  for (int id : g.outputs) keep[size_t(id)] = 1;
  for (const Node& n : g.nodes) {
    for (int id : n.inputs)
      if (id >= 0) keep[size_t(id)] = 1;
    for (int id : n.outputs) keep[size_t(id)] = 1;
  }
  std::vector<int> remap(g.values.size(), -1);
  std::vector<Value> values;
  std::vector<Tensor> data;
  for (size_t id = 0; id < g.values.size(); ++id)
    if (keep[id]) {
      remap[id] = int(values.size());
      values.push_back(std::move(g.values[id]));
      data.push_back(std::move(g.data[id]));
    }
  g.values = std::move(values);
  g.data = std::move(data);
  auto re = [&](int& id) {
    if (id >= 0) id = remap[size_t(id)];
  };
  for (int& id : g.inputs) re(id);
  for (int& id : g.outputs) re(id);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    for (int& id : g.nodes[n].inputs) re(id);
    for (int& id : g.nodes[n].outputs) {
      re(id);
      g.values[size_t(id)].producer = int(n);
    }
  }
}

// The node that produces value `id` when it is an `op` node (any op for nullptr), the value
// is read exactly once and the node is not marked in `drop`; else nullptr. The fusions take
// a producer into its only reader this way.
Node* sole_producer(Graph& g, const std::vector<int>& uses, const std::vector<char>& drop, int id, const char* op) {
  if (id < 0 || g.values[size_t(id)].kind != ValueKind::node || uses[size_t(id)] != 1) return nullptr;
  const int p = g.values[size_t(id)].producer;
  Node& n = g.nodes[size_t(p)];
  return (!op || n.op == op) && !drop[size_t(p)] ? &n : nullptr;
}

// Ops whose result is not a function of their inputs and attributes alone.
bool is_random(const std::string& op) { return op == "dropout"; }

}  // namespace

int fold_batch_norm(Graph& g) {
  std::vector<int> uses = use_counts(g);
  std::vector<char> drop(g.nodes.size(), 0);
  int folded = 0;
  for (size_t b = 0; b < g.nodes.size(); ++b) {
    Node& bn = g.nodes[b];
    if (bn.op != "batch_norm" || bn.attrs.b("training", true)) continue;
    const int x = bn.inputs[0];
    if (x < 0 || g.values[size_t(x)].kind != ValueKind::node || uses[size_t(x)] != 1) continue;
    Node& conv = g.nodes[size_t(g.values[size_t(x)].producer)];
    if (conv.op != "convolution") continue;
    const int w = conv.inputs[1], cb = conv.inputs[2];
    const DType dt = g.values[size_t(x)].dtype;
    if (dt != DType::f32 && dt != DType::f64) continue;
    if (!is_data(g.values[size_t(w)]) || g.values[size_t(w)].dtype != dt) continue;
    if (cb >= 0 && !is_data(g.values[size_t(cb)])) continue;
    bool params_ok = bn.inputs[3] >= 0 && bn.inputs[4] >= 0;
    for (int k = 1; k < 5; ++k)
      params_ok = params_ok && (bn.inputs[size_t(k)] < 0 || is_data(g.values[size_t(bn.inputs[size_t(k)])]));
    if (!params_ok || uses[size_t(bn.outputs[1])] || uses[size_t(bn.outputs[2])]) continue;

    auto vec = [&](int id, double dflt, int64_t C) {
      return id >= 0 ? g.data[size_t(id)].to_vector() : std::vector<double>(size_t(C), dflt);
    };
    const Tensor wt = g.data[size_t(w)];  // a handle: add_constant below grows g.data
    const int64_t O = wt.size(0), per = wt.numel() / O;
    const double eps = bn.attrs.f("eps");
    std::vector<double> gamma = vec(bn.inputs[1], 1.0, O), beta = vec(bn.inputs[2], 0.0, O),
                        mean = vec(bn.inputs[3], 0.0, O), var = vec(bn.inputs[4], 1.0, O), bias = vec(cb, 0.0, O);
    std::vector<double> wv = wt.to_vector(), nb = std::vector<double>(size_t(O));
    for (int64_t o = 0; o < O; ++o) {
      const double s = gamma[size_t(o)] / std::sqrt(var[size_t(o)] + eps);
      for (int64_t i = 0; i < per; ++i) wv[size_t(o * per + i)] *= s;
      nb[size_t(o)] = (bias[size_t(o)] - mean[size_t(o)]) * s + beta[size_t(o)];
    }
    const std::string base = g.values[size_t(w)].name;
    const int nw = add_constant(g, base + ".bn_folded", from_vector(wv, wt.shape(), dt));
    const int nbias = add_constant(g, base + ".bn_folded_bias", from_vector(nb, {O}, dt));
    uses.resize(g.values.size(), 0);
    conv.inputs[1] = nw;
    conv.inputs[2] = nbias;
    const int y = bn.outputs[0];
    if (bn.attrs.b("relu", false)) {
      // The batch norm's place and its output value go to a relu of the convolution.
      bn = Node{"relu", {x}, {}, {y}};
    } else {
      replace_uses(g, y, x);
      drop[b] = 1;
    }
    ++folded;
  }
  if (folded) {
    drop.resize(g.nodes.size(), 0);
    compact(g, drop);
  }
  return folded;
}

int fuse_linear(Graph& g) {
  std::vector<int> uses = use_counts(g);
  std::vector<char> drop(g.nodes.size(), 0);
  int fused = 0;
  auto producer = [&](int id, const char* op) { return sole_producer(g, uses, drop, id, op); };
  // Additions of a bias first (so that their matmul is not taken alone), then bare matmuls.
  for (int sweep = 0; sweep < 2; ++sweep)
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (drop[i]) continue;
    // matmul(x, W) (+ b), W [K, N] and b [N] (or [1, ..., N]) data: linear(x, W^T, b).
    if ((sweep == 0 && n.op == "add") || (sweep == 1 && n.op == "matmul")) {
      Node* mm = &n;
      int bias = -1;
      if (n.op == "add") {
        for (int side : {0, 1}) {
          Node* m = producer(n.inputs[size_t(side)], "matmul");
          const int other = n.inputs[size_t(1 - side)];
          if (m && is_data(g.values[size_t(other)])) mm = m, bias = other;
        }
        if (mm == &n) continue;
      }
      const int x = mm->inputs[0], w = mm->inputs[1];
      const Value &xv = g.values[size_t(x)], &wv = g.values[size_t(w)];
      if (!is_data(wv) || wv.shape.size() != 2 || xv.shape.size() < 2 || xv.dtype != wv.dtype) continue;
      const int64_t N = wv.shape[1];
      Tensor b;
      if (bias >= 0) {
        const Value& bv = g.values[size_t(bias)];
        bool row = bv.dtype == wv.dtype && !bv.shape.empty() && bv.shape.back() == N && bv.shape.size() <= xv.shape.size();
        for (size_t d = 0; d + 1 < bv.shape.size(); ++d) row = row && bv.shape[d] == 1;
        if (!row) continue;
        b = g.data[size_t(bias)].reshape({N});
      }
      const Tensor wt = g.data[size_t(w)].t().contiguous();  // a handle: add_constant grows g.data
      const int nw = add_constant(g, wv.name + ".T", wt);
      const int nb = b.defined() ? add_constant(g, g.values[size_t(bias)].name + ".row", b.contiguous()) : -1;
      uses.resize(g.values.size(), 0);
      const std::vector<int> outs = n.outputs;  // the add's (or matmul's) result keeps its value
      if (&n != mm) drop[size_t(g.values[size_t(mm->outputs[0])].producer)] = 1;
      n = Node{"linear", {x, nw, nb}, {}, outs};
      ++fused;
    }
  }
  if (fused) compact(g, drop);
  return fused;
}

int fuse_activations(Graph& g) {
  std::vector<int> uses = use_counts(g);
  std::vector<char> drop(g.nodes.size(), 0);
  int fused = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    // The producer's row and the activation it takes: linear + exact gelu, convolution + relu.
    const char* row = n.op == "gelu" && (!n.attrs.has("approximate") || n.attrs.s("approximate") == "none") ? "linear"
                      : n.op == "relu"                                                                   ? "convolution"
                                                                                                          : nullptr;
    const int x = n.inputs.empty() ? -1 : n.inputs[0];
    Node* p = row ? sole_producer(g, uses, drop, x, row) : nullptr;
    if (!p || (p->attrs.has("activation") && p->attrs.s("activation") != "none")) continue;
    p->attrs.set("activation", std::string(n.op));
    replace_uses(g, n.outputs[0], x);
    drop[i] = 1;
    ++fused;
  }
  if (fused) compact(g, drop);
  return fused;
}

int fuse_attention(Graph& g) {
  std::vector<int> uses = use_counts(g);
  std::vector<char> drop(g.nodes.size(), 0);
  int fused = 0;
  auto node_of = [&](int id, const char* op) { return sole_producer(g, uses, drop, id, op); };
  auto index_of = [&](const Node* n) { return size_t(n - g.nodes.data()); };
  // A scalar param or constant's value, or NaN.
  auto scalar = [&](int id) {
    if (id < 0 || !is_data(g.values[size_t(id)]) || g.data[size_t(id)].numel() != 1) return std::nan("");
    return g.data[size_t(id)].to_vector()[0];
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& pv = g.nodes[i];  // matmul(P, v)
    if (pv.op != "matmul" || drop[i]) continue;
    Node* sm = node_of(pv.inputs[0], "softmax");
    if (!sm) continue;
    const Value& p = g.values[size_t(sm->outputs[0])];
    if (p.shape.size() != 4 || p.dtype != DType::f32) continue;
    const int64_t dim = sm->attrs.i("dim");
    if (dim != -1 && dim != 3) continue;
    std::vector<Node*> chain = {sm};
    int s = sm->inputs[0];
    bool causal = false;
    if (Node* add = node_of(s, "add")) {  // + a causal mask constant [n, m]: 0 where j <= i + m - n, -inf after
      const int mask = add->inputs[1];
      const Value& mv = g.values[size_t(mask)];
      const int64_t nq = p.shape[2], m = p.shape[3];
      if (!is_data(mv) || mv.shape != Shape{nq, m}) continue;
      const std::vector<double> mk = g.data[size_t(mask)].to_vector();
      bool ok = true;
      for (int64_t r = 0; r < nq && ok; ++r)
        for (int64_t c = 0; c < m && ok; ++c)
          ok = c > r + m - nq ? (std::isinf(mk[size_t(r * m + c)]) && mk[size_t(r * m + c)] < 0) : mk[size_t(r * m + c)] == 0;
      if (!ok) continue;
      causal = true;
      chain.push_back(add);
      s = add->inputs[0];
    }
    double scale = 1.0;
    if (Node* mul = node_of(s, "mul")) {
      scale = scalar(mul->inputs[1]);
      chain.push_back(mul);
      s = mul->inputs[0];
    } else if (Node* div = node_of(s, "div")) {
      scale = 1.0 / scalar(div->inputs[1]);
      chain.push_back(div);
      s = div->inputs[0];
    }
    if (!(scale > 0) || !std::isfinite(scale)) continue;
    Node* qk = node_of(s, "matmul");
    if (!qk) continue;
    Node* kt = node_of(qk->inputs[1], "permute");
    if (!kt || kt->attrs.ints("dims") != std::vector<int64_t>{0, 1, 3, 2}) continue;
    const int q = qk->inputs[0], k = kt->inputs[0], v = pv.inputs[1];
    const Value &qv = g.values[size_t(q)], &kv = g.values[size_t(k)], &vv = g.values[size_t(v)];
    if (qv.shape.size() != 4 || kv.shape.size() != 4 || vv.shape.size() != 4 || kv.dtype != DType::f32 ||
        vv.dtype != DType::f32 || qv.dtype != DType::f32)
      continue;
    // The fused row writes a [b, n, h, d] buffer seen as [b, h, n, d]: a view of its result
    // (rather than a permute first) would not see the layout the matmul wrote.
    bool viewed = false;
    for (const Node& r : g.nodes)
      for (int id : r.inputs) viewed = viewed || (id == pv.outputs[0] && (r.op == "view" || r.op == "expand"));
    if (viewed) continue;
    chain.push_back(qk);
    chain.push_back(kt);
    kernels::AttnConfig c{};
    c.scale = scale;
    c.causal = causal;
    c.rel = kernels::AttnRel::none;
    c.num_buckets = 32;
    c.max_distance = 128;
    const Value out = g.values[size_t(pv.outputs[0])];
    Shape lse_shape = {out.shape[0], out.shape[1], out.shape[2]};
    g.values.push_back(Value{fmt::format("{}.lse", out.name), ValueKind::node, lse_shape, DType::f32, int(i)});
    g.data.emplace_back();
    g.values.push_back(Value{fmt::format("{}.buckets", out.name), ValueKind::node, Shape{0}, DType::f32, int(i)});
    g.data.emplace_back();
    uses.resize(g.values.size(), 0);
    for (Node* n : chain) drop[index_of(n)] = 1;
    pv = Node{"attention", {q, k, v, -1, -1, -1}, kernels::attn_attrs(c),
              {pv.outputs[0], int(g.values.size()) - 2, int(g.values.size()) - 1}};
    ++fused;
  }
  if (fused) compact(g, drop);
  return fused;
}

int fold_constants(Graph& g) {
  std::vector<char> drop(g.nodes.size(), 0);
  int folded = 0;
  NoGrad ng;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    Node& node = g.nodes[n];
    if (is_random(node.op) || node.inputs.empty()) continue;
    bool all_data = true;
    int64_t in_bytes = 0, out_bytes = 0;
    for (int id : node.inputs) {
      if (id < 0) continue;
      all_data = all_data && is_data(g.values[size_t(id)]);
      in_bytes += bytes_of(g.values[size_t(id)]);
    }
    if (!all_data) continue;
    bool batched = false;
    for (int id : node.outputs) {
      out_bytes += bytes_of(g.values[size_t(id)]);
      batched = batched || has_symbols(g.values[size_t(id)].shape);
    }
    if (batched) continue;  // sized by the batch or sequence: not data
    if (out_bytes > 4 * in_bytes && out_bytes > (64 << 10)) continue;  // an expand: keep it lazy
    const ops::OpDef* def = ops::find_op(node.op);
    std::vector<Tensor> in;
    for (int id : node.inputs) in.push_back(id >= 0 ? g.data[size_t(id)] : Tensor());
    std::vector<Tensor> out = ops::dispatch(def->kind, in, node.attrs);
    for (size_t k = 0; k < out.size(); ++k) {
      Value& v = g.values[size_t(node.outputs[k])];
      v.kind = ValueKind::constant;
      v.producer = -1;
      g.data[size_t(node.outputs[k])] = out[k].contiguous();
    }
    drop[n] = 1;
    ++folded;
  }
  if (folded) compact(g, drop);
  return folded;
}

int eliminate_common_subexpressions(Graph& g) {
  std::map<std::string, size_t> seen;
  std::vector<char> drop(g.nodes.size(), 0);
  int merged = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    const Node& node = g.nodes[n];
    if (is_random(node.op)) continue;
    std::string key = fmt::format("{}(", node.op);
    for (int id : node.inputs) key += fmt::format("{},", id);
    key += ")";
    for (auto& [k, v] : node.attrs.items()) key += fmt::format("{}={};", k, attr_text(v));
    auto [it, fresh] = seen.emplace(key, n);
    if (fresh) continue;
    const Node& first = g.nodes[it->second];
    for (size_t k = 0; k < node.outputs.size(); ++k) replace_uses(g, node.outputs[k], first.outputs[k]);
    drop[n] = 1;
    ++merged;
  }
  if (merged) compact(g, drop);
  return merged;
}

int eliminate_dead_code(Graph& g) {
  std::vector<char> live(g.values.size(), 0), drop(g.nodes.size(), 0);
  for (int id : g.outputs) live[size_t(id)] = 1;
  int removed = 0;
  for (size_t n = g.nodes.size(); n-- > 0;) {
    bool any = false;
    for (int id : g.nodes[n].outputs) any = any || live[size_t(id)];
    if (!any) {
      drop[n] = 1;
      ++removed;
      continue;
    }
    for (int id : g.nodes[n].inputs)
      if (id >= 0) live[size_t(id)] = 1;
  }
  compact(g, drop);  // also drops params and constants nothing reads any more
  return removed;
}

int64_t peak_intermediate_bytes(const Graph& g) {
  const std::vector<int> last = last_readers(g);
  int64_t live = 0, peak = 0;
  std::vector<int64_t> held(g.values.size(), 0);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    const Node& node = g.nodes[n];
    const ops::OpDef* def = ops::find_op(node.op);
    const bool view = def && (def->flags & ops::kView);
    for (int id : node.outputs) {
      held[size_t(id)] = view ? 0 : bytes_of(g.values[size_t(id)]);
      live += held[size_t(id)];
    }
    peak = std::max(peak, live);
    // A view aliases its input: when it is that input's last reader, the buffer lives on
    // as the view's.
    if (view && node.inputs[0] >= 0 && last[size_t(node.inputs[0])] == int(n)) {
      held[size_t(node.outputs[0])] = held[size_t(node.inputs[0])];
      held[size_t(node.inputs[0])] = 0;
    }
    for (int id : node.inputs)
      if (id >= 0 && g.values[size_t(id)].kind == ValueKind::node && last[size_t(id)] == int(n)) live -= held[size_t(id)];
    for (int id : node.outputs)
      if (last[size_t(id)] < 0) live -= held[size_t(id)];
  }
  return peak;
}

std::string PassReport::to_string() const {
  return fmt::format(
      "{} -> {} nodes ({} batch norms folded into convolutions, {} constant nodes folded, {} linears fused, {} "
      "activations fused, {} attention patterns fused, {} common subexpressions merged, {} dead nodes removed); data "
      "{:.1f} -> {:.1f} kB; peak intermediates {:.1f} -> {:.1f} kB",
      nodes_before, nodes_after, batch_norms_folded, constants_folded, linears_fused, activations_fused,
      attentions_fused, subexpressions_merged, nodes_removed,
      double(data_bytes_before) / 1024, double(data_bytes_after) / 1024, double(peak_bytes_before) / 1024,
      double(peak_bytes_after) / 1024);
}

PassReport optimize(Graph& g) {
  g.verify();
  PassReport r;
  r.nodes_before = int64_t(g.nodes.size());
  r.data_bytes_before = g.param_bytes();
  r.peak_bytes_before = peak_intermediate_bytes(g);
  for (;;) {
    int bn = fold_batch_norm(g), cf = fold_constants(g), lin = fuse_linear(g), act = fuse_activations(g),
        at = fuse_attention(g), cse = eliminate_common_subexpressions(g), dce = eliminate_dead_code(g);
    r.batch_norms_folded += bn;
    r.linears_fused += lin;
    r.activations_fused += act;
    r.attentions_fused += at;
    r.constants_folded += cf;
    r.subexpressions_merged += cse;
    r.nodes_removed += dce;
    if (bn + cf + lin + act + at + cse + dce == 0) break;
  }
  g.verify();
  r.nodes_after = int64_t(g.nodes.size());
  r.data_bytes_after = g.param_bytes();
  r.peak_bytes_after = peak_intermediate_bytes(g);
  return r;
}

}  // namespace qs::graph
