// The backward engine: a dependency-counted topological walk over recorded nodes.
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "autograd/anomaly.h"
#include "autograd/autograd.h"
#include "ops/functional_internal.h"

namespace qs {

namespace {
thread_local bool g_grad_enabled = true;
}
bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

// ---- Tensor's autograd surface
bool Tensor::requires_grad() const { return defined() && impl_->autograd && impl_->autograd->requires_grad; }

Tensor& Tensor::requires_grad_(bool r) {
  QS_CHECK(defined(), "requires_grad_ on an undefined tensor");
  if (r)
    QS_CHECK(is_floating_point(), "only floating-point tensors can require gradients, this one is {}",
             dtype_name(dtype()));
  QS_CHECK(r || is_leaf(), "requires_grad_(false) on a non-leaf tensor; hint: use detach()");
  autograd::meta(*this).requires_grad = r;
  return *this;
}

bool Tensor::is_leaf() const { return !impl_->autograd || !impl_->autograd->grad_fn; }

Tensor Tensor::grad() const { return impl_->autograd ? impl_->autograd->grad : Tensor(); }
void Tensor::set_grad(const Tensor& g) {
  if (g.defined())
    QS_CHECK(g.shape() == shape(), "set_grad: gradient shape {} does not match tensor shape {}",
             shape_str(g.shape()), shape_str(shape()));
  autograd::meta(*this).grad = g;
}
void Tensor::zero_grad() {
  if (impl_->autograd) impl_->autograd->grad = Tensor();
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->offset = impl_->offset;
  impl->dtype = impl_->dtype;
  return Tensor(impl);
}

int Tensor::register_post_accumulate_hook(std::function<void(Tensor&)> hook) {
  QS_CHECK(is_leaf() && requires_grad(), "register_post_accumulate_hook on a tensor that is not a leaf requiring grad");
  auto& hs = autograd::meta(*this).post_accumulate_hooks;
  hs.push_back(std::move(hook));
  return int(hs.size()) - 1;
}

std::shared_ptr<autograd::Node> Tensor::grad_fn() const {
  return impl_->autograd ? impl_->autograd->grad_fn : nullptr;
}
int Tensor::output_nr() const { return impl_->autograd ? impl_->autograd->output_nr : 0; }

int Tensor::register_hook(std::function<Tensor(const Tensor&)> hook) {
  QS_CHECK(requires_grad(), "register_hook on a tensor that does not require grad");
  auto& m = autograd::meta(*this);
  if (m.grad_fn) {
    auto& hs = m.grad_fn->hooks[size_t(m.output_nr)];
    hs.push_back(std::move(hook));
    return int(hs.size()) - 1;
  }
  m.leaf_hooks.push_back(std::move(hook));
  return int(m.leaf_hooks.size()) - 1;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::run_backward({*this}, {gradient}, retain_graph, {});
}

std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs, const Tensor& grad_output,
                         bool retain_graph) {
  return autograd::run_backward({output}, {grad_output}, retain_graph, inputs);
}

namespace autograd {

AutogradMeta& meta(const Tensor& t) {
  if (!t.impl()->autograd) t.impl()->autograd = std::make_unique<AutogradMeta>();
  return *t.impl()->autograd;
}

std::shared_ptr<Node> gradient_edge_node(const Tensor& t, int& input_nr) {
  auto& m = meta(t);
  if (m.grad_fn) {
    input_nr = m.output_nr;
    return m.grad_fn;
  }
  input_nr = 0;
  auto acc = m.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<Node>();
    acc->name = "AccumulateGrad";
    acc->is_accumulator = true;
    acc->leaf = t.impl_ptr();
    acc->out_spec = {TensorSpec{t.shape(), t.dtype()}};
    acc->hooks.resize(1);
    m.grad_accumulator = acc;
  }
  return acc;
}

