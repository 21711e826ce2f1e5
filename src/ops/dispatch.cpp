// The op table and the one dispatch point.
#include <cstdlib>
#include <iostream>
#include <optional>
#include <unordered_map>

#include "autograd/anomaly.h"
#include "autograd/autograd.h"
#include "qiusuo/autograd.h"
#include "ops/op.h"
#include "ops/profiler_hook.h"
#include "util/verbose.h"

namespace qs::ops {

namespace {

std::vector<OpDef> build_table() {
  std::vector<OpDef> t;
#define QS_OP(name, nin, nout, flags) \
  t.push_back(OpDef{op_name(OpKind::name), OpKind::name, nin, nout, uint32_t(flags), &name##_impl, {}});
#include "kernels/ops.def"
#undef QS_OP
  for (OpDef& d : t) d.optimised = optimised_kernels()[size_t(d.kind)];
  return t;
}

enum class ForceImpl { none, ref };

ForceImpl force_impl() {
  static ForceImpl f = [] {
    const char* e = std::getenv("QS_FORCE_IMPL");
    if (!e || !*e) return ForceImpl::none;
    std::string s(e);
    if (s == "ref") return ForceImpl::ref;
    throw Error(fmt::format("QS_FORCE_IMPL='{}' is not understood; expected 'ref' or unset", s));
  }();
  return f;
}

// QS_DISABLE=name[,name...]: optimised kernels never chosen (A/B measurements of a kernel
// against what would run without it; QS_VERBOSE=dispatch shows them as declined).
bool disabled(const std::string& kernel) {
  static const std::vector<std::string> names = util::parse_verbose_topics(std::getenv("QS_DISABLE"));
  for (auto& n : names)
    if (n == kernel) return true;
  return false;
}

thread_local std::vector<DispatchHook*> g_hooks;
thread_local KernelLog* g_kernel_log = nullptr;

std::string describe_inputs(const std::vector<Tensor>& in) {
  std::string s;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i) s += ", ";
    if (!in[i].defined()) {
      s += "-";
      continue;
    }
    s += fmt::format("{}{}{}", dtype_name(in[i].dtype()), shape_str(in[i].shape()),
                     in[i].is_contiguous() ? "" : "(strided)");
  }
  return s;
}

}  // namespace

const std::vector<OpDef>& op_table() {
  static std::vector<OpDef> table = build_table();
  return table;
}
const OpDef& op_def(OpKind k) { return op_table()[size_t(k)]; }
const OpDef* find_op(const std::string& name) {
  // By hash: the graph interpreter looks up every node's op on every run.
  static const std::unordered_map<std::string, const OpDef*> by_name = [] {
    std::unordered_map<std::string, const OpDef*> m;
    for (auto& d : op_table()) m.emplace(d.name, &d);
    return m;
  }();
  auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : it->second;
}

Tensor empty_output(const TensorSpec& s) {
  if (s.layout.empty()) return empty(s.shape, s.dtype);
  QS_CHECK(s.layout.size() == s.shape.size(), "internal: output layout {} does not match shape {}",
           shape_str(s.layout), shape_str(s.shape));
  Shape physical, inverse(s.layout.size());
  for (size_t k = 0; k < s.layout.size(); ++k) {
    physical.push_back(s.shape[size_t(s.layout[k])]);
    inverse[size_t(s.layout[k])] = int64_t(k);
  }
  return empty(physical, s.dtype).permute(inverse);
}

KernelLog::KernelLog() : prev_(g_kernel_log) { g_kernel_log = this; }
KernelLog::~KernelLog() { g_kernel_log = prev_; }
void KernelLog::note(OpKind op, const char* kernel) {
  if (g_kernel_log) g_kernel_log->entries_.push_back({op, kernel});
}

namespace {
thread_local int g_reference_depth = 0;
}  // namespace
ReferenceKernels::ReferenceKernels() { ++g_reference_depth; }
ReferenceKernels::~ReferenceKernels() { --g_reference_depth; }

void push_dispatch_hook(DispatchHook* h) { g_hooks.push_back(h); }
void pop_dispatch_hook(DispatchHook* h) {
  QS_CHECK(!g_hooks.empty() && g_hooks.back() == h, "internal: dispatch hooks popped out of order");
  g_hooks.pop_back();
}
}  // namespace qs::ops

