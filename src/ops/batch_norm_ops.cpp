// Batch normalisation: the primitive (no input is written), its backward primitive,
// samples and the functional API, which updates the running statistics itself.
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "qiusuo/autograd.h"

namespace qs::ops {

namespace {

// The per-channel vectors (weight, bias, running and saved statistics) are in x's dtype,
// or f32 for a bf16 x (autocast: bf16 activations, f32 parameters and statistics).
DType channel_dtype(const Tensor& x) { return x.dtype() == DType::bf16 ? DType::f32 : x.dtype(); }

void check_channel_vector(const Tensor& t, const Tensor& x, const char* what) {
  if (!t.defined()) return;
  QS_CHECK(t.dim() == 1 && t.size(0) == x.size(1), "batch_norm: {} must be [{}] (one value per channel), got {}", what,
           x.size(1), shape_str(t.shape()));
  QS_CHECK(t.dtype() == channel_dtype(x), "batch_norm: {} has dtype {} but x has {} (per-channel vectors of a bf16 x "
           "are f32)", what, dtype_name(t.dtype()), dtype_name(x.dtype()));
}

std::vector<TensorSpec> batch_norm_meta(const OpCall& c) {
  const Tensor& x = c.in[0];
  QS_CHECK(x.dim() >= 2 && x.is_floating_point(), "batch_norm: expected a floating-point x [N, C, ...], got {} {}",
           dtype_name(x.dtype()), shape_str(x.shape()));
  const char* names[] = {"x", "weight", "bias", "running_mean", "running_var"};
  for (int i = 1; i < 5; ++i) check_channel_vector(c.in[size_t(i)], x, names[i]);
  int64_t C = x.size(1);
  if (c.attrs.b("training")) {
    QS_CHECK(C == 0 || x.numel() / C > 1, "batch_norm: training needs more than one value per channel, got input {}",
             shape_str(x.shape()));
  } else {
    QS_CHECK(c.in[3].defined() && c.in[4].defined(), "batch_norm: evaluation mode needs running_mean and running_var");
  }
  return {{x.shape(), x.dtype()}, {{C}, channel_dtype(x)}, {{C}, channel_dtype(x)}};
}

std::vector<TensorSpec> batch_norm_backward_meta(const OpCall& c) {
  const Tensor &gy = c.in[0], &x = c.in[1];
  QS_CHECK(gy.shape() == x.shape() && gy.dtype() == x.dtype(), "batch_norm_backward: gradient {} {} does not match x "
           "{} {}", dtype_name(gy.dtype()), shape_str(gy.shape()), dtype_name(x.dtype()), shape_str(x.shape()));
  for (int i = 2; i < 5; ++i) check_channel_vector(c.in[size_t(i)], x, "a per-channel input");
  const Tensor& y = c.in[5];
  QS_CHECK(!y.defined() || (y.shape() == x.shape() && y.dtype() == x.dtype()), "batch_norm_backward: the fused "
           "ReLU's output {} {} does not match x {} {}", dtype_name(y.dtype()), shape_str(y.shape()),
           dtype_name(x.dtype()), shape_str(x.shape()));
  int64_t C = x.size(1);
  return {{x.shape(), x.dtype()}, {{C}, channel_dtype(x)}, {{C}, channel_dtype(x)}};
}

// [C] -> [1, C, 1, ...] to broadcast against x.
Tensor per_channel(const Tensor& v, int64_t rank) {
  Shape s(size_t(rank), 1);
  s[1] = v.size(0);
  return v.reshape(s);
}

// The engine passes zeros for outputs that got no gradient; a [C] vector is cheap to test.
bool any_nonzero(const Tensor& t) {
  if (!t.defined()) return false;
  for (double v : t.to_vector())
    if (v != 0.0) return true;
  return false;
}

std::vector<Tensor> batch_norm_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const Tensor &x = c.in[0], &w = c.in[1], &mean = c.out[1], &invstd = c.out[2];
  // In x's dtype: the engine gives each output's gradient that output's dtype.
  Tensor gy = g[0].defined() ? g[0].contiguous() : zeros_like(x);
  Tensor y = c.attrs.b("relu", false) ? c.out[0] : Tensor();  // the fused ReLU's mask
  auto r = dispatch(OpKind::batch_norm_backward, {gy, x, w, mean, invstd, y}, c.attrs);
  Tensor gx = r[0];
  // In training save_mean and save_invstd are functions of x too.
  if (c.attrs.b("training") && c.needs_grad[0]) {
    double M = double(x.numel() / x.size(1));
    const bool m_used = any_nonzero(g[1]), is_used = any_nonzero(g[2]);
    if (m_used || is_used) gx = gx.to(mean.dtype());  // a bf16 x has f32 statistics: add in f32
    if (m_used) gx = gx + per_channel(g[1] / M, x.dim());
    if (is_used) {
      Tensor k = neg(invstd * invstd * invstd * g[2]) / M;
      gx = gx + (x.to(mean.dtype()) - per_channel(mean, x.dim())) * per_channel(k, x.dim());
    }
    gx = gx.to(x.dtype());
  }
  return {c.needs_grad[0] ? gx : Tensor(), c.needs_grad[1] ? r[1] : Tensor(), c.needs_grad[2] ? r[2] : Tensor(),
          Tensor(), Tensor()};
}

struct BnCase {
  Shape x;
  bool training, affine;
  const char* label;
  bool transposed = false, relu = false;
};

std::vector<BnCase> bn_cases(DType dt) {
  std::vector<BnCase> cs = {{{4, 3, 5}, true, true, "1d training"},
                            {{2, 3, 5, 5}, true, true, "2d training"},
                            {{2, 3, 5, 5}, false, true, "2d eval"},
                            {{7, 3}, true, false, "no spatial, no affine"},
                            {{3, 2, 3, 4, 5}, true, true, "3d training"},
                            {{3, 4, 3, 3}, true, true, "strided x", true},
                            {{3, 4, 3, 3}, false, false, "eval strided no affine", true},
                            {{3, 5, 7}, true, true, "fused relu", false, true},
                            {{2, 3, 3, 4, 5}, false, false, "eval fused relu no affine", false, true},
                            {{3, 4, 3, 3}, true, true, "strided x fused relu", true, true}};
  if (dt == DType::f32) {
    cs.push_back({{32, 32, 28, 28}, true, true, "cnn bn1 (32 images)"});
    cs.push_back({{32, 64, 14, 14}, true, true, "cnn bn2 + relu (32 images)", false, true});
    cs.push_back({{32, 32, 28, 28}, false, true, "cnn bn1 eval"});
    cs.push_back({{2, 16, 32, 32, 32}, true, true, "cnn3d bn1 (2 volumes)"});
  }
  if (dt == DType::bf16) {  // the CNNs' layers under autocast (planes of 784, 196 and 49)
    cs.push_back({{8, 32, 28, 28}, true, true, "cnn bn1 + relu (8 images)", false, true});
    cs.push_back({{8, 64, 14, 14}, true, true, "cnn bn2 (8 images)"});
    cs.push_back({{8, 128, 7, 7}, true, true, "cnn bn3 + relu (8 images)", false, true});
    cs.push_back({{8, 32, 28, 28}, false, true, "cnn bn1 eval (8 images)", false, true});
    cs.push_back({{2, 3, 9, 13, 11}, true, true, "3d planes of 1287 + relu", false, true});
    cs.push_back({{2, 3, 9, 13, 11}, true, false, "3d planes of 1287"});
    cs.push_back({{2, 3, 16, 16, 32}, true, true, "3d planes of 16 KiB (walked by channel) + relu", false, true});
  }
  return cs;
}

// bf16 (autocast): a bf16 x with f32 per-channel vectors.
std::vector<Sample> batch_norm_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  const DType cdt = dt == DType::bf16 ? DType::f32 : dt;
  for (auto& k : bn_cases(dt)) {
    int64_t C = k.x[1];
    Tensor x = k.transposed ? sample_transposed(k.x, dt, gen) : sample_uniform(k.x, dt, gen);
    Tensor w = k.affine ? sample_uniform({C}, cdt, gen, 0.5, 1.5) : Tensor();
    Tensor b = k.affine ? sample_uniform({C}, cdt, gen) : Tensor();
    Tensor rm = sample_uniform({C}, cdt, gen, -0.5, 0.5), rv = sample_uniform({C}, cdt, gen, 0.5, 2.0);
    Attrs a = Attrs().set("training", k.training).set("momentum", 0.1).set("eps", 1e-5);
    if (k.relu) a.set("relu", true);
    s.push_back({{x, w, b, rm, rv}, a, k.label, k.affine ? std::vector<int>{0, 1, 2} : std::vector<int>{0}});
  }
  return s;
}

