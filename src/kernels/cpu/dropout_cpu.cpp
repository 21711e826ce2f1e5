// Optimised dropout: the reference's mask (kernels/dropout_mask.h) over a contiguous
// copy of x, elements split across threads.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/dropout_mask.h"
#include "kernels/elementwise_fns.h"

namespace qs::kernels {

namespace {

const char* dropout_supports(const ops::OpCall& c) {
  DType t = c.in[0].dtype();
  if (t != DType::f32 && t != DType::f64) return "only f32/f64";
  return nullptr;
}

void dropout_cpu(ops::OpCall& c) {
  Tensor x = c.in[0].contiguous();
  double p = c.attrs.f("p");
  uint64_t seed = uint64_t(c.attrs.i("seed"));
  visit_float(x.dtype(), "dropout", [&]<class T>() {
    const T* xp = x.data_ptr<T>();
    T* o = c.out[0].data_ptr<T>();
    T scale = T(1.0 / (1.0 - p));
    int64_t n = x.numel();
#pragma omp parallel for if (n > 32768)
    for (int64_t i = 0; i < n; ++i) o[i] = dropout_keep(seed, i, p) ? xp[i] * scale : T(0);
  });
}

}  // namespace

void register_dropout_cpu(ops::KernelTable& t) { ops::add_kernel(t, ops::OpKind::dropout, {"cpu", dropout_supports, dropout_cpu}); }

}  // namespace qs::kernels