namespace qs {
void note_value_dependent(const char* what) {
  if (ops::g_hooks.empty()) return;  // not traced: nothing to build
  const std::string w = what;
  for (ops::DispatchHook* h : ops::g_hooks) h->value_dependent(w);
}
}  // namespace qs

namespace qs::ops {

std::vector<TensorSpec> run_meta(const OpCall& call) { return op_def(call.op).impl->meta(call); }

void run_kernel(OpCall& call, const std::string& impl_name) {
  const OpDef& def = op_def(call.op);
  if (impl_name == "ref") {
    def.impl->ref(call);
    return;
  }
  for (auto& k : def.optimised)
    if (impl_name == k.name) {
      const char* why = k.supports(call);
      QS_CHECK(!why, "kernel {}/{} declined: {}", def.name, k.name, why);
      k.run(call);
      return;
    }
  QS_FAIL("op '{}' has no kernel named '{}'", def.name, impl_name);
}

std::vector<Tensor> dispatch(OpKind op, std::vector<Tensor> in, Attrs attrs) {
  const OpDef& def = op_def(op);
  if (def.nin >= 0)
    QS_CHECK(int(in.size()) == def.nin, "internal: op '{}' takes {} inputs, got {}", def.name, def.nin, in.size());
  for (DispatchHook* h : g_hooks) h->before(op, in, attrs);

  std::optional<profiler::detail::CallTimer> timer;  // times meta, allocation and the kernel
  if (profiler::detail::on()) timer.emplace();
  const char* kernel_name = "view";
  OpCall call{op, std::move(in), std::move(attrs), {}};
  if (def.flags & kView) {
    call.out.push_back(def.impl->view(call));
  } else {
    std::vector<TensorSpec> specs = def.impl->meta(call);
    call.out.reserve(specs.size());
    for (auto& s : specs) call.out.push_back(empty_output(s));
    static const bool verbose = util::verbose("dispatch");  // once: dispatch is the hot path
    const KernelImpl* chosen = nullptr;
    std::string why_not;
    if (force_impl() != ForceImpl::ref && g_reference_depth == 0) {
      for (auto& k : def.optimised) {
        const char* why = disabled(k.name) ? "disabled by QS_DISABLE" : k.supports(call);
        if (!why) {
          chosen = &k;
          break;
        }
        if (verbose) why_not += fmt::format(" [{} declined: {}]", k.name, why);
      }
    } else if (verbose && !def.optimised.empty()) {
      why_not = g_reference_depth ? " [ReferenceKernels scope]" : " [QS_FORCE_IMPL=ref]";
    }
    if (verbose)
      std::cerr << fmt::format("qs dispatch: {}({}) {} -> {}{}\n", def.name, describe_inputs(call.in),
                               call.attrs.to_string(), chosen ? chosen->name : "ref", why_not);
    {
      NoGrad no_record;  // kernels may call ops internally (contiguous copies, casts): never record those
      if (chosen)
        chosen->run(call);
      else
        def.impl->ref(call);
    }
    kernel_name = chosen ? chosen->name : "ref";
    if (g_kernel_log) KernelLog::note(op, kernel_name);
  }
  if (timer) timer->finish(def.name, kernel_name, profiler::detail::record_shapes() ? describe_inputs(call.in) : "");
  if (anomaly_enabled()) autograd::check_forward(def, call);

  if (grad_enabled()) {
    bool any = false;
    for (auto& x : call.in) any = any || (x.defined() && x.requires_grad());
    if (any) autograd::record(def, call);
  }
  for (DispatchHook* h : g_hooks) h->after(call);
  return std::move(call.out);
}

Tensor dispatch1(OpKind op, std::vector<Tensor> in, Attrs attrs) {
  auto out = dispatch(op, std::move(in), std::move(attrs));
  return std::move(out[0]);
}

}  // namespace qs::ops

namespace qs {
std::string Attrs::to_string() const {
  std::string s;
  for (auto& [k, v] : items_) {
    if (!s.empty()) s += ", ";
    s += k + "=";
    if (auto* i = std::get_if<int64_t>(&v)) s += std::to_string(*i);
    else if (auto* d = std::get_if<double>(&v)) s += fmt::format("{:g}", *d);
    else if (auto* l = std::get_if<std::vector<int64_t>>(&v)) s += shape_str(*l);
    else s += std::get<std::string>(v);
  }
  return s;
}
}  // namespace qs
