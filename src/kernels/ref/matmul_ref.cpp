// Reference matrix products: C[b, m, n] = sum_k A[b, m, k] B[b, k, n], in double.
#include <cmath>

#include "kernels/matmul_layout.h"
#include "kernels/ref/ref_kernels.h"
#include "tensor/strided.h"

namespace qs::kernels {

void matmul_ref(ops::OpCall& c) {
  const Tensor &a = c.in[0], &b = c.in[1];
  Tensor& out = c.out[0];
  MatmulLayout L(c);
  for (int64_t ib = 0; ib < L.batches; ++ib) {
    int64_t ao = L.a_offset(ib), bo = L.b_offset(ib);
    for (int64_t m = 0; m < L.M; ++m)
      for (int64_t n = 0; n < L.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < L.K; ++k)
          acc += load_as_double(a.raw_data(), a.dtype(), ao + m * L.a_row() + k * L.a_col()) *
                 load_as_double(b.raw_data(), b.dtype(), bo + k * L.b_row() + n * L.b_col());
        store_from_double(out.raw_data(), out.dtype(), (ib * L.M + m) * L.N + n, acc);
      }
  }
}

void linear_ref(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &bias = c.in[2];
  Tensor& out = c.out[0];
  int64_t K = x.size(-1), N = w.size(0), rows = x.numel() / std::max<int64_t>(K, 1);
  if (K == 0) rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  StridedIndex x_ix(x.shape(), x.strides());
  const bool gelu = linear_gelu(c.attrs);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < N; ++n) {
      double acc = bias.defined() ? load_as_double(bias.raw_data(), bias.dtype(), n * bias.stride(0)) : 0.0;
      for (int64_t k = 0; k < K; ++k)
        acc += load_as_double(x.raw_data(), x.dtype(), x_ix.offset(r * K + k)) *
               load_as_double(w.raw_data(), w.dtype(), n * w.stride(0) + k * w.stride(1));
      if (gelu) acc = 0.5 * acc * (1.0 + std::erf(acc / std::sqrt(2.0)));  // x Phi(x)
      store_from_double(out.raw_data(), out.dtype(), r * N + n, acc);
    }
}

}  // namespace qs::kernels
