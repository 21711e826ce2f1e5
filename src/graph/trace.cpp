// Tracing: a dispatch hook records the top-level primitives of one forward; values are
// told apart by tensor identity (every recorded call keeps its tensors alive, so no
// address is reused while tracing).
#include <algorithm>
#include <map>

#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/nn/module.h"
#include "qiusuo/ops.h"

namespace qs::graph {

namespace {

// The top-level ops of one forward (ops that kernels dispatch internally are not part of
// it). A hook pushed first (autocast) may dispatch casts in its before(): those arrive
// here at depth 0, ahead of the op they feed, as in the eager run.
struct Recorder : ops::DispatchHook {
  std::vector<ops::OpCall> calls;
  std::vector<std::string> choices;  // value_dependent() notes
  int depth = 0;
  void before(ops::OpKind, std::vector<Tensor>&, Attrs&) override { ++depth; }
  void after(const ops::OpCall& c) override {
    if (--depth == 0) calls.push_back(c);
  }
  void value_dependent(const std::string& what) override {
    if (std::find(choices.begin(), choices.end(), what) == choices.end()) choices.push_back(what);
  }
};

struct HookScope {
  Recorder& r;
  explicit HookScope(Recorder& rec) : r(rec) { ops::push_dispatch_hook(&r); }
  ~HookScope() { ops::pop_dispatch_hook(&r); }
};

class Builder {
 public:
  explicit Builder(const std::vector<std::pair<std::string, Tensor>>& named) {
    for (auto& [name, t] : named)
      if (t.defined()) named_.emplace(t.impl(), name);
  }

  int add(ValueKind kind, const std::string& name, const Tensor& t, int producer = -1) {
    int id = int(g.values.size());
    g.values.push_back(Value{name, kind, t.shape(), t.dtype(), producer});
    g.data.push_back(kind == ValueKind::param      ? t.detach()
                     : kind == ValueKind::constant ? t.detach().contiguous().clone()
                                                   : Tensor());
    ids_[t.impl()] = id;
    return id;
  }

  // The value a recorded call reads: known, or a param or constant seen the first time.
  int use(const Tensor& t) {
    if (!t.defined()) return -1;
    auto it = ids_.find(t.impl());
    if (it != ids_.end()) return it->second;
    auto nt = named_.find(t.impl());
    if (nt != named_.end()) return add(ValueKind::param, nt->second, t);
    return add(ValueKind::constant, fmt::format("const{}", nconst_++), t);
  }

  int node_output(const Tensor& t, int node) { return add(ValueKind::node, fmt::format("v{}", nnode_++), t, node); }

  Graph g;

