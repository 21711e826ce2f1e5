#include "ops/harness.h"

#include <omp.h>

#include <cmath>
#include <cstring>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "tensor/strided.h"

namespace qs::ops {

namespace {

constexpr size_t kGuardBytes = 64;
constexpr uint8_t kGuardByte = 0xA5;
// gradcheck: above this many elements (inputs checked + outputs) a sample probes fewer
// single coordinates, down to kMinCoords per input.
constexpr int64_t kLargeSample = 16384;
constexpr int kMinCoords = 32;

// An output tensor whose storage is followed by guard bytes (in the spec's layout).
Tensor guarded_empty(const TensorSpec& s) {
  if (!s.layout.empty()) {
    Shape physical, inverse(s.layout.size());
    for (size_t k = 0; k < s.layout.size(); ++k) {
      physical.push_back(s.shape[size_t(s.layout[k])]);
      inverse[size_t(s.layout[k])] = int64_t(k);
    }
    return guarded_empty(TensorSpec{physical, s.dtype}).permute(inverse);
  }
  size_t nbytes = size_t(shape_numel(s.shape)) * dtype_size(s.dtype);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(nbytes + kGuardBytes);
  std::memset(impl->storage->data(), 0x7f, nbytes);  // garbage a kernel must overwrite
  std::memset(static_cast<char*>(impl->storage->data()) + nbytes, kGuardByte, kGuardBytes);
  impl->shape = s.shape;
  impl->strides = contiguous_strides(s.shape);
  impl->dtype = s.dtype;
  return Tensor(impl);
}

bool guard_intact(const Tensor& t) {
  size_t nbytes = size_t(t.numel()) * t.element_size();
  const uint8_t* g = static_cast<const uint8_t*>(t.storage()->data()) + nbytes;
  for (size_t i = 0; i < kGuardBytes; ++i)
    if (g[i] != kGuardByte) return false;
  return true;
}

struct Tolerance {
  double atol, rtol;
};
Tolerance tolerance_for(DType t) {
  switch (t) {
    case DType::f64: return {1e-10, 1e-9};
    case DType::f32: return {2e-5, 2e-4};
    case DType::bf16: return {1e-2, 1e-2};
    default: return {0, 0};  // integers and bools: exact
  }
}

// Largest violation of |a - b| <= atol + rtol |b|, as a message; empty if none.
std::string compare(const Tensor& got, const Tensor& want, Tolerance tol) {
  if (got.shape() != want.shape()) return fmt::format("shape {} vs {}", shape_str(got.shape()), shape_str(want.shape()));
  if (got.dtype() != want.dtype()) return fmt::format("dtype {} vs {}", dtype_name(got.dtype()), dtype_name(want.dtype()));
  auto g = got.to_vector(), w = want.to_vector();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    bool both_nan = std::isnan(g[i]) && std::isnan(w[i]);
    if (both_nan || g[i] == w[i]) continue;  // equal, infinities included
    double err = std::abs(g[i] - w[i]);
    double excess = err - (tol.atol + tol.rtol * std::abs(w[i]));
    if (std::isnan(err)) excess = INFINITY;
    if (excess > worst) {
      worst = excess;
      at = i;
    }
  }
  if (worst > 0) return fmt::format("element {}: got {:.9g}, expected {:.9g}", at, g[at], w[at]);
  return "";
}

}  // namespace

