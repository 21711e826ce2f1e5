// Reference fake quantisation (src/kernels/fake_quant.h has the formulas): one logical
// element at a time, in row-major order, through quant_math.h's quantize_value.
#include "kernels/fake_quant.h"
#include "kernels/kernel.h"
#include "tensor/strided.h"

namespace qs::kernels {

using quant::FakeQuantParams;

namespace {
FakeQuantParams params_of(const ops::OpCall& c, int first) {
  return FakeQuantParams(c.in[size_t(first)], c.in[size_t(first) + 1], c.in[size_t(first) + 2], c.attrs.i("axis"),
                         c.attrs.i("qmin"), c.attrs.i("qmax"));
}
double load(const Tensor& t, const StridedIndex& ix, int64_t i) { return load_as_double(t.raw_data(), t.dtype(), ix.offset(i)); }
}  // namespace

void fake_quantize_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &out = c.out[0];
  FakeQuantParams p = params_of(c, 0);
  StridedIndex ix(x.shape(), x.strides());
  bool f64 = x.dtype() == DType::f64;
  for (int64_t i = 0; i < x.numel(); ++i) {
    size_t ch = size_t(p.channel(i));
    int32_t zp = p.zp[ch];
    int32_t q = quant::quantize_value(float(load(x, ix, i)), p.inv_s[ch], zp, p.qmin, p.qmax);
    double y = f64 ? double(q - zp) * p.scale[ch] : double(quant::dequantize_value(q, p.scale_f[ch], zp));
    store_from_double(out.raw_data(), out.dtype(), i, y);
  }
}

void fake_quantize_backward_ref(ops::OpCall& c) {
  const Tensor &dy = c.in[0], &x = c.in[1];
  FakeQuantParams p = params_of(c, 1);
  StridedIndex ixd(dy.shape(), dy.strides()), ixx(x.shape(), x.strides());
  for (int64_t i = 0; i < x.numel(); ++i) {
    size_t ch = size_t(p.channel(i));
    int32_t zp = p.zp[ch];
    double g = load(dy, ixd, i), xv = load(x, ixx, i);
    int64_t q_raw = quant::unsaturated_q(float(xv), p.inv_s[ch], zp);
    bool inside = p.qmin <= q_raw && q_raw <= p.qmax;
    double q = double(std::clamp<int64_t>(q_raw, p.qmin, p.qmax));
    double ds = inside ? (q - zp) - xv / p.scale[ch] : q - zp;
    store_from_double(c.out[0].raw_data(), c.out[0].dtype(), i, inside ? g : 0.0);
    if (c.out[1].numel() == 0) continue;  // dx only
    store_from_double(c.out[1].raw_data(), c.out[1].dtype(), i, g * ds);
    store_from_double(c.out[2].raw_data(), c.out[2].dtype(), i, inside ? 0.0 : -g * p.scale[ch]);
  }
}

}  // namespace qs::kernels