 private:
  std::map<const TensorImpl*, std::string> named_;
  std::map<const TensorImpl*, int> ids_;
  int nconst_ = 0, nnode_ = 0;
};

using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

Graph trace_once(const Fn& fn, const std::vector<Tensor>& example_inputs,
                 const std::vector<std::pair<std::string, Tensor>>& named) {
  Builder b(named);
  for (size_t i = 0; i < example_inputs.size(); ++i) {
    const Tensor& x = example_inputs[i];
    QS_CHECK(x.defined(), "trace: example input {} is undefined", i);
    for (size_t j = 0; j < i; ++j)
      QS_CHECK(example_inputs[j].impl() != x.impl(), "trace: example inputs {} and {} are the same tensor", j, i);
    b.g.inputs.push_back(b.add(ValueKind::input, fmt::format("x{}", i), x));
  }
  Recorder rec;
  std::vector<Tensor> results;
  {
    NoGrad ng;
    HookScope hook(rec);
    results = fn(example_inputs);
  }
  for (const ops::OpCall& c : rec.calls) {
    Node n{ops::op_def(c.op).name, {}, c.attrs, {}};
    for (const Tensor& t : c.in) n.inputs.push_back(b.use(t));
    int index = int(b.g.nodes.size());
    for (const Tensor& t : c.out) n.outputs.push_back(b.node_output(t, index));
    b.g.nodes.push_back(std::move(n));
  }
  b.g.value_dependent = rec.choices;
  QS_CHECK(!results.empty(), "trace: the traced function returned no tensors");
  for (size_t i = 0; i < results.size(); ++i) {
    QS_CHECK(results[i].defined(), "trace: result {} is undefined", i);
    b.g.outputs.push_back(b.use(results[i]));
  }
  return std::move(b.g);
}

const char* symbol_name(int64_t symbol) { return symbol == kBatch ? "batch size" : "sequence length"; }
const char* symbol_at(int64_t symbol) { return symbol == kBatch ? "batch" : "length"; }  // "at batch 4"

// One size of `a` (the base trace, where the symbols were `base`) against the same in `b`,
// traced with `symbol`'s size changed from s1 to s2: kept, or `symbol` where it follows it
// (a symbol merged before stays when b has its base size); an error naming `what` otherwise.
int64_t merge_size(int64_t a, int64_t b, int64_t s1, int64_t s2, int64_t symbol, const Sizes& base,
                   const std::function<std::string()>& what) {
  if (a == b) return a;
  if (is_symbol(a) && b == base(a)) return a;
  if (a == s1 && b == s2) return symbol;
  throw Error(fmt::format("trace: {} is {} at {} {} and {} at {} {}: it changes with the {}, but is not the {} itself, "
                          "so the {} cannot be dynamic",
                          what(), a, symbol_at(symbol), s1, b, symbol_at(symbol), s2, symbol_name(symbol),
                          symbol_name(symbol), symbol_name(symbol)));
}

// The graph g with every size and integer attribute that is s2 in h (traced with the
// symbol's size s2 instead of s1) made `symbol`.
Graph merge_symbol(Graph g, const Graph& h, int64_t s1, int64_t s2, int64_t symbol, const Sizes& base) {
  const char *what_sym = symbol_name(symbol), *at = symbol_at(symbol);
  auto differ = [&](const std::string& what) {
    return Error(fmt::format("trace: the graph at {} {} differs from the graph at {} {} ({}): the forward takes "
                             "another path for another {}, so the {} cannot be dynamic",
                             at, s1, at, s2, what, what_sym, what_sym));
  };
  if (g.nodes.size() != h.nodes.size() || g.values.size() != h.values.size()) throw differ("in size");
  for (size_t id = 0; id < g.values.size(); ++id) {
    Value& v = g.values[id];
    const Value& w = h.values[id];
    if (v.name != w.name || v.kind != w.kind || v.dtype != w.dtype || v.shape.size() != w.shape.size())
      throw differ(fmt::format("value {} is '{}' and '{}'", id, v.name, w.name));
    for (size_t d = 0; d < v.shape.size(); ++d)
      v.shape[d] = merge_size(v.shape[d], w.shape[d], s1, s2, symbol, base,
                              [&] { return fmt::format("dim {} of {} '{}'", d, value_kind_name(v.kind), v.name); });
    if ((v.kind == ValueKind::param || v.kind == ValueKind::constant) && has_symbols(v.shape))
      throw Error(fmt::format("trace: {} '{}' has shape {} at {} {} and {} at {} {}: a tensor the forward makes "
                              "from the {} cannot be data of a graph with a dynamic {}",
                              value_kind_name(v.kind), v.name, shape_str(g.data[id].shape()), at, s1,
                              shape_str(h.data[id].shape()), at, s2, what_sym, what_sym));
  }
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    Node& x = g.nodes[n];
    const Node& y = h.nodes[n];
    if (x.op != y.op || x.inputs != y.inputs || x.outputs != y.outputs || x.attrs.items().size() != y.attrs.items().size())
      throw differ(fmt::format("node {} is {} and {}", n, x.op, y.op));
    Attrs merged;
    for (size_t k = 0; k < x.attrs.items().size(); ++k) {
      // Not structured bindings: clang 14 (the fuzz build) cannot capture those in the lambdas below.
      const std::string& name = x.attrs.items()[k].first;
      const AttrValue& a = x.attrs.items()[k].second;
      const std::string& name2 = y.attrs.items()[k].first;
      const AttrValue& b = y.attrs.items()[k].second;
      auto what = [&] { return fmt::format("attribute {} of node {} ({})", name, n, x.op); };
      if (name != name2 || a.index() != b.index()) throw differ(what());
      if (auto* i = std::get_if<int64_t>(&a)) {
        merged.set(name.c_str(), merge_size(*i, std::get<int64_t>(b), s1, s2, symbol, base, what));
      } else if (auto* l = std::get_if<std::vector<int64_t>>(&a)) {
        const auto& m = std::get<std::vector<int64_t>>(b);
        if (l->size() != m.size()) throw differ(what());
        std::vector<int64_t> v(l->size());
        for (size_t i = 0; i < v.size(); ++i) v[i] = merge_size((*l)[i], m[i], s1, s2, symbol, base, what);
        merged.set(name.c_str(), v);
      } else {
        if (a != b) throw differ(what());
        std::visit([&](auto&& val) { merged.set(name.c_str(), val); }, a);
      }
    }
    x.attrs = merged;
  }
  if (g.outputs != h.outputs) throw differ("in its outputs");
  return g;
}

// Each input with one more entry along `dim`: its first again.
std::vector<Tensor> grown(const std::vector<Tensor>& xs, int64_t dim, int64_t extra) {
  std::vector<Tensor> out;
  for (const Tensor& x : xs) {
    std::vector<Tensor> parts = {x};
    for (int64_t left = extra; left > 0;) {
      const int64_t k = std::min(left, x.size(dim));
      parts.push_back(x.narrow(dim, 0, k));
      left -= k;
    }
    out.push_back(cat(parts, dim));
  }
  return out;
}

}  // namespace

