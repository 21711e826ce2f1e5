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

void SGD::update(size_t i, const Tensor& grad) {
  Tensor& p = params_[i];
  Tensor& buf = buffer(0, i);
  bool first = !buf.defined();
  if (momentum_ != 0 && first) buf = empty_like(p);
  kernels::visit_float(p.dtype(), "SGD", [&]<class T>() {
    T* pp = p.data_ptr<T>();
    const T* gp = grad.data_ptr<T>();
    T* bp = momentum_ != 0 ? buf.data_ptr<T>() : nullptr;
    const T wd = T(weight_decay_), mom = T(momentum_), keep = T(1 - dampening_), neg_lr = T(-lr_);
    const bool nesterov = nesterov_;
    int64_t n = p.numel();
#pragma omp parallel for simd if (n > 32768)
    for (int64_t k = 0; k < n; ++k) {
      T d = wd != T(0) ? gp[k] + wd * pp[k] : gp[k];
      if (bp) {
        T b = first ? d : mom * bp[k] + keep * d;
        bp[k] = b;
        d = nesterov ? d + mom * b : b;
      }
      pp[k] += neg_lr * d;
    }
  });
}

}  // namespace qs::optim