void record(const ops::OpDef& def, ops::OpCall& call) {
  auto node = std::make_shared<Node>();
  node->name = def.name;
  node->op = def.kind;
  node->not_differentiable = !(def.flags & ops::kDiff);
  if (anomaly_enabled()) node->scope = anomaly_scope();
  auto& ctx = node->ctx;
  ctx.attrs = call.attrs;
  size_t nin = call.in.size();
  ctx.needs_grad.resize(nin);
  ctx.in_spec.resize(nin);
  node->next.resize(nin);
  if (def.flags & ops::kSaveIn) ctx.in.resize(nin);
  for (size_t i = 0; i < nin; ++i) {
    const Tensor& x = call.in[i];
    if (!x.defined()) continue;
    ctx.in_spec[i] = TensorSpec{x.shape(), x.dtype()};
    // Saved tensors are detached aliases: no reference cycles through the graph.
    if (def.flags & ops::kSaveIn) ctx.in[i] = x.detach();
    if (x.requires_grad()) {
      ctx.needs_grad[i] = true;
      node->next[i].node = gradient_edge_node(x, node->next[i].input_nr);
    }
  }
  if (def.flags & ops::kSaveOut) {
    ctx.out.reserve(call.out.size());
    for (auto& o : call.out) ctx.out.push_back(o.detach());
  }
  node->hooks.resize(call.out.size());
  for (size_t k = 0; k < call.out.size(); ++k) {
    node->out_spec.push_back(TensorSpec{call.out[k].shape(), call.out[k].dtype()});
    if (!call.out[k].is_floating_point()) continue;
    auto& m = meta(call.out[k]);
    m.requires_grad = true;
    m.grad_fn = node;
    m.output_nr = int(k);
  }
}

namespace {

void accumulate(Tensor& slot, const Tensor& g) {
  if (!g.defined()) return;
  if (!slot.defined()) {
    slot = g;
    return;
  }
  slot = add(slot, g);
}

Tensor apply_hooks(const std::vector<Hook>& hooks, Tensor g) {
  for (auto& h : hooks) {
    Tensor r = h(g);
    if (r.defined()) {
      QS_CHECK(r.shape() == g.shape(), "a gradient hook returned shape {}, expected {}", shape_str(r.shape()),
               shape_str(g.shape()));
      g = r;
    }
  }
  return g;
}

}  // namespace