Graph trace(const Fn& fn, const std::vector<Tensor>& example_inputs,
            const std::vector<std::pair<std::string, Tensor>>& named, const TraceOptions& opts) {
  if (!opts.dynamic_batch && !opts.dynamic_seq) return trace_once(fn, example_inputs, named);
  QS_CHECK(!example_inputs.empty(), "trace: a dynamic batch or sequence length needs inputs");
  Sizes base;
  auto common = [&](int64_t dim, const char* what) {
    const Tensor& x0 = example_inputs[0];
    const int64_t n = dim < x0.dim() ? x0.size(dim) : -1;
    for (size_t i = 0; i < example_inputs.size(); ++i) {
      const Tensor& x = example_inputs[i];
      QS_CHECK(dim < x.dim() && x.size(dim) == n && n > 0,
               "trace: a dynamic {} needs dim {} of every input to be the same {}; input {} is {}", what, dim, what, i,
               shape_str(x.shape()));
    }
    return n;
  };
  if (opts.dynamic_batch) base.batch = common(0, "batch size");
  if (opts.dynamic_seq) {
    QS_CHECK(opts.seq_dim > 0, "trace: the sequence dimension must come after the batch (seq_dim {})", opts.seq_dim);
    base.seq = common(opts.seq_dim, "sequence length");
    QS_CHECK(base.seq < opts.max_seq,
             "trace: a dynamic sequence length is traced at the example's length and one more, so the example ({}) "
             "must be shorter than max_seq ({})",
             base.seq, opts.max_seq);
  }
  {
    // One untraced forward first, so that modules that fill caches on their first call
    // (RoPE's tables, cast once to f32) take the same path in every trace: at max_seq when
    // the sequence is dynamic, so that tables cached by length serve every length up to it.
    NoGrad ng;
    fn(opts.dynamic_seq ? grown(example_inputs, opts.seq_dim, opts.max_seq - base.seq) : example_inputs);
  }
  Graph g = trace_once(fn, example_inputs, named);
  if (opts.dynamic_batch)
    g = merge_symbol(std::move(g), trace_once(fn, grown(example_inputs, 0, 1), named), base.batch, base.batch + 1,
                     kBatch, base);
  if (opts.dynamic_seq) {
    g = merge_symbol(std::move(g), trace_once(fn, grown(example_inputs, opts.seq_dim, 1), named), base.seq,
                     base.seq + 1, kSeq, base);
    g.max_seq = opts.max_seq;
  }
  return g;
}

Graph trace(nn::Module& model, const Tensor& example_input, const TraceOptions& opts) {
  nn::EvalScope eval(model);
  std::vector<std::pair<std::string, Tensor>> named = model.named_parameters();
  for (auto& nb : model.named_buffers()) named.push_back(nb);
  return trace([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{model.forward(in[0])}; },
               {example_input}, named, opts);
}

}  // namespace qs::graph
