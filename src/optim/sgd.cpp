// SGD with momentum, dampening, L2 weight decay and Nesterov (torch.optim.SGD, 1.13).
#include "kernels/elementwise_fns.h"
#include "qiusuo/optim/optim.h"

namespace qs::optim {

SGD::SGD(std::vector<Tensor> params, double lr, double momentum, double dampening, double weight_decay, bool nesterov)
    : Optimizer(std::move(params), lr, "SGD"),
      momentum_(momentum),
      dampening_(dampening),
      weight_decay_(weight_decay),
      nesterov_(nesterov) {
  QS_CHECK(momentum >= 0 && weight_decay >= 0, "SGD: momentum and weight_decay must be >= 0, got {} and {}", momentum,
           weight_decay);
  QS_CHECK(!nesterov || (momentum > 0 && dampening == 0), "SGD: nesterov needs momentum > 0 and dampening = 0");
  declare_buffers({{"momentum_buffer"}});
}

// Written without branches in the loops so they vectorise: on the first step the buffer
// is zero and its factor 0 (buf = d), and the Nesterov choice is a pair of factors.
void SGD::update(size_t i, const Tensor& grad) {
  Tensor& p = params_[i];
  Tensor& buf = buffer(0, i);
  bool first = !buf.defined();
  if (momentum_ != 0 && first) buf = zeros_like(p);
  kernels::visit_float(p.dtype(), "SGD", [&]<class T>() {
    T* pp = p.data_ptr<T>();
    const T* gp = grad.data_ptr<T>();
    const T wd = T(weight_decay_), neg_lr = T(-lr_);
    int64_t n = p.numel();
    if (momentum_ == 0) {
#pragma omp parallel for simd if (n > 32768)
      for (int64_t k = 0; k < n; ++k) pp[k] += neg_lr * (gp[k] + wd * pp[k]);
      return;
    }
    T* bp = buf.data_ptr<T>();
    const T mom = first ? T(0) : T(momentum_), keep = first ? T(1) : T(1 - dampening_);
    const T from_d = nesterov_ ? T(1) : T(0), from_b = nesterov_ ? T(momentum_) : T(1);
#pragma omp parallel for simd if (n > 32768)
    for (int64_t k = 0; k < n; ++k) {
      T d = gp[k] + wd * pp[k];
      T b = mom * bp[k] + keep * d;
      bp[k] = b;
      pp[k] += neg_lr * (from_d * d + from_b * b);
    }
  });
}

}  // namespace qs::optim
