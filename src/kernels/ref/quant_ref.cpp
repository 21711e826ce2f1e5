// Reference integer quantisation kernels: the specification (include/qiusuo/quant/int8.h).
//   quantize:   q[i] = clamp(round_half_even(float(x[i]) * (1 / s[c])) + zp[c], qmin, qmax),  c = channel of i
//   dequantize: y[i] = float(q[i] - zp[c]) * s[c]
//   qlinear:    acc[r, n] = sum_k (xq[r, k] - x_zp) wq[n, k]                  (exact, int64 then s32)
//   qconv:      acc[n, o, p] = sum_{c, t valid} (xq[n, g C/G + c, p stride - pad + t dil] - x_zp) wq[o, c, t]
//               (padding is the real value 0, i.e. x_zp, so padded taps contribute nothing;
//               with x_from_scale each xq is first requantised, quant_epilogue.h: QInputRemap)
//   then out = dequantize_acc(acc, x_scale * w_scale[n], bias[n], relu)            (out f32)
//          or requantize(acc, x_scale * w_scale[n], bias[n], relu, 1/out_scale, ...) (out u8/s8)
// Every float step is quant_math.h's, so optimised kernels reproduce these bits exactly.
#include "kernels/quant_epilogue.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/spatial.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {

int64_t channel_of(int64_t i, const Shape& shape, int64_t axis) {
  if (axis < 0) return 0;
  int64_t inner = 1;
  for (size_t d = size_t(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
  return (i / inner) % shape[size_t(axis)];
}

int64_t load_int(const Tensor& t, int64_t offset) { return int64_t(load_as_double(t.raw_data(), t.dtype(), offset)); }

float bias_at(const Tensor& b, int64_t n) {
  return b.defined() ? float(load_as_double(b.raw_data(), DType::f32, n * b.stride(0))) : 0.0f;
}
float f32_at(const Tensor& t, int64_t i) { return float(load_as_double(t.raw_data(), DType::f32, i * t.stride(0))); }

// s32 accumulator; the meta checks keep K small enough for the exact sum to fit.
int32_t to_s32(int64_t acc) {
  QS_CHECK(acc >= INT32_MIN && acc <= INT32_MAX, "internal: integer accumulator {} overflows s32", acc);
  return int32_t(acc);
}

}  // namespace

void quantize_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &scale = c.in[1], &zp = c.in[2];
  Tensor& out = c.out[0];
  int64_t axis = c.attrs.i("axis", -1);
  int32_t lo = int32_t(c.attrs.i("qmin")), hi = int32_t(c.attrs.i("qmax"));
  StridedIndex ix(x.shape(), x.strides());
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t ch = channel_of(i, x.shape(), axis);
    float v = float(load_as_double(x.raw_data(), x.dtype(), ix.offset(i)));
    int32_t z = int32_t(load_int(zp, ch * zp.stride(0)));
    int32_t q = quant::quantize_value(v, quant::inv_scale(f32_at(scale, ch)), z, lo, hi);
    store_from_double(out.raw_data(), out.dtype(), i, double(q));
  }
}

void dequantize_ref(ops::OpCall& c) {
  const Tensor &q = c.in[0], &scale = c.in[1], &zp = c.in[2];
  int64_t axis = c.attrs.i("axis", -1);
  StridedIndex ix(q.shape(), q.strides());
  float* y = c.out[0].data_ptr<float>();
  for (int64_t i = 0; i < q.numel(); ++i) {
    int64_t ch = channel_of(i, q.shape(), axis);
    int32_t z = int32_t(load_int(zp, ch * zp.stride(0)));
    y[i] = quant::dequantize_value(int32_t(load_int(q, ix.offset(i))), f32_at(scale, ch), z);
  }
}

void qlinear_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &ws = c.in[2], &b = c.in[3];
  Tensor& out = c.out[0];
  auto epi = quant::QEpilogue::from(c.attrs);
  int64_t K = x.size(-1), N = w.size(0), rows = K == 0 ? x.numel() : x.numel() / K;
  if (K == 0) rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  StridedIndex x_ix(x.shape(), x.strides());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < N; ++n) {
      int64_t acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += (load_int(x, x_ix.offset(r * K + k)) - epi.x_zp) * load_int(w, n * w.stride(0) + k * w.stride(1));
      epi.store(to_s32(acc), epi.acc_scale(f32_at(ws, n)), bias_at(b, n), out.raw_data(), out.dtype(), r * N + n);
    }
}

void qconv_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &ws = c.in[2], &b = c.in[3];
  Tensor& out = c.out[0];
  auto epi = quant::QEpilogue::from(c.attrs);
  auto remap = quant::QInputRemap::from(c.attrs);
  ops::Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "qconv");
  int64_t O = w.size(0), G = c.attrs.i("groups", 1), Cg = s.C / G, Og = O / G;
  Tensor xc = x.contiguous(), wc = w.contiguous();
  int64_t inP = s.in_plane(), outP = s.out_plane(), kP = s.k_plane();
  std::vector<int64_t> acc(static_cast<size_t>(outP));  // exact integer sums, one per output position
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < O; ++o) {
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t ci = 0; ci < Cg; ++ci) {
        const int64_t x0 = (n * s.C + (o / Og) * Cg + ci) * inP, w0 = (o * Cg + ci) * kP;
        ops::for_each_tap(s, [&](int64_t p, int64_t i, int64_t t) {
          acc[size_t(p)] += (remap.code(int32_t(load_int(xc, x0 + i)), epi) - epi.x_zp) * load_int(wc, w0 + t);
        });
      }
      for (int64_t p = 0; p < outP; ++p)  // the output's strides: NC(spatial) or channels-last
        epi.store(to_s32(acc[size_t(p)]), epi.acc_scale(f32_at(ws, o)), bias_at(b, o), out.raw_data(), out.dtype(),
                  n * out.stride(0) + o * out.stride(1) + p * out.stride(-1));
    }
}

}  // namespace qs::kernels
