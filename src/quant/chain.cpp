// quant::chain_quantized_layers (include/qiusuo/quant/convert.h): one traced forward
// (graph::trace) proves which QuantizedConv outputs reach the next QuantizedConv only
// through ops that commute with monotone quantisation, and marks those pairs to hand over
// u8 channels-last codes.
#include <map>
#include <set>

#include "qiusuo/graph/graph.h"
#include "qiusuo/quant/convert.h"

namespace qs::quant {

namespace {

// Who reads each value of the traced forward.
class Flow {
 public:
  explicit Flow(const graph::Graph& g) : g_(g), uses_(g.values.size()) {
    for (size_t n = 0; n < g.nodes.size(); ++n)
      for (int id : g.nodes[n].inputs)
        if (id >= 0) uses_[size_t(id)].push_back(int(n));
    for (int id : g.outputs) uses_[size_t(id)].push_back(-1);  // the model's result
  }
  // The single reader of value v if it reads v as its input 0 and is an `op` node (nullptr
  // if v has other readers, is the model's result, or that reader is something else).
  const graph::Node* only_use(int v, const char* op) const {
    if (uses_[size_t(v)].size() != 1 || uses_[size_t(v)][0] < 0) return nullptr;
    const graph::Node& n = g_.nodes[size_t(uses_[size_t(v)][0])];
    return n.op == op && n.inputs[0] == v ? &n : nullptr;
  }
  bool unused(int v) const { return uses_[size_t(v)].empty(); }
  // From A's f32 output d: through max_pool only, to a quantize whose only use is a qconv;
  // returns that qconv node or nullptr.
  const graph::Node* consumer_conv(int d) const {
    for (;;) {
      if (const graph::Node* p = only_use(d, "max_pool")) {
        if (p->outputs.size() > 1 && !unused(p->outputs[1])) return nullptr;  // the indices are read
        d = p->outputs[0];
        continue;
      }
      const graph::Node* q = only_use(d, "quantize");
      return q ? only_use(q->outputs[0], "qconv") : nullptr;
    }
  }

 private:
  const graph::Graph& g_;
  std::vector<std::vector<int>> uses_;  // node indices; -1: a graph output
};

}  // namespace

int64_t chain_quantized_layers(nn::Module& model, const Tensor& example) {
  std::map<std::string, std::shared_ptr<QuantizedConv>> by_weight;  // by the weight's state-dict name
  for (auto& [name, m] : model.named_modules())
    if (auto q = std::dynamic_pointer_cast<QuantizedConv>(m)) {
      q->set_chained_input(nullptr);
      q->set_chained_output(false);
      by_weight[name + ".weight"] = q;
    }
  if (by_weight.size() < 2) return 0;
  // One traced forward (eval mode, no autograd): its top-level primitives and their values.
  const graph::Graph g = graph::trace(model, example);
  Flow flow(g);
  auto layer = [&](const graph::Node& n) {
    auto it = by_weight.find(g.values[size_t(n.inputs[1])].name);
    return it == by_weight.end() ? nullptr : it->second;
  };
  // Every call of a producer must lead to the same consumer, and every consumer must be fed
  // by one producer; anything else (shared layers, branches) keeps the f32 hand-over.
  std::map<QuantizedConv*, std::pair<std::shared_ptr<QuantizedConv>, std::shared_ptr<QuantizedConv>>> next;  // A -> (A, B)
  std::map<QuantizedConv*, std::set<QuantizedConv*>> feeders;
  std::set<QuantizedConv*> refused;
  for (const graph::Node& c : g.nodes) {
    if (c.op != "qconv") continue;
    auto a = layer(c);
    if (!a) continue;
    const graph::Node* deq = flow.only_use(c.outputs[0], "dequantize");
    const graph::Node* conv = deq ? flow.consumer_conv(deq->outputs[0]) : nullptr;
    auto b = conv ? layer(*conv) : nullptr;
    auto out = a->output_qparams();
    bool ok = b && out && out->dtype == QDtype::u8 && b->input_qparams().dtype == QDtype::u8;
    if (!ok || (next.count(a.get()) && next[a.get()].second != b)) {
      refused.insert(a.get());
      continue;
    }
    next[a.get()] = {a, b};
    feeders[b.get()].insert(a.get());
  }
  int64_t chained = 0;
  for (auto& [key, pair] : next) {
    auto& [a, b] = pair;
    if (refused.count(key) || feeders[b.get()].size() != 1) continue;
    a->set_chained_output(true);
    b->set_chained_input(a);
    ++chained;
  }
  return chained;
}

int64_t convert(nn::Module& model, const Tensor& example) {
  int64_t n = convert(model);
  chain_quantized_layers(model, example);
  return n;
}

}  // namespace qs::quant
