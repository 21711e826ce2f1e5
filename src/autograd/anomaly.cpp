// Anomaly mode: the switch, the scope stack, and the checks of forward outputs and
// backward gradients for NaN and infinity.
#include "autograd/anomaly.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "autograd/autograd.h"
#include "tensor/strided.h"

namespace qs {

namespace {
std::atomic<bool>& anomaly_flag() {
  static std::atomic<bool> flag{[] {
    const char* e = std::getenv("QS_DETECT_ANOMALY");
    if (!e || !*e || std::strcmp(e, "0") == 0) return false;
    if (std::strcmp(e, "1") == 0) return true;
    throw Error(fmt::format("QS_DETECT_ANOMALY='{}' is not understood; expected 1 (on), 0 or unset (off)", e));
  }()};
  return flag;
}
}  // namespace

bool anomaly_enabled() { return anomaly_flag().load(std::memory_order_relaxed); }
void set_detect_anomaly(bool on) { anomaly_flag().store(on, std::memory_order_relaxed); }

namespace autograd {

namespace {

thread_local std::vector<std::shared_ptr<const std::string>> t_scopes;
thread_local int t_backward_depth = 0;

struct NonFinite {
  int64_t index;  // logical, row-major
  double value;
};

bool finite_bits16(uint16_t h, DType t) {
  const uint16_t exp = t == DType::bf16 ? 0x7f80 : 0x7c00;  // all-ones exponent: inf or NaN
  return (h & exp) != exp;
}

// The first element of a floating tensor that is NaN or infinite.
std::optional<NonFinite> first_nonfinite(const Tensor& t);

// The first NaN of a floating tensor, and the first infinity before it (or anywhere, when
// it holds no NaN).
struct Scan {
  std::optional<NonFinite> nan, inf;
};
Scan scan(const Tensor& t) {
  Scan s;
  if (!t.defined() || !t.is_floating_point()) return s;
  StridedIndex ix(t.shape(), t.strides());
  const bool dense = t.is_contiguous();
  const void* base = t.raw_data();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = load_as_double(base, t.dtype(), dense ? i : ix.offset(i));
    if (std::isnan(v)) {
      s.nan = NonFinite{i, v};
      break;
    }
    if (std::isinf(v) && !s.inf) s.inf = NonFinite{i, v};
  }
  return s;
}

std::optional<NonFinite> first_nonfinite(const Tensor& t) {
  if (!t.defined() || !t.is_floating_point() || t.numel() == 0) return std::nullopt;
  const int64_t n = t.numel();
  const void* base = t.raw_data();
  if (t.is_contiguous()) {
    switch (t.dtype()) {
      case DType::f32: {
        const float* p = static_cast<const float*>(base);
        for (int64_t i = 0; i < n; ++i)
          if (!std::isfinite(p[i])) return NonFinite{i, p[i]};
        return std::nullopt;
      }
      case DType::f64: {
        const double* p = static_cast<const double*>(base);
        for (int64_t i = 0; i < n; ++i)
          if (!std::isfinite(p[i])) return NonFinite{i, p[i]};
        return std::nullopt;
      }
      default: {
        const uint16_t* p = static_cast<const uint16_t*>(base);
        for (int64_t i = 0; i < n; ++i)
          if (!finite_bits16(p[i], t.dtype())) return NonFinite{i, load_as_double(base, t.dtype(), i)};
        return std::nullopt;
      }
    }
  }
  StridedIndex ix(t.shape(), t.strides());
  for (int64_t i = 0; i < n; ++i) {
    const double v = load_as_double(base, t.dtype(), ix.offset(i));
    if (!std::isfinite(v)) return NonFinite{i, v};
  }
  return std::nullopt;
}

std::string value_name(double v) { return std::isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf"; }

std::string spec_str(const Tensor& t) { return fmt::format("{}{}", dtype_name(t.dtype()), shape_str(t.shape())); }

// "f32[2, 3] (finite), f32[3] (holds inf at element 0), -"; `first_bad` gets the first
// input that is not finite (-1 if none).
std::string describe_tensors(const std::vector<Tensor>& ts, int& first_bad) {
  std::string s;
  first_bad = -1;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (i) s += ", ";
    if (!ts[i].defined()) {
      s += "-";
      continue;
    }
    s += spec_str(ts[i]);
    if (!ts[i].is_floating_point()) continue;
    if (auto bad = first_nonfinite(ts[i])) {
      s += fmt::format(" (holds {} at element {})", value_name(bad->value), bad->index);
      if (first_bad < 0) first_bad = int(i);
    } else {
      s += " (finite)";
    }
  }
  return s.empty() ? "none" : s;
}

std::string where(const std::shared_ptr<const std::string>& scope) {
  return scope ? "in module " + *scope : "outside any module's forward";
}

}  // namespace

void push_anomaly_scope(std::string where) {
  t_scopes.push_back(std::make_shared<const std::string>(std::move(where)));
}
void pop_anomaly_scope() {
  QS_CHECK(!t_scopes.empty(), "internal: anomaly scopes popped more often than pushed");
  t_scopes.pop_back();
}
std::shared_ptr<const std::string> anomaly_scope() { return t_scopes.empty() ? nullptr : t_scopes.back(); }

InBackward::InBackward() { ++t_backward_depth; }
InBackward::~InBackward() { --t_backward_depth; }

void check_forward(const ops::OpDef& def, const ops::OpCall& call) {
  if (t_backward_depth > 0 || (def.flags & ops::kView)) return;  // a view holds its input's values
  for (size_t k = 0; k < call.out.size(); ++k) {
    if (!first_nonfinite(call.out[k])) continue;  // the common case, at full speed
    const Scan out = scan(call.out[k]);
    // An infinity passed on from an input that holds one is not new: an additive -inf mask
    // before a softmax is the usual case. A NaN always is.
    if (!out.nan) {
      bool inf_in = false;
      for (const Tensor& x : call.in) inf_in = inf_in || scan(x).inf.has_value();
      if (inf_in) continue;
    }
    const NonFinite* bad = out.nan ? &*out.nan : &*out.inf;
    int bad_in = -1;
    const std::string inputs = describe_tensors(call.in, bad_in);
    const std::string hint =
        bad_in < 0 ? fmt::format("the inputs are finite, so '{}' made the value: an argument outside its domain "
                                 "(log or sqrt of a negative number, 0/0), a division by 0 or an overflow",
                                 def.name)
                   : fmt::format("input {} was not finite before '{}', and no op checked in anomaly mode made it: "
                                 "it came from outside the ops (the data, a parameter the optimiser changed, a "
                                 "tensor written directly)",
                                 bad_in, def.name);
    QS_FAIL("anomaly mode: op '{}' gave {} in its forward: output {} ({}) holds {} at element {}, {}; its inputs: "
            "{}; hint: {}",
            def.name, value_name(bad->value), k, spec_str(call.out[k]), value_name(bad->value), bad->index,
            where(anomaly_scope()), inputs, hint);
  }
}

void check_backward(const Node& n, const std::vector<Tensor>& received, const std::vector<Tensor>& grads) {
  for (size_t i = 0; i < grads.size(); ++i) {
    const auto bad = first_nonfinite(grads[i]);
    if (!bad) continue;
    std::string inputs;
    for (size_t k = 0; k < n.ctx.in_spec.size(); ++k) {
      if (k) inputs += ", ";
      const TensorSpec& s = n.ctx.in_spec[k];
      inputs += fmt::format("{}{}", dtype_name(s.dtype), shape_str(s.shape));
    }
    int bad_in = -1;
    const std::string got = describe_tensors(received, bad_in);
    const std::string hint =
        bad_in < 0 ? fmt::format("the gradients it received are finite, so the backward formula of '{}' made the "
                                 "value: a derivative that is infinite there (sqrt or log at 0, a division by 0) or "
                                 "an overflow",
                                 n.name)
                   : "a gradient it received was not finite: the gradient passed to backward(), or a hook's";
    QS_FAIL("anomaly mode: op '{}' gave {} in its backward: the gradient for input {} ({}) holds {} at element {}; "
            "the op ran {}; its inputs in the forward: {}; the gradients it received: {}; hint: {}",
            n.name, value_name(bad->value), i, spec_str(grads[i]), value_name(bad->value), bad->index, where(n.scope),
            inputs, got, hint);
  }
}

void check_update(const std::string& optimizer, double lr, size_t i, const Tensor& param, const Tensor& grad) {
  const auto bad = first_nonfinite(param);
  if (!bad) return;
  const auto bad_grad = first_nonfinite(grad);
  QS_FAIL("anomaly mode: after the {} step (learning rate {}), parameter {} ({}) holds {} at element {}; its "
          "gradient {}; hint: {}",
          optimizer, lr, i, spec_str(param), value_name(bad->value), bad->index,
          bad_grad ? fmt::format("held {} at element {}", value_name(bad_grad->value), bad_grad->index)
                   : std::string("was finite"),
          bad_grad ? "the gradient was set outside backward (backward's are checked in anomaly mode)"
                   : "the update overflowed: a lower learning rate, or gradient clipping");
}

}  // namespace autograd
}  // namespace qs