// Backward samples: save_mean / save_invstd from a reference forward run.
std::vector<Sample> batch_norm_backward_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (auto& f : batch_norm_samples(dt, gen)) {
    OpCall fwd{OpKind::batch_norm, f.in, f.attrs, {}};
    for (auto& sp : batch_norm_meta(fwd)) fwd.out.push_back(empty(sp.shape, sp.dtype));
    kernels::batch_norm_ref(fwd);
    Tensor y = f.attrs.b("relu", false) ? fwd.out[0] : Tensor();
    s.push_back({{sample_uniform(f.in[0].shape(), dt, gen), f.in[0], f.in[1], fwd.out[1], fwd.out[2], y}, f.attrs,
                 f.label, {0}});
  }
  return s;
}

}  // namespace

const OpImpl batch_norm_impl{batch_norm_meta, kernels::batch_norm_ref, batch_norm_backward, batch_norm_samples, nullptr};
const OpImpl batch_norm_backward_impl{batch_norm_backward_meta, kernels::batch_norm_backward_ref, nullptr,
                                      batch_norm_backward_samples, nullptr};

}  // namespace qs::ops

namespace qs {

namespace {
Tensor batch_norm_functional(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                             const Tensor& bias, bool training, double momentum, double eps, bool relu) {
  Attrs a = Attrs().set("training", training).set("momentum", momentum).set("eps", eps);
  if (relu) a.set("relu", true);
  auto r = ops::dispatch(ops::OpKind::batch_norm, {x, weight, bias, running_mean, running_var}, a);
  if (training) {
    NoGrad ng;
    Tensor rm = running_mean, rv = running_var;  // handles: copy_ writes the caller's storage
    if (running_mean.defined())
      rm.copy_(running_mean * (1.0 - momentum) + r[1].detach().to(running_mean.dtype()) * momentum);
    if (running_var.defined()) {
      // The unbiased batch variance, recovered from invstd = 1 / sqrt(var + eps).
      double M = double(x.numel() / x.size(1));
      Tensor invstd = r[2].detach().to(DType::f64);
      Tensor var = (1.0 / (invstd * invstd) - eps) * (M / (M - 1.0));
      rv.copy_(running_var * (1.0 - momentum) + var.to(running_var.dtype()) * momentum);
    }
  }
  return r[0];
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  return batch_norm_functional(x, running_mean, running_var, weight, bias, training, momentum, eps, false);
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, bool training, double momentum, double eps) {
  return batch_norm_functional(x, running_mean, running_var, weight, bias, training, momentum, eps, true);
}

}  // namespace qs
