// quant::chain_quantized_layers (include/qiusuo/quant/convert.h): one traced forward proves
// which QuantizedConv outputs reach the next QuantizedConv only through ops that commute
// with monotone quantisation, and marks those pairs to hand over u8 channels-last codes.
#include <map>
#include <set>

#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/quant/convert.h"
#include "quant/module_util.h"

namespace qs::quant {

namespace {

// The top-level ops of one forward (ops that kernels dispatch internally are not uses).
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

struct Use {
  size_t call, input;
};

class Flow {
 public:
  Flow(const std::vector<ops::OpCall>& calls, const Tensor& result) : calls_(calls), result_(result.impl()) {
    for (size_t i = 0; i < calls.size(); ++i)
      for (size_t j = 0; j < calls[i].in.size(); ++j)
        if (calls[i].in[j].defined()) uses_[calls[i].in[j].impl()].push_back({i, j});
  }
  // The single use of t as input 0 of an op of kind k (nullptr if t has other uses, is the
  // model's result, or that use is something else).
  const ops::OpCall* only_use(const Tensor& t, ops::OpKind k) const {
    if (t.impl() == result_) return nullptr;
    auto it = uses_.find(t.impl());
    if (it == uses_.end() || it->second.size() != 1) return nullptr;
    const Use& u = it->second[0];
    return calls_[u.call].op == k && u.input == 0 ? &calls_[u.call] : nullptr;
  }
  bool unused(const Tensor& t) const { return t.impl() != result_ && !uses_.count(t.impl()); }
  // From A's f32 output d: through max_pool only, to a quantize whose only use is a qconv;
  // returns that qconv call or nullptr.
  const ops::OpCall* consumer_conv(Tensor d) const {
    for (;;) {
      if (const ops::OpCall* p = only_use(d, ops::OpKind::max_pool)) {
        if (p->out.size() > 1 && !unused(p->out[1])) return nullptr;  // the indices are read
        d = p->out[0];
        continue;
      }
      const ops::OpCall* q = only_use(d, ops::OpKind::quantize);
      return q ? only_use(q->out[0], ops::OpKind::qconv) : nullptr;
    }
  }

 private:
  const std::vector<ops::OpCall>& calls_;
  const TensorImpl* result_;
  std::map<const TensorImpl*, std::vector<Use>> uses_;
};

}  // namespace

int64_t chain_quantized_layers(nn::Module& model, const Tensor& example) {
  std::map<const TensorImpl*, std::shared_ptr<QuantizedConv>> by_weight;
  for (auto& [name, m] : model.named_modules())
    if (auto q = std::dynamic_pointer_cast<QuantizedConv>(m)) {
      q->set_chained_input(nullptr);
      q->set_chained_output(false);
      by_weight[detail::buffer(*q, "weight").impl()] = q;
    }
  if (by_weight.size() < 2) return 0;
  Recorder rec;
  Tensor result;
  {
    nn::EvalScope eval(model);
    NoGrad ng;
    HookScope hook(rec);
    result = model.forward(example);
  }
  Flow flow(rec.calls, result);
  auto layer = [&](const ops::OpCall& c) {
    auto it = by_weight.find(c.in[1].impl());
    return it == by_weight.end() ? nullptr : it->second;
  };
  // Every call of a producer must lead to the same consumer, and every consumer must be fed
  // by one producer; anything else (shared layers, branches) keeps the f32 hand-over.
  std::map<QuantizedConv*, std::pair<std::shared_ptr<QuantizedConv>, std::shared_ptr<QuantizedConv>>> next;  // A -> (A, B)
  std::map<QuantizedConv*, std::set<QuantizedConv*>> feeders;
  std::set<QuantizedConv*> refused;
  for (const auto& c : rec.calls) {
    if (c.op != ops::OpKind::qconv) continue;
    auto a = layer(c);
    if (!a) continue;
    const ops::OpCall* deq = flow.only_use(c.out[0], ops::OpKind::dequantize);
    const ops::OpCall* conv = deq ? flow.consumer_conv(deq->out[0]) : nullptr;
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
