// Adam and AdamW (torch.optim 1.13, amsgrad off): one fused pass per parameter.
#include <cmath>

#include "kernels/elementwise_fns.h"
#include "qiusuo/optim/optim.h"

namespace qs::optim {

Adam::Adam(std::vector<Tensor> params, double lr, std::pair<double, double> betas, double eps, double weight_decay)
    : Adam(std::move(params), lr, betas, eps, weight_decay, false, "Adam") {}

Adam::Adam(std::vector<Tensor> params, double lr, std::pair<double, double> betas, double eps, double weight_decay,
           bool decoupled, std::string name)
    : Optimizer(std::move(params), lr, name),
      beta1_(betas.first),
      beta2_(betas.second),
      eps_(eps),
      weight_decay_(weight_decay),
      decoupled_(decoupled) {
  QS_CHECK(beta1_ >= 0 && beta1_ < 1 && beta2_ >= 0 && beta2_ < 1, "{}: betas must be in [0, 1), got ({}, {})", name,
           beta1_, beta2_);
  QS_CHECK(eps >= 0 && weight_decay >= 0, "{}: eps and weight_decay must be >= 0, got {} and {}", name, eps, weight_decay);
  declare_buffers({{"step", true}, {"exp_avg"}, {"exp_avg_sq"}});
}

void Adam::update(size_t i, const Tensor& grad) {
  Tensor& p = params_[i];
  Tensor &t = buffer(0, i), &m = buffer(1, i), &v = buffer(2, i);
  if (!t.defined()) {
    t = scalar_tensor(0.0, DType::f64);
    m = zeros(p.shape(), p.dtype());
    v = zeros(p.shape(), p.dtype());
  }
  double step = ++t.data_ptr<double>()[0];
  double bias_correction1 = 1 - std::pow(beta1_, step);
  double bias_correction2_sqrt = std::sqrt(1 - std::pow(beta2_, step));
  double step_size = lr_ / bias_correction1;
  kernels::visit_float(p.dtype(), decoupled_ ? "AdamW" : "Adam", [&]<class T>() {
    T* pp = p.data_ptr<T>();
    T* mp = m.data_ptr<T>();
    T* vp = v.data_ptr<T>();
    const T* gp = grad.data_ptr<T>();
    const T b1 = T(beta1_), b2 = T(beta2_), one_b1 = T(1 - beta1_), one_b2 = T(1 - beta2_), eps = T(eps_);
    const T l2 = decoupled_ ? T(0) : T(weight_decay_);
    const T shrink = decoupled_ ? T(1 - lr_ * weight_decay_) : T(1);
    const T bc2 = T(bias_correction2_sqrt), neg_step = T(-step_size);
    int64_t n = p.numel();
#pragma omp parallel for simd if (n > 32768)
    for (int64_t k = 0; k < n; ++k) {
      T g = gp[k] + l2 * pp[k];  // no branch: the loop must vectorise (see CMakeLists: -fno-math-errno)
      T w = pp[k] * shrink;
      T mk = mp[k] * b1 + one_b1 * g;
      T vk = vp[k] * b2 + one_b2 * g * g;
      mp[k] = mk;
      vp[k] = vk;
      pp[k] = w + neg_step * (mk / (std::sqrt(vk) / bc2 + eps));
    }
  });
}

}  // namespace qs::optim
