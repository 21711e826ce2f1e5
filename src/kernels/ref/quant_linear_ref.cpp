// Reference kernels of the LM-side quantised linears (include/qiusuo/quant/int8.h).
//   dynamic_linear: per row r (granularity token) or for the whole x (tensor):
//     (s, z) = dynamic_qparams(min x, max x, qmax = reduce_range ? 127 : 255)       (u8 asymmetric)
//     q[r, k] = quantize_value(x[r, k], 1/s, z, 0, qmax)
//     acc[r, n] = sum_k (q[r, k] - z) wq[n, k]                                        (exact)
//     y[r, n] = dequantize_acc(acc, s * w_scale[n], bias[n], no relu)                (bit-exact twin)
//   woq_linear: y[r, n] = bias[n] + sum_k x[r, k] (q[n, k] scale[n, k / group])     (double; the
//     optimised kernel sums in f32 in another order: equal within f32 tolerance only)
//     int4: q[n, k] is the low nibble of byte w[n, k / 2] for even k, the high one for odd k,
//     as two's complement in [-8, 7].
//     activations "q8": x replaced first by its q8 blocks, codes times scale (quant_math.h:
//     blocks of 32 along K, as llama.cpp's Q8_0); "f32" (the default) uses x as it is.
#include <limits>
#include <vector>

#include "kernels/quant_epilogue.h"
#include "kernels/quant_math.h"
#include "kernels/ref/ref_kernels.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {
double at(const Tensor& t, int64_t offset) { return load_as_double(t.raw_data(), t.dtype(), offset); }
float bias_at(const Tensor& b, int64_t n) { return b.defined() ? float(at(b, n * b.stride(0))) : 0.0f; }
}  // namespace

void dynamic_linear_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &ws = c.in[2], &b = c.in[3];
  float* y = c.out[0].data_ptr<float>();
  bool per_token = !c.attrs.has("granularity") || c.attrs.s("granularity") == "token";
  int32_t qmax = c.attrs.b("reduce_range", false) ? 127 : 255;
  int64_t K = x.size(-1), N = w.size(0), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  StridedIndex ix(x.shape(), x.strides());
  auto x_at = [&](int64_t r, int64_t k) { return float(at(x, ix.offset(r * K + k))); };
  auto range = [&](int64_t r0, int64_t r1) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t k = 0; k < K; ++k) lo = std::min(lo, x_at(r, k)), hi = std::max(hi, x_at(r, k));
    return quant::dynamic_qparams(lo, hi, qmax);
  };
  quant::DynamicQParams whole = per_token ? quant::DynamicQParams{} : range(0, rows);
  std::vector<int32_t> q(static_cast<size_t>(K));
  for (int64_t r = 0; r < rows; ++r) {
    quant::DynamicQParams p = per_token ? range(r, r + 1) : whole;
    for (int64_t k = 0; k < K; ++k) q[size_t(k)] = quant::quantize_value(x_at(r, k), quant::inv_scale(p.scale), p.zp, 0, qmax);
    for (int64_t n = 0; n < N; ++n) {
      int64_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += int64_t(q[size_t(k)] - p.zp) * int64_t(at(w, n * w.stride(0) + k * w.stride(1)));
      float acc_scale = p.scale * float(at(ws, n * ws.stride(0)));
      y[r * N + n] = quant::dequantize_acc(int32_t(acc), acc_scale, bias_at(b, n), false);
    }
  }
}

void woq_linear_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &s = c.in[2], &b = c.in[3];
  float* y = c.out[0].data_ptr<float>();
  bool int4 = c.attrs.i("bits", 8) == 4;
  int64_t group = int4 ? c.attrs.i("group_size") : 0;
  int64_t K = x.size(-1), N = w.size(0), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  StridedIndex ix(x.shape(), x.strides());
  auto weight = [&](int64_t n, int64_t k) {
    if (!int4) return at(w, n * w.stride(0) + k * w.stride(1)) * at(s, n * s.stride(0));
    int64_t byte = int64_t(at(w, n * w.stride(0) + (k / 2) * w.stride(1)));
    int64_t nib = k % 2 == 0 ? byte & 15 : byte >> 4;
    return double(nib >= 8 ? nib - 16 : nib) * at(s, n * s.stride(0) + (k / group) * s.stride(1));
  };
  const bool q8 = c.attrs.has("activations") && c.attrs.s("activations") == "q8";
  std::vector<float> xr(static_cast<size_t>(K));
  std::vector<int8_t> code(static_cast<size_t>(quant::kActBlock));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < K; ++k) xr[size_t(k)] = float(at(x, ix.offset(r * K + k)));
    if (q8)  // each block of x becomes its codes times its scale (quant_math.h)
      for (int64_t k0 = 0; k0 < K; k0 += quant::kActBlock) {
        const int64_t len = std::min(quant::kActBlock, K - k0);
        const float d = quant::act_block_scale(&xr[size_t(k0)], len);
        quant::quantize_act_block(&xr[size_t(k0)], len, d, code.data());
        for (int64_t i = 0; i < len; ++i) xr[size_t(k0 + i)] = float(double(code[size_t(i)]) * d);
      }
    for (int64_t n = 0; n < N; ++n) {
      double acc = b.defined() ? at(b, n * b.stride(0)) : 0.0;
      for (int64_t k = 0; k < K; ++k) acc += double(xr[size_t(k)]) * weight(n, k);
      y[r * N + n] = float(acc);
    }
  }
}

}  // namespace qs::kernels