std::vector<CheckResult> check_kernels(const OpDef& def, uint64_t seed) {
  std::vector<CheckResult> out;
  if (def.flags & kView || !def.impl->samples) return out;
  NoGrad ng;
  int saved_threads = omp_get_max_threads();
  std::vector<DType> dtypes = {DType::f32, DType::f64};
  if (def.flags & (kLowp | kBf16)) dtypes.push_back(DType::bf16);  // the autocast path
  for (DType dt : dtypes) {
    Generator gen(seed);
    // kBf16 rows build their own bf16 samples (they know which inputs are activations);
    // kLowp rows get their f32 samples with the two operands rounded to bf16.
    const bool lowp_operands = dt == DType::bf16 && !(def.flags & kBf16);
    std::vector<Sample> samples = def.impl->samples(lowp_operands ? DType::f32 : dt, gen);
    for (auto& s : samples) {
      if (lowp_operands)  // operands in bf16; biases and other inputs stay f32
        for (size_t i = 0; i < s.in.size() && i < 2; ++i)
          if (s.in[i].defined() && s.in[i].dtype() == DType::f32) s.in[i] = s.in[i].to(DType::bf16);
      OpCall ref_call{def.kind, s.in, s.attrs, {}};
      std::vector<TensorSpec> specs = def.impl->meta(ref_call);
      for (auto& sp : specs) ref_call.out.push_back(empty_output(sp));
      def.impl->ref(ref_call);
      for (auto& k : def.optimised) {
        CheckResult r{def.name, k.name, s.label, dtype_name(dt)};
        for (int threads : {1, 2}) {
          omp_set_num_threads(threads);
          OpCall call{def.kind, s.in, s.attrs, {}};
          for (auto& sp : specs) call.out.push_back(guarded_empty(sp));
          if (const char* why = k.supports(call)) {
            r.skipped = true;
            r.message = std::string("declined: ") + why;
            break;
          }
          k.run(call);
          for (size_t o = 0; o < call.out.size() && r.ok; ++o) {
            if (!guard_intact(call.out[o])) {
              r.ok = false;
              r.message = fmt::format("output {} written past its end ({} threads)", o, threads);
            } else if (std::string m = compare(call.out[o], ref_call.out[o],
                                               def.flags & kExact ? Tolerance{0, 0} : tolerance_for(specs[o].dtype));
                       !m.empty()) {
              r.ok = false;
              r.message = fmt::format("output {} ({} threads): {}", o, threads, m);
            }
          }
          if (!r.ok) break;
        }
        out.push_back(r);
      }
    }
  }
  omp_set_num_threads(saved_threads);
  return out;
}

std::string gradcheck(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
                      const std::vector<Tensor>& inputs, uint64_t seed, int max_coords) {
  const double eps = 1e-6, atol = 1e-5, rtol = 1e-3;
  Generator gen(seed);
  // Leaf copies of the perturbed inputs.
  std::vector<Tensor> x(inputs.size());
  std::vector<int> idx;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    x[i] = inputs[i];
    if (inputs[i].dtype() == DType::f64 && inputs[i].requires_grad()) {
      idx.push_back(int(i));
    }
  }
  if (idx.empty()) return "";
  // Random weights for each output make the loss sensitive to transposition bugs.
  std::vector<Tensor> outs;
  {
    NoGrad ng;
    outs = f(x);
  }
  std::vector<Tensor> weights;
  for (auto& o : outs) weights.push_back(o.defined() && o.dtype() == DType::f64 ? randn(o.shape(), DType::f64, &gen) : Tensor());
  auto loss_of = [&](const std::vector<Tensor>& xs) {
    std::vector<Tensor> ys = f(xs);
    Tensor loss = scalar_tensor(0.0, DType::f64);
    for (size_t k = 0; k < ys.size(); ++k)
      if (weights[k].defined()) loss = loss + sum(ys[k] * weights[k]);
    return loss;
  };
  std::vector<Tensor> leaves;
  for (int i : idx) leaves.push_back(x[size_t(i)]);
  Tensor loss = loss_of(x);
  if (!loss.requires_grad()) return "the output does not depend on any input that requires grad";
  std::vector<Tensor> analytic = grad(loss, leaves);

  NoGrad ng;
  // Each probed coordinate costs two forwards: large samples probe fewer of them, and
  // every input not probed in full also gets a directional derivative along a random
  // unit vector (PyTorch's fast gradcheck), which involves each of its elements.
  int64_t total = 0;
  for (int i : idx) total += x[size_t(i)].numel();
  for (auto& o : outs) total += o.defined() ? o.numel() : 0;
  int coords_per_input = max_coords;
  if (total > kLargeSample) coords_per_input = std::max(kMinCoords, int(int64_t(max_coords) * kLargeSample / total));
  std::string worst_msg;
  double worst = 0;
  auto judge = [&](double num, double ana, const std::string& where) {
    double err = std::abs(num - ana);
    double excess = err - (atol + rtol * std::abs(num));
    if (std::isnan(err)) excess = INFINITY;
    if (excess > worst) {
      worst = excess;
      worst_msg = fmt::format("{}: autograd {:.9g}, finite differences {:.9g}", where, ana, num);
    }
  };
  for (size_t j = 0; j < idx.size(); ++j) {
    int i = idx[j];
    Tensor base = x[size_t(i)];
    Tensor pert = base.detach().contiguous().clone();  // perturbed copy, contiguous
    int64_t n = pert.numel();
    std::vector<int64_t> coords;
    if (n <= coords_per_input) {
      for (int64_t c = 0; c < n; ++c) coords.push_back(c);
    } else {
      coords = {0, n - 1};
      while (int(coords.size()) < coords_per_input) coords.push_back(int64_t(gen.next_u64() % uint64_t(n)));
    }
    std::vector<double> ga = analytic[j].defined() ? analytic[j].contiguous().to_vector() : std::vector<double>(size_t(n), 0.0);
    double* p = pert.data_ptr<double>();
    std::vector<Tensor> xs = x;
    xs[size_t(i)] = pert;
    for (int64_t c : coords) {
      double orig = p[c];
      p[c] = orig + eps;
      double lp = loss_of(xs).item();
      p[c] = orig - eps;
      double lm = loss_of(xs).item();
      p[c] = orig;
      judge((lp - lm) / (2 * eps), ga[size_t(c)], fmt::format("input {} element {}", i, c));
    }
    if (int64_t(coords.size()) < n) {
      std::vector<double> u = randn({n}, DType::f64, &gen).to_vector(), orig(p, p + n);
      double norm = 0, ana = 0;
      for (double v : u) norm += v * v;
      for (int64_t c = 0; c < n; ++c) u[size_t(c)] /= std::sqrt(norm), ana += ga[size_t(c)] * u[size_t(c)];
      for (int64_t c = 0; c < n; ++c) p[c] = orig[size_t(c)] + eps * u[size_t(c)];
      double lp = loss_of(xs).item();
      for (int64_t c = 0; c < n; ++c) p[c] = orig[size_t(c)] - eps * u[size_t(c)];
      double lm = loss_of(xs).item();
      std::copy(orig.begin(), orig.end(), p);
      judge((lp - lm) / (2 * eps), ana, fmt::format("input {} along a random direction", i));
    }
  }
  return worst_msg;
}

