// qconv of a single input channel (the first layer of an image CNN) with AVX-512 VNNI, where
// oneDNN's int8 kernels vectorise over input channels and have one: on Zen 5 (Fashion-MNIST
// CNN, 64 x 1 x 28 x 28 -> 32 channels, 3 x 3) its jit_int8 kernel took 0.42 ms of the INT8
// model's 1.9 ms at one thread; this one 0.25 ms.
//
// Each output pixel's window is kh rows of kw <= 4 consecutive bytes of a copy of the image
// padded with the zero point: one unaligned 32-bit load per kernel row holds a row's taps
// (and, past kw, bytes that meet zero weights). vpdpbusd multiplies the broadcast 4 bytes by
// 16 output channels' 4 weights at once and sums into s32, exactly. With padding worth the
// zero point, acc - zp * sum(w) is the reference's sum of (x - zp) w over the window.
//
// The requantisation is quant_epilogue_avx512.h's (quant_epilogue_avx2.h's 16 lanes wide: the
// same f32 operations in the same order; this file is compiled without FMA contraction, as
// quant*.cpp are), so the result equals the reference bit for bit. s8 inputs are offset into
// u8 (x + 128, and the zero point with them). Channels-last outputs only (the chained CNN's);
// other cases, and CPUs without AVX-512 VNNI (or oneDNN capped below it), go to the
// onednn-int8 kernel.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/quant_epilogue_avx512.h"
#include "kernels/cpu/target_avx512.h"
#include "kernels/spatial.h"

namespace qs::kernels {

namespace {

constexpr int64_t kMaxBlocks = 4;  // output channels up to 64, in blocks of 16

const char* qconv_c1_supports(const ops::OpCall& c) {
  if (!backend::avx512() || !backend::exact_u8s8()) return "no AVX-512 VNNI (or oneDNN capped below it)";
  const Tensor &x = c.in[0], &w = c.in[1];
  if (x.dim() != 4 || x.size(1) != 1) return "2-D convolutions of one input channel only";
  if (x.dtype() != DType::u8 && x.dtype() != DType::i8) return "u8 or s8 input only";
  if (c.attrs.has("x_from_scale")) return "a remapped (chained) input";
  if (c.attrs.i("groups", 1) != 1) return "groups";
  const ops::Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "qconv");
  if (s.dil[1] != 1 || s.dil[2] != 1) return "dilation";
  if (w.size(2) > 4 || w.size(3) > 4) return "kernel larger than 4 x 4";
  if (w.size(0) % 16 != 0 || w.size(0) > 16 * kMaxBlocks) return "output channels not 16, 32, 48 or 64";
  if (!ops::is_channels_last(c.out[0])) return "channels-first output";
  if (c.out[0].numel() == 0) return "empty output";
  return nullptr;
}

struct C1Epilogue {
  alignas(64) float scale[kMaxBlocks][16], bias[kMaxBlocks][16];
  alignas(64) int32_t zp_sums[kMaxBlocks][16];  // zp * sum of each channel's weights
};

// P consecutive output pixels (P independent chains of vpdpbusd in flight): acc of every
// channel block, then the epilogue into out (O values per pixel, 16 per block).
template <int NB, int P>
QS_TARGET_AVX512_VNNI
inline void pixels(const uint8_t* const* rows, int64_t kh, int64_t sw, const __m512i* wq,
                   const __m512* scale, const __m512* bias, const __m512i* zp_sums,
                   const quant::QEpilogue& e, uint8_t* out, int64_t out_step) {
  __m512i acc[P][NB];
  for (int p = 0; p < P; ++p)
    for (int b = 0; b < NB; ++b) acc[p][b] = _mm512_setzero_si512();
  for (int64_t r = 0; r < kh; ++r)
    for (int p = 0; p < P; ++p) {
      int32_t quad;
      __builtin_memcpy(&quad, rows[r] + p * sw, 4);
      const __m512i u = _mm512_set1_epi32(quad);
      for (int b = 0; b < NB; ++b) acc[p][b] = _mm512_dpbusd_epi32(acc[p][b], u, wq[r * NB + b]);
    }
  const __m512 zero = _mm512_setzero_ps();
  const Requant16 k = requant16(e.inv_out_scale, e.out_zp, e.out_qmin, e.out_qmax);
  for (int p = 0; p < P; ++p)
    for (int b = 0; b < NB; ++b) {
      __m512 real = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[p][b], zp_sums[b])), scale[b]);
      real = _mm512_add_ps(real, bias[b]);
      if (e.relu) real = _mm512_max_ps(zero, real);
      if (e.real_out) {
        _mm512_storeu_ps(reinterpret_cast<float*>(out + p * out_step) + 16 * b, real);
        continue;
      }
      store_codes16(requant_codes16(k, real), out + p * out_step + 16 * b);
    }
}

