// Optimised layer_norm / rms_norm forward: contiguous rows across threads
// (kernels/norm_rows.h); the backward shares the same rows.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/elementwise_fns.h"
#include "kernels/norm_rows.h"

namespace qs::kernels {

namespace {

const char* norm_supports(const ops::OpCall& c) {
  DType t = c.in[0].dtype();
  if (t != DType::f32 && t != DType::f64) return "only f32/f64";
  return nullptr;
}

template <bool Rms> void norm_cpu(ops::OpCall& c) {
  Tensor x = c.in[0].contiguous();
  Tensor w = c.in[1].defined() ? c.in[1].contiguous() : Tensor();
  Tensor b = !Rms && c.in[2].defined() ? c.in[2].contiguous() : Tensor();
  int64_t n = shape_numel(c.attrs.ints("normalized_shape")), m = n == 0 ? 0 : x.numel() / n;
  visit_float(x.dtype(), Rms ? "rms_norm" : "layer_norm", [&]<class T>() {
    auto p = [](const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
    norm_forward<T>(p(x), p(w), p(b), c.out[0].data_ptr<T>(), m, n, c.attrs.f("eps"), Rms);
  });
}

}  // namespace

void register_norm_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::layer_norm, {"cpu", norm_supports, norm_cpu<false>});
  ops::add_kernel(t, ops::OpKind::rms_norm, {"cpu", norm_supports, norm_cpu<true>});
}

}  // namespace qs::kernels