std::vector<CheckResult> check_gradients(const OpDef& def, uint64_t seed) {
  std::vector<CheckResult> out;
  if (!(def.flags & kDiff) || !def.impl->samples) return out;
  Generator gen(seed);
  std::vector<Sample> samples = def.impl->samples(DType::f64, gen);
  for (auto& s : samples) {
    CheckResult r{def.name, "grad", s.label, "f64"};
    if (!s.gradcheck) {
      r.skipped = true;
      r.message = "excluded from gradcheck by the op's samples (a step function)";
      out.push_back(r);
      continue;
    }
    std::vector<Tensor> in;
    std::vector<int> which = s.grad_inputs;
    if (which.empty())
      for (size_t i = 0; i < s.in.size(); ++i)
        if (s.in[i].defined() && s.in[i].dtype() == DType::f64) which.push_back(int(i));
    for (size_t i = 0; i < s.in.size(); ++i) {
      Tensor t = s.in[i];
      if (std::find(which.begin(), which.end(), int(i)) != which.end()) {
        t = t.detach();
        t.requires_grad_(true);
      }
      in.push_back(t);
    }
    bool f64_out = true;
    {
      NoGrad ng;
      OpCall probe{def.kind, in, s.attrs, {}};
      if (!(def.flags & kView))
        for (auto& sp : def.impl->meta(probe)) f64_out = f64_out && (sp.dtype == DType::f64 || !is_floating(sp.dtype));
    }
    if (!f64_out) {
      r.skipped = true;
      r.message = "output is not f64";
      out.push_back(r);
      continue;
    }
    try {
      r.message = gradcheck([&](const std::vector<Tensor>& xs) { return dispatch(def.kind, xs, s.attrs); }, in, seed);
      r.ok = r.message.empty();
    } catch (const std::exception& e) {
      r.ok = false;
      r.message = e.what();
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace qs::ops
