// Tracing: a dispatch hook records the top-level primitives of one forward; values are
// told apart by tensor identity (every recorded call keeps its tensors alive, so no
// address is reused while tracing).
#include <map>

#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/nn/module.h"

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

}  // namespace

Graph trace(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
            const std::vector<Tensor>& example_inputs, const std::vector<std::pair<std::string, Tensor>>& named) {
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

Graph trace(nn::Module& model, const Tensor& example_input) {
  nn::EvalScope eval(model);
  std::vector<std::pair<std::string, Tensor>> named = model.named_parameters();
  for (auto& nb : model.named_buffers()) named.push_back(nb);
  return trace([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{model.forward(in[0])}; },
               {example_input}, named);
}

}  // namespace qs::graph
