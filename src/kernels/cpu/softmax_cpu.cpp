// Optimised softmax / log_softmax: the input made contiguous, seen as [O, N, I], and
// reduced a row (or a tile of columns) at a time across threads (kernels/softmax_rows.h).
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/elementwise_fns.h"
#include "kernels/softmax_rows.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {

const char* softmax_supports(const ops::OpCall& c) {
  DType t = c.in[0].dtype();
  if (t != DType::f32 && t != DType::f64) return "only f32/f64";
  if (c.in[0].dim() == 0) return "0-d input (the reference handles it)";
  return nullptr;
}

template <bool Log> void softmax_cpu(ops::OpCall& c) {
  Tensor x = c.in[0].contiguous();
  auto b = softmax_block(x.shape(), wrap_dim(c.attrs.i("dim"), x.dim(), "softmax"));
  visit_float(x.dtype(), "softmax", [&]<class T>() {
    softmax_forward<T, Log>(x.data_ptr<T>(), c.out[0].data_ptr<T>(), b);
  });
}

}  // namespace

void register_softmax_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::softmax, {"cpu", softmax_supports, softmax_cpu<false>});
  ops::add_kernel(t, ops::OpKind::log_softmax, {"cpu", softmax_supports, softmax_cpu<true>});
}

}  // namespace qs::kernels
