// f64 matmul and linear (oneDNN has no f64): row-parallel loops in the i-k-j order,
// so the innermost loop runs along a contiguous output row and vectorises. Not a tuned
// GEMM; it exists so f64 work (gradcheck, golden tests) is not stuck on the reference.
#include <omp.h>

#include <cmath>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/matmul_layout.h"

namespace qs::kernels {

namespace {

// C[m, n] (+)= sum_k A[m*am + k*ak] * B[k*bk + n*bn], C contiguous with row length N.
void gemm_rows(int64_t M, int64_t N, int64_t K, const double* A, int64_t am, int64_t ak, const double* B, int64_t bk,
               int64_t bn, double* C) {
#pragma omp parallel for if (M * N * K > 32768)
  for (int64_t m = 0; m < M; ++m) {
    double* c = C + m * N;
    for (int64_t n = 0; n < N; ++n) c[n] = 0;
    for (int64_t k = 0; k < K; ++k) {
      double a = A[m * am + k * ak];
      const double* b = B + k * bk;
      if (bn == 1) {
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
      } else {
        for (int64_t n = 0; n < N; ++n) c[n] += a * b[n * bn];
      }
    }
  }
}

const char* f64_only(const ops::OpCall& c) {
  for (auto& x : c.in)
    if (x.defined() && x.dtype() != DType::f64) return "f64 operands only";
  return nullptr;
}

void matmul_f64(ops::OpCall& c) {
  MatmulLayout L(c);
  const double* ap = c.in[0].data_ptr<double>();
  const double* bp = c.in[1].data_ptr<double>();
  double* op = c.out[0].data_ptr<double>();
  for (int64_t ib = 0; ib < L.batches; ++ib)
    gemm_rows(L.M, L.N, L.K, ap + L.a_offset(ib), L.a_row(), L.a_col(), bp + L.b_offset(ib), L.b_row(), L.b_col(),
              op + ib * L.M * L.N);
}

void linear_f64(ops::OpCall& c) {
  const Tensor &w = c.in[1], &bias = c.in[2];
  Tensor x = c.in[0].contiguous();
  int64_t K = w.size(1), N = w.size(0), M = K ? x.numel() / K : 0;
  double* op = c.out[0].data_ptr<double>();
  // y = x w^T: B[k, n] = w[n, k].
  gemm_rows(M, N, K, x.data_ptr<double>(), K, 1, w.data_ptr<double>(), w.stride(1), w.stride(0), op);
  if (bias.defined()) {
    const double* bp = bias.data_ptr<double>();
    int64_t bs = bias.stride(0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) op[m * N + n] += bp[n * bs];
  }
  if (linear_gelu(c.attrs))
    for (int64_t i = 0; i < M * N; ++i) op[i] = 0.5 * op[i] * (1.0 + std::erf(op[i] * M_SQRT1_2));
}

}  // namespace

void register_matmul_f64(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::matmul, {"cpu-f64", f64_only, matmul_f64});
  ops::add_kernel(t, ops::OpKind::linear, {"cpu-f64", f64_only, linear_f64});
}

}  // namespace qs::kernels
