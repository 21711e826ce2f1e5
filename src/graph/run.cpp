// The graph interpreter: each node through the dispatch point, each intermediate released
// after its last use.
#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"

namespace qs::graph {

std::vector<int> last_readers(const Graph& g) {
  std::vector<int> last(g.values.size(), -1);
  for (size_t n = 0; n < g.nodes.size(); ++n)
    for (int id : g.nodes[n].inputs)
      if (id >= 0) last[size_t(id)] = int(n);
  for (int id : g.outputs) last[size_t(id)] = int(g.nodes.size());
  return last;
}

namespace {
// "batch 7 from the first input", "batch 2, length 9 from the inputs".
std::string bound_text(const Sizes& z) {
  std::string s;
  if (z.batch >= 0) s += fmt::format("batch {}", z.batch);
  if (z.seq >= 0) s += fmt::format("{}length {}", s.empty() ? "" : ", ", z.seq);
  return s + (z.batch >= 0 && z.seq >= 0 ? " from the inputs" : " from the first input");
}
}  // namespace

Sizes bind_inputs(const Graph& g, const std::vector<Tensor>& inputs) {
  QS_CHECK(inputs.size() == g.inputs.size(), "graph run: the graph takes {} inputs, got {}", g.inputs.size(),
           inputs.size());
  // The batch and sequence sizes: where the first input that has each symbol has it.
  Sizes z;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Shape& want = g.values[size_t(g.inputs[i])].shape;
    if (!inputs[i].defined() || inputs[i].dim() != int64_t(want.size())) continue;
    for (size_t d = 0; d < want.size(); ++d) {
      if (want[d] == kBatch && z.batch < 0) z.batch = inputs[i].size(int64_t(d));
      if (want[d] == kSeq && z.seq < 0) z.seq = inputs[i].size(int64_t(d));
    }
  }
  if (z.seq >= 0)
    QS_CHECK(z.seq >= 1 && z.seq <= g.max_seq,
             "graph run: a sequence of {} is outside what the graph serves (1 to {}, its max_seq)", z.seq, g.max_seq);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Value& v = g.values[size_t(g.inputs[i])];
    const Shape want = with_sizes(v.shape, z);
    QS_CHECK(inputs[i].defined() && inputs[i].shape() == want && inputs[i].dtype() == v.dtype,
             "graph run: input {} ('{}') must be {}{}{}, got {}", i, v.name, dtype_name(v.dtype), shape_str(want),
             has_symbols(v.shape) ? " (" + bound_text(z) + ")" : std::string(" as traced"),
             inputs[i].defined() ? fmt::format("{}{}", dtype_name(inputs[i].dtype()), shape_str(inputs[i].shape()))
                                 : std::string("an undefined tensor"));
  }
  return z;
}

std::vector<Tensor> run(const Graph& g, const std::vector<Tensor>& inputs) {
  g.check_replayable();
  const Sizes z = bind_inputs(g, inputs);
  const bool symbolic = z.batch >= 0 || z.seq >= 0;
  std::vector<Tensor> env(g.values.size());
  for (size_t i = 0; i < inputs.size(); ++i) env[size_t(g.inputs[i])] = inputs[i];
  for (size_t id = 0; id < g.values.size(); ++id)
    if (g.data[id].defined()) env[id] = g.data[id];

  const std::vector<int> last_use = last_readers(g);

  NoGrad ng;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    const Node& node = g.nodes[n];
    const ops::OpDef* def = ops::find_op(node.op);
    QS_CHECK(def != nullptr, "graph run: node {} has unknown op '{}'", n, node.op);
    std::vector<Tensor> in;
    in.reserve(node.inputs.size());
    for (int id : node.inputs) {
      if (id >= 0) QS_CHECK(env[size_t(id)].defined(), "graph run: node {} ({}) reads value {} before it exists", n, node.op, id);
      in.push_back(id >= 0 ? env[size_t(id)] : Tensor());
    }
    std::vector<Tensor> out = ops::dispatch(def->kind, std::move(in), symbolic ? with_sizes(node.attrs, z) : node.attrs);
    QS_CHECK(out.size() == node.outputs.size(), "graph run: node {} ({}) gave {} outputs, the graph expects {}", n,
             node.op, out.size(), node.outputs.size());
    for (size_t k = 0; k < out.size(); ++k) env[size_t(node.outputs[k])] = std::move(out[k]);
    for (int id : node.inputs)
      if (id >= 0 && g.values[size_t(id)].kind == ValueKind::node && last_use[size_t(id)] == int(n))
        env[size_t(id)] = Tensor();
    for (int id : node.outputs)
      if (last_use[size_t(id)] < 0) env[size_t(id)] = Tensor();  // never read
  }
  std::vector<Tensor> results;
  for (int id : g.outputs) results.push_back(env[size_t(id)]);
  return results;
}

}  // namespace qs::graph
