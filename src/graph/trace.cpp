// Tracing: a dispatch hook records the top-level primitives of one forward; values are
// told apart by tensor identity (every recorded call keeps its tensors alive, so no
// address is reused while tracing).
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
  int depth = 0;
  void before(ops::OpKind, std::vector<Tensor>&, Attrs&) override { ++depth; }
  void after(const ops::OpCall& c) override {
    if (--depth == 0) calls.push_back(c);
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
  QS_CHECK(!results.empty(), "trace: the traced function returned no tensors");
  for (size_t i = 0; i < results.size(); ++i) {
    QS_CHECK(results[i].defined(), "trace: result {} is undefined", i);
    b.g.outputs.push_back(b.use(results[i]));
  }
  return std::move(b.g);
}

// One size of `a` (traced at batch b1) against the same of `b` (at b2): kept, or kBatch
// where it follows the batch; an error naming `what` otherwise.
int64_t merge_size(int64_t a, int64_t b, int64_t b1, int64_t b2, const std::function<std::string()>& what) {
  if (a == b) return a;
  if (a == b1 && b == b2) return kBatch;
  throw Error(fmt::format("trace: {} is {} at batch {} and {} at batch {}: it changes with the batch size, but is not "
                          "the batch size itself, so the batch cannot be dynamic",
                          what(), a, b1, b, b2));
}

// The graph traced at batch b1 with every size and integer attribute that is b2 in the
// graph traced at batch b2 made kBatch.
Graph merge_batch(Graph g, const Graph& h, int64_t b1, int64_t b2) {
  auto differ = [&](const std::string& what) {
    return Error(fmt::format("trace: the graph at batch {} differs from the graph at batch {} ({}): the forward takes "
                             "another path for another batch size, so the batch cannot be dynamic",
                             b1, b2, what));
  };
  if (g.nodes.size() != h.nodes.size() || g.values.size() != h.values.size()) throw differ("in size");
  for (size_t id = 0; id < g.values.size(); ++id) {
    Value& v = g.values[id];
    const Value& w = h.values[id];
    if (v.name != w.name || v.kind != w.kind || v.dtype != w.dtype || v.shape.size() != w.shape.size())
      throw differ(fmt::format("value {} is '{}' and '{}'", id, v.name, w.name));
    for (size_t d = 0; d < v.shape.size(); ++d)
      v.shape[d] = merge_size(v.shape[d], w.shape[d], b1, b2, [&] { return fmt::format("dim {} of {} '{}'", d, value_kind_name(v.kind), v.name); });
    if ((v.kind == ValueKind::param || v.kind == ValueKind::constant) && has_batch(v.shape))
      throw Error(fmt::format("trace: {} '{}' has shape {} at batch {} and {} at batch {}: a tensor the forward makes "
                              "from the batch size cannot be data of a graph with a dynamic batch",
                              value_kind_name(v.kind), v.name, shape_str(g.data[id].shape()), b1,
                              shape_str(h.data[id].shape()), b2));
  }
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    Node& x = g.nodes[n];
    const Node& y = h.nodes[n];
    if (x.op != y.op || x.inputs != y.inputs || x.outputs != y.outputs || x.attrs.items().size() != y.attrs.items().size())
      throw differ(fmt::format("node {} is {} and {}", n, x.op, y.op));
    Attrs merged;
    for (size_t k = 0; k < x.attrs.items().size(); ++k) {
      const auto& [name, a] = x.attrs.items()[k];
      const auto& [name2, b] = y.attrs.items()[k];
      auto what = [&] { return fmt::format("attribute {} of node {} ({})", name, n, x.op); };
      if (name != name2 || a.index() != b.index()) throw differ(what());
      if (auto* i = std::get_if<int64_t>(&a)) {
        merged.set(name.c_str(), merge_size(*i, std::get<int64_t>(b), b1, b2, what));
      } else if (auto* l = std::get_if<std::vector<int64_t>>(&a)) {
        const auto& m = std::get<std::vector<int64_t>>(b);
        if (l->size() != m.size()) throw differ(what());
        std::vector<int64_t> v(l->size());
        for (size_t i = 0; i < v.size(); ++i) v[i] = merge_size((*l)[i], m[i], b1, b2, what);
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

}  // namespace

Graph trace(const Fn& fn, const std::vector<Tensor>& example_inputs,
            const std::vector<std::pair<std::string, Tensor>>& named, const TraceOptions& opts) {
  if (!opts.dynamic_batch) return trace_once(fn, example_inputs, named);
  QS_CHECK(!example_inputs.empty(), "trace: a dynamic batch needs inputs");
  {
    // One untraced forward first: modules that fill caches on their first call (RoPE's
    // tables, cast once to f32) then take the same path in both traces.
    NoGrad ng;
    fn(example_inputs);
  }
  Graph g = trace_once(fn, example_inputs, named);
  const int64_t b1 = example_inputs[0].dim() > 0 ? example_inputs[0].size(0) : -1;
  std::vector<Tensor> wider;
  for (size_t i = 0; i < example_inputs.size(); ++i) {
    const Tensor& x = example_inputs[i];
    QS_CHECK(x.dim() > 0 && x.size(0) == b1 && b1 > 0,
             "trace: a dynamic batch needs dim 0 of every input to be the same batch size; input {} is {}", i,
             shape_str(x.shape()));
    wider.push_back(cat({x, x.narrow(0, 0, 1)}, 0));  // one more row: the example's first again
  }
  return merge_batch(std::move(g), trace_once(fn, wider, named), b1, b1 + 1);
}

Graph trace(nn::Module& model, const Tensor& example_input, const TraceOptions& opts) {
  nn::EvalScope eval(model);
  std::vector<std::pair<std::string, Tensor>> named = model.named_parameters();
  for (auto& nb : model.named_buffers()) named.push_back(nb);
  return trace([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{model.forward(in[0])}; },
               {example_input}, named, opts);
}

}  // namespace qs::graph
