// Exact u8 x s8 -> s32 products through oneDNN's int8 primitives, with the weights
// pre-packed into the primitive's layout once and cached.
//
// Why the split: on AVX2 without VNNI, oneDNN multiplies u8 by s8 with vpmaddubsw, which
// adds two products in s16 with saturation. With u <= 127 a pair is at most
// 2 * 127 * 128 = 32512 and never saturates (measured: 0 mismatches; full-range u8 gave
// thousands). So u is cut into lo = u & 127 and hi = u >> 7 and acc = A(lo) + 128 A(hi)
// whenever some u exceeds 127: two products, still exact. With VNNI or AMX
// (backend::exact_u8s8(): vpdpbusd sums four products straight into s32) u goes in whole,
// one product, whatever its range.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/spatial.h"
#include "qiusuo/tensor.h"

namespace qs::kernels {

// acc[m, n] = sum_k u[m, k] wq[n, k] exactly: u row-major u8 [M, K], wq i8 [N, K] (any
// strides), acc row-major [M, N].
void gemm_u8s8_exact(const uint8_t* u, int64_t M, int64_t K, const Tensor& wq, int32_t* acc);
// sum_k wq[n, k] for each n (cached with the packed weights): the zero-point compensation.
std::shared_ptr<const std::vector<int32_t>> weight_row_sums(const Tensor& wq);

// acc (N, out..., O layout: channels last) = the convolution of u (N, in..., C: channels
// last, u8, zero padding) with wq i8 [O, C / G, k...] exactly.
void conv_u8s8_exact(const uint8_t* u, const ops::Spatial& s, const Tensor& wq, int64_t groups, int32_t* acc);
// The requantisation of conv_u8s8_exact's sums (quant_math.h's rule) for
// conv_u8s8_requant: per output channel acc_scale and bias (nullptr: none), ReLU, and for
// a u8 or i8 output its 1 / scale, zero point and [qmin, qmax].
struct ConvRequant {
  const float* acc_scale = nullptr;
  const float* bias = nullptr;
  bool relu = false;
  DType out = DType::f32;  // f32, u8 or i8
  float inv_out_scale = 1.0f;
  int32_t out_zp = 0, qmin = 0, qmax = 0;
};
// The same convolution with the epilogue inside oneDNN's kernel: out (channels last, as
// conv_u8s8_exact's acc) = requantise(conv(u - zp, wq)), bit for bit as the reference.
// oneDNN's brgemm and jit_int8 convolutions apply the attributes in quant_math.h's order: the source
// zero point as an exact s32 compensation, then cvt, x acc_scale (output scales), + bias
// (binary post-op), ReLU, x 1/scale (binary post-op), round half to even (round: before the zero
// point, which oneDNN would add before rounding), + zero point, clip to [qmin, qmax],
// saturate. Runs only on those kernels and with VNNI/AMX sums (backend::exact_u8s8()); returns
// false, having written nothing, elsewhere.
bool conv_u8s8_requant(const uint8_t* u, int32_t zp, const ops::Spatial& s, const Tensor& wq, int64_t groups,
                       const ConvRequant& rq, void* out);
// S[p, o] (row-major [out_plane, O]) = sum over the kernel taps t that land inside the
// input at output position p of sum_c wq[o, c, t]: the zero-point compensation of a padded
// convolution (cached).
std::shared_ptr<const std::vector<int32_t>> conv_tap_sums(const ops::Spatial& s, const Tensor& wq, int64_t groups);

// Thread-local scratch of at least `bytes`, reused from call to call. Slots 1-3 belong to
// the functions above; callers use 0 (activations) and 4, 5 (accumulators).
void* quant_scratch(int slot, size_t bytes);

}  // namespace qs::kernels
