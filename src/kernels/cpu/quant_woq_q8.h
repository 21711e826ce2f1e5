// woq_linear with q8 activations at batch <= 8: the row quantiser and the GEMV
// (quant_woq_q8_cpu.cpp); quant_woq_cpu.cpp chooses the kind by ISA and calls them.
#pragma once
#include <cstdint>
#include <vector>

namespace qs::kernels::woq {

// Which weights and which dot-product instruction: AVX2 (vpmaddubsw / vpmaddwd) or
// AVX-512 VNNI (vpdpbusd on 256-bit vectors).
// `codes`: the codes and scales only, in K order (the prefill paths, which lay them out
// themselves).
enum class Kind { s8_avx2, s8_vnni, s4_avx2, s4_vnni, codes };

// One row of x as q8 blocks (kernels/quant_math.h), laid out for `Kind`.
struct ActQ8 {
  int64_t K = 0;
  int64_t blocks = 0;        // full blocks of 32 (K / 32); int8 takes a shorter last one
  std::vector<int8_t> q;     // [K] codes; int4 kinds: each block's 16 even elements, then its odd ones
  std::vector<int16_t> q16;  // [K] the codes widened (s8_avx2)
  std::vector<float> d;      // [ceil(K / 32)] block scales
  std::vector<int32_t> nc;   // [8 * blocks] -offset * (the sum of each 32-bit lane's 4 codes) (offset: s8_vnni 128, int4 8)
};

void quantize_row(const float* x, int64_t K, Kind kind, ActQ8& a);
// x^ itself, codes times scales in f32 (for the prefill path, which multiplies in f32).
void dequantized_row(const float* x, int64_t K, float* out);

// y[m, n] = bias[n] + sum_k x^[m, k] w^[n, k] for the M quantised rows (M small: each weight
// row is read once from memory and reused from cache for the other rows); w as woq_linear
// stores it: i8 [N, K] with scale [N], or packed u8 [N, K / 2] with scale [N, K / group]
// (group and K multiples of 32). OpenMP threads split the output rows.
void gemv(Kind kind, const void* w, const float* scale, int64_t N, int64_t group, const ActQ8* rows, int64_t M,
          const float* bias, float* y);

// The same product for many rows of x (a prompt's prefill), on AVX-512 VNNI only: y [M, N] =
// x^ w^T + bias, x f32 [M, K] contiguous, w and scale as for gemv.
void gemm_vnni(const void* w, bool int4, const float* scale, int64_t N, int64_t group, const float* x, int64_t M,
               int64_t K, const float* bias, float* y);

}  // namespace qs::kernels::woq