// Output row nr (batch n, row oh) of every channel. A function of its own, with the target
// attribute: clang outlines an OpenMP loop body into a function that does not inherit it.
template <int NB>
QS_TARGET_AVX512_VNNI
void c1_row(int64_t nr, const std::vector<uint8_t>& padded, int64_t Hp, int64_t Wp, const ops::Spatial& s,
            int64_t kh, const std::vector<int32_t>& wpack, const C1Epilogue& ep, const quant::QEpilogue& e,
            size_t es, char* out) {
  const int64_t OH = s.out[1], OW = s.out[2], sh = s.stride[1], sw = s.stride[2], O = 16 * NB;
  __m512i wq[4 * NB], zs[NB];  // kh <= 4 (qconv_c1_supports)
  __m512 sc[NB], bi[NB];
  for (int64_t i = 0; i < kh * NB; ++i) wq[i] = _mm512_loadu_si512(wpack.data() + 16 * i);
  for (int b = 0; b < NB; ++b)
    sc[b] = _mm512_load_ps(ep.scale[b]), bi[b] = _mm512_load_ps(ep.bias[b]), zs[b] = _mm512_load_si512(ep.zp_sums[b]);
  const int64_t n = nr / OH, oh = nr % OH;
  const uint8_t* img = padded.data() + n * Hp * Wp;
  const uint8_t* rows[4];
  uint8_t* o = reinterpret_cast<uint8_t*>(out) + nr * OW * O * int64_t(es);
  const int64_t step = O * int64_t(es);
  int64_t ow = 0;
  for (; ow + 4 <= OW; ow += 4) {
    for (int64_t r = 0; r < kh; ++r) rows[r] = img + (oh * sh + r) * Wp + ow * sw;
    pixels<NB, 4>(rows, kh, sw, wq, sc, bi, zs, e, o + ow * step, step);
  }
  for (; ow < OW; ++ow) {
    for (int64_t r = 0; r < kh; ++r) rows[r] = img + (oh * sh + r) * Wp + ow * sw;
    pixels<NB, 1>(rows, kh, sw, wq, sc, bi, zs, e, o + ow * step, step);
  }
}

template <int NB>
void run_c1(const std::vector<uint8_t>& padded, int64_t N, int64_t Hp, int64_t Wp, const ops::Spatial& s, int64_t kh,
            const std::vector<int32_t>& wpack, const C1Epilogue& ep, const quant::QEpilogue& e, DType dt, char* out) {
  const int64_t OH = s.out[1], OW = s.out[2], O = 16 * NB;
  const size_t es = dtype_size(dt);
#pragma omp parallel for if (N * OH * OW * O > 65536)
  for (int64_t nr = 0; nr < N * OH; ++nr) c1_row<NB>(nr, padded, Hp, Wp, s, kh, wpack, ep, e, es, out);
}

void qconv_c1_cpu(ops::OpCall& c) {
  const Tensor x = c.in[0].contiguous(), w = c.in[1].contiguous();
  const quant::QEpilogue e = quant::QEpilogue::from(c.attrs);
  const ops::Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "qconv");
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3), O = w.size(0), kh = w.size(2), kw = w.size(3);
  const int64_t ph = s.pad[1], pw = s.pad[2];
  // The image padded with the zero point (s8: offset into u8), and 3 spare bytes after each
  // row for the last window's 32-bit load.
  const bool s8 = x.dtype() == DType::i8;
  const int32_t zp = e.x_zp + (s8 ? 128 : 0);
  const int64_t Hp = std::max(H + 2 * ph, (s.out[1] - 1) * s.stride[1] + kh);
  const int64_t Wp = std::max(W + 2 * pw, (s.out[2] - 1) * s.stride[2] + kw) + 3;
  std::vector<uint8_t> padded(size_t(N * Hp * Wp), uint8_t(zp));
  const uint8_t* xp = static_cast<const uint8_t*>(x.raw_data());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) {
      uint8_t* dst = padded.data() + (n * Hp + h + ph) * Wp + pw;
      const uint8_t* src = xp + (n * H + h) * W;
      if (!s8) {
        std::copy_n(src, W, dst);
        continue;
      }
      for (int64_t x0 = 0; x0 < W; ++x0) dst[x0] = uint8_t(src[x0] ^ 0x80);
    }
  // Weights: per kernel row r and block b, 16 lanes of 4 bytes (taps 0..kw-1, then zeros).
  const int64_t NB = O / 16;
  std::vector<int32_t> wpack(size_t(kh * NB * 16), 0);
  std::vector<int32_t> sums(size_t(O), 0);
  const int8_t* wp = static_cast<const int8_t*>(w.raw_data());
  for (int64_t o = 0; o < O; ++o)
    for (int64_t r = 0; r < kh; ++r) {
      uint8_t bytes[4] = {0, 0, 0, 0};
      for (int64_t t = 0; t < kw; ++t) {
        const int8_t v = wp[(o * kh + r) * kw + t];
        bytes[t] = uint8_t(v);
        sums[size_t(o)] += v;
      }
      __builtin_memcpy(&wpack[size_t((r * NB + o / 16) * 16 + o % 16)], bytes, 4);
    }
  C1Epilogue ep;
  const Tensor wsc = c.in[2].contiguous();
  const Tensor bc = c.in[3].defined() ? c.in[3].contiguous() : Tensor();
  for (int64_t o = 0; o < O; ++o) {
    ep.scale[o / 16][o % 16] = e.acc_scale(wsc.data_ptr<float>()[o]);
    ep.bias[o / 16][o % 16] = bc.defined() ? bc.data_ptr<float>()[o] : 0.0f;
    ep.zp_sums[o / 16][o % 16] = zp * sums[size_t(o)];
  }
  char* out = static_cast<char*>(c.out[0].raw_data());
  const DType dt = c.out[0].dtype();
  switch (NB) {
    case 1: return run_c1<1>(padded, N, Hp, Wp, s, kh, wpack, ep, e, dt, out);
    case 2: return run_c1<2>(padded, N, Hp, Wp, s, kh, wpack, ep, e, dt, out);
    case 3: return run_c1<3>(padded, N, Hp, Wp, s, kh, wpack, ep, e, dt, out);
    default: return run_c1<4>(padded, N, Hp, Wp, s, kh, wpack, ep, e, dt, out);
  }
}

}  // namespace

void register_quant_conv_c1_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::qconv, {"avx512-vnni-c1", qconv_c1_supports, qconv_c1_cpu});
}

}  // namespace qs::kernels
