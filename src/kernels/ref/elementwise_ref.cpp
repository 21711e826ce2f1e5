// Reference elementwise kernels: for each output element (row-major), read the
// broadcast inputs through their strides, evaluate the formula in double, store.
#include "kernels/elementwise_fns.h"
#include "kernels/ref/ref_kernels.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {
struct Reader {
  const void* base;
  DType dtype;
  Shape strides;
  StridedIndex ix;
  Reader(const Tensor& t, const Shape& out_shape)
      : base(t.raw_data()), dtype(t.dtype()), strides(broadcast_strides(t, out_shape)), ix(out_shape, strides) {}
  double operator()(int64_t i) const { return load_as_double(base, dtype, ix.offset(i)); }
};
}  // namespace

template <class Fn> void unary_ref(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  Reader x(c.in[0], out.shape());
  for (int64_t i = 0; i < out.numel(); ++i) store_from_double(out.raw_data(), out.dtype(), i, Fn::f(x(i)));
}

void gelu_ref(ops::OpCall& c) {
  if (c.attrs.s("approximate") == "tanh")
    unary_ref<gelu_tanh_fn>(c);
  else
    unary_ref<gelu_erf_fn>(c);
}

template <class Fn> void binary_ref(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  Reader a(c.in[0], out.shape()), b(c.in[1], out.shape());
  for (int64_t i = 0; i < out.numel(); ++i) store_from_double(out.raw_data(), out.dtype(), i, Fn::f(a(i), b(i)));
}

template <class Fn> void compare_ref(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  Reader a(c.in[0], out.shape()), b(c.in[1], out.shape());
  for (int64_t i = 0; i < out.numel(); ++i) store_from_double(out.raw_data(), out.dtype(), i, Fn::f(a(i), b(i)) ? 1 : 0);
}

void where_ref(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  Reader cond(c.in[0], out.shape()), a(c.in[1], out.shape()), b(c.in[2], out.shape());
  for (int64_t i = 0; i < out.numel(); ++i)
    store_from_double(out.raw_data(), out.dtype(), i, cond(i) != 0 ? a(i) : b(i));
}

void clamp_ref(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  Reader x(c.in[0], out.shape());
  bool has_lo = c.attrs.has("min"), has_hi = c.attrs.has("max");
  double lo = c.attrs.f("min", 0), hi = c.attrs.f("max", 0);
  for (int64_t i = 0; i < out.numel(); ++i) {
    double v = x(i);
    if (has_lo && v < lo) v = lo;  // torch.clamp: min first, then max
    if (has_hi && v > hi) v = hi;
    store_from_double(out.raw_data(), out.dtype(), i, v);
  }
}

void copy_ref(ops::OpCall& c) {
  const Tensor& out = c.out[0];
  Reader x(c.in[0], out.shape());
  for (int64_t i = 0; i < out.numel(); ++i) store_from_double(out.raw_data(), out.dtype(), i, x(i));
}

#define QS_INST_UNARY(name) template void unary_ref<name##_fn>(ops::OpCall&);
QS_INST_UNARY(neg) QS_INST_UNARY(exp) QS_INST_UNARY(log) QS_INST_UNARY(sqrt) QS_INST_UNARY(rsqrt)
QS_INST_UNARY(abs) QS_INST_UNARY(relu) QS_INST_UNARY(sigmoid) QS_INST_UNARY(tanh) QS_INST_UNARY(silu)
QS_INST_UNARY(sin) QS_INST_UNARY(cos)
#undef QS_INST_UNARY
#define QS_INST_BINARY(name) template void binary_ref<name##_fn>(ops::OpCall&);
QS_INST_BINARY(add) QS_INST_BINARY(sub) QS_INST_BINARY(mul) QS_INST_BINARY(div) QS_INST_BINARY(pow)
QS_INST_BINARY(maximum) QS_INST_BINARY(minimum)
#undef QS_INST_BINARY
#define QS_INST_CMP(name) template void compare_ref<name##_fn>(ops::OpCall&);
QS_INST_CMP(eq) QS_INST_CMP(ne) QS_INST_CMP(lt) QS_INST_CMP(le) QS_INST_CMP(gt) QS_INST_CMP(ge)
#undef QS_INST_CMP

}  // namespace qs::kernels