std::vector<Tensor> run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                                 bool retain_graph, const std::vector<Tensor>& inputs) {
  NoGrad no_grad;  // gradients are computed without recording (no higher-order graphs)
  InBackward in_backward;  // anomaly mode checks each node's gradients, not the ops of its formula
  std::vector<std::pair<std::shared_ptr<Node>, int>> root_edges;
  std::vector<Tensor> root_grads;
  for (size_t r = 0; r < roots.size(); ++r) {
    const Tensor& t = roots[r];
    QS_CHECK(t.defined(), "backward of an undefined tensor");
    QS_CHECK(t.requires_grad(),
             "element {} of tensors does not require grad and does not have a grad_fn; hint: set "
             "requires_grad on the parameters, and do not compute the loss under NoGrad",
             r);
    Tensor g = r < grads.size() ? grads[r] : Tensor();
    if (!g.defined()) {
      QS_CHECK(t.numel() == 1,
               "grad can be implicitly created only for scalar outputs; this output has shape {}; hint: "
               "pass an explicit gradient of that shape",
               shape_str(t.shape()));
      g = ones(t.shape(), t.dtype());
    } else {
      QS_CHECK(g.shape() == t.shape(), "backward: gradient shape {} does not match output shape {}",
               shape_str(g.shape()), shape_str(t.shape()));
    }
    int nr = 0;
    root_edges.emplace_back(gradient_edge_node(t, nr), nr);
    root_grads.push_back(g);
  }

  // Which (node, slot) pairs the caller wants gradients for.
  std::map<std::pair<Node*, int>, size_t> wanted;
  std::vector<std::shared_ptr<Node>> keep_alive;
  for (size_t i = 0; i < inputs.size(); ++i) {
    QS_CHECK(inputs[i].requires_grad(), "grad: input {} does not require grad", i);
    int nr = 0;
    auto n = gradient_edge_node(inputs[i], nr);
    keep_alive.push_back(n);
    wanted[{n.get(), nr}] = i;
  }
  std::vector<Tensor> results(inputs.size());

  // Count dependencies over the reachable graph.
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& e : root_edges)
    if (seen.insert(e.first.get()).second) stack.push_back(e.first.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next) {
      if (!e.node) continue;
      deps[e.node.get()]++;
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }

  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto buffer_of = [&](Node* n) -> std::vector<Tensor>& {
    auto& b = buffers[n];
    if (b.empty()) b.resize(std::max<size_t>(1, n->out_spec.size()));
    return b;
  };
  for (size_t r = 0; r < root_edges.size(); ++r) accumulate(buffer_of(root_edges[r].first.get())[size_t(root_edges[r].second)], root_grads[r]);

  std::vector<Node*> ready;
  for (auto& e : root_edges)
    if (deps[e.first.get()] == 0 && std::find(ready.begin(), ready.end(), e.first.get()) == ready.end())
      ready.push_back(e.first.get());

  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    std::vector<Tensor> gin = std::move(buffer_of(n));
    buffers.erase(n);
    for (size_t k = 0; k < gin.size() && k < n->hooks.size(); ++k)
      if (gin[k].defined()) gin[k] = apply_hooks(n->hooks[k], gin[k]);
    for (size_t k = 0; k < gin.size(); ++k) {
      auto it = wanted.find({n, int(k)});
      if (it != wanted.end()) results[it->second] = gin[k];
    }

    if (n->is_accumulator) {
      if (inputs.empty()) {
        auto leaf = n->leaf.lock();
        if (leaf && gin[0].defined()) {
          Tensor lt(leaf);
          Tensor g = apply_hooks(meta(lt).leaf_hooks, gin[0]);
          if (g.dtype() != lt.dtype()) g = g.to(lt.dtype());
          auto& m = meta(lt);
          if (!m.grad.defined())
            m.grad = g.is_contiguous() && g.storage().use_count() == 1 ? g : g.clone();
          else
            ops::add_inplace_raw(m.grad, g);
          for (auto& h : m.post_accumulate_hooks) h(lt);
        }
      }
      continue;
    }
    QS_CHECK(!n->not_differentiable,
             "op '{}' is not differentiable, but a gradient was requested through it; hint: detach() its "
             "input or compute it under NoGrad",
             n->name);
    QS_CHECK(!n->released,
             "trying to backward through the graph a second time (op '{}'), but its saved tensors were "
             "freed after the first backward; hint: pass retain_graph=true to the first backward",
             n->name);

    bool any = false;
    for (auto& g : gin) any = any || g.defined();
    std::vector<Tensor> gout;
    if (any) {
      // Fill missing output grads with zeros only for multi-output ops that need them.
      for (size_t k = 0; k < gin.size(); ++k)
        if (!gin[k].defined() && is_floating(n->out_spec[k].dtype) && n->out_spec.size() > 1)
          gin[k] = zeros(n->out_spec[k].shape, n->out_spec[k].dtype);
      // An output's gradient has the output's dtype (gradients summed under autocast may
      // have been widened to f32 by the add), except a cast's: see the rule below.
      for (size_t k = 0; k < gin.size(); ++k)
        if (gin[k].defined() && n->op != ops::OpKind::cast && gin[k].dtype() != n->out_spec[k].dtype &&
            is_floating(n->out_spec[k].dtype) && is_floating(gin[k].dtype()))
          gin[k] = gin[k].to(n->out_spec[k].dtype);
      gout = ops::op_def(n->op).impl->backward(n->ctx, gin);
      if (anomaly_enabled()) check_backward(*n, gin, gout);
    }
    if (!retain_graph) {
      n->ctx.in.clear();
      n->ctx.out.clear();
      n->released = true;
    }
    for (size_t i = 0; i < n->next.size(); ++i) {
      auto& e = n->next[i];
      if (!e.node) continue;
      if (i < gout.size() && gout[i].defined()) {
        Tensor g = gout[i];
        const TensorSpec& spec = n->ctx.in_spec[i];
        if (g.shape() != spec.shape) g = ops::sum_to(g, spec.shape);
        // A gradient takes its input's dtype, but one bound for a cast node takes the dtype
        // the cast's backward will give it anyway: under autocast an f32 gradient of a bf16
        // copy of an f32 tensor then goes straight back, not rounded to bf16 and widened.
        DType want = spec.dtype;
        const Node* to = e.node.get();
        if (!to->is_accumulator && to->op == ops::OpKind::cast && is_floating(to->ctx.in_spec[0].dtype))
          want = to->ctx.in_spec[0].dtype;
        if (g.dtype() != want && is_floating(want)) g = g.to(want);
        accumulate(buffer_of(e.node.get())[size_t(e.input_nr)], g);
      }
      if (--deps[e.node.get()] == 0) ready.push_back(e.node.get());
    }
  }
  return results;
}

}  // namespace autograd
}  // namespace qs
