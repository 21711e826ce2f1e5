// qlinear and qconv on oneDNN's int8 primitives, bit-exact with the reference
// (src/kernels/ref/quant_ref.cpp). The route: activations become u8 values u = xq + add
// (s8 moved into [0, 255]; a 7-bit window moved to [0, 127] when the data fits one),
// oneDNN computes the exact s32 sums of u x wq (quant_pack.h: no s16 saturation), and our
// epilogue subtracts the zero point times the weight sums (per output channel, or per
// channel and position for padded convolutions) and applies quant_math.h's requantisation.
// Convolutions on VNNI/AMX hand oneDNN that requantisation too, where its kernel performs
// it in the same order (conv_u8s8_requant, quant_pack.h).
#include <omp.h>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/lut_u8.h"
#include "kernels/cpu/quant_pack.h"
#include "kernels/cpu/quant_epilogue_avx512.h"
#include "kernels/cpu/transpose_u8.h"

namespace qs::kernels {

namespace {

// How far to move the activation integers so they are u8 and, when their spread allows
// and the CPU's int8 products would saturate above 127 (quant_pack.h), at most 127:
// returns `add` with u = x + add.
template <class T> int32_t act_shift(const T* x, int64_t n) {
  int32_t lo = 255, hi = 0;
  const int32_t base = std::is_signed_v<T> ? 128 : 0;
  if (backend::exact_u8s8()) return base;
#pragma omp parallel for simd reduction(min : lo) reduction(max : hi) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    int32_t v = int32_t(x[i]) + base;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (hi <= 127 || hi - lo > 127) return base;
  return base - lo;
}

// u = x + add in the same order (rows), or from NC(spatial) to N(spatial)C (convolution).
template <class T> void shift_rows(const T* x, int64_t n, int32_t add, uint8_t* u) {
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) u[i] = uint8_t(int32_t(x[i]) + add);
}
// (int32(x) + add) as u8 is (u8(x) + u8(add)) modulo 256, so transpose_u8's wrapping add is exact
// for s8 and u8 alike. Bands of 64 positions give both threads work at batch 1.
template <class T> void shift_to_channels_last(const T* x, int64_t N, int64_t C, int64_t P, int32_t add, uint8_t* u) {
  const auto* xb = reinterpret_cast<const uint8_t*>(x);
  const int64_t bands = (P + 63) / 64;
#pragma omp parallel for if (N * C * P > 65536)
  for (int64_t nb = 0; nb < N * bands; ++nb) {
    const int64_t n = nb / bands, p0 = (nb % bands) * 64;
    transpose_u8(xb + n * C * P + p0, C, std::min<int64_t>(64, P - p0), P, u + (n * P + p0) * C, C, uint8_t(add));
  }
}

// Moves xq (contiguous) into u; returns `add`.
int32_t prepare_act(const Tensor& x, uint8_t* u, bool channels_last, int64_t N, int64_t C, int64_t P) {
  auto run = [&]<class T>(const T* p) {
    int32_t add = act_shift(p, x.numel());
    if (channels_last)
      shift_to_channels_last(p, N, C, P, add, u);
    else
      shift_rows(p, x.numel(), add, u);
    return add;
  };
  return x.dtype() == DType::u8 ? run(x.data_ptr<uint8_t>()) : run(x.data_ptr<int8_t>());
}

// The convolution's input as oneDNN reads it: u8 channels-last codes u = x' + add, with x'
// the input requantised when `remap` is on (a 256-entry table of QInputRemap::code, the
// same function the reference applies, looked up 32 bytes at a time: lut_u8.h). Sets zp
// to the zero point of u. A channels-last input (a chained activation,
// include/qiusuo/quant/modules.h) needs no transpose, and one that needs neither
// requantising nor a shift is read in place.
const uint8_t* conv_input(const Tensor& x0, const quant::QEpilogue& epi, const quant::QInputRemap& remap,
                          const ops::Spatial& s, int32_t& zp) {
  const int64_t n = x0.numel();
  const bool cl = ops::is_channels_last(x0);
  uint8_t* u = static_cast<uint8_t*>(quant_scratch(0, size_t(n)));
  if (remap.on) {
    uint8_t lut[256];
    for (int q = 0; q < 256; ++q) lut[q] = uint8_t(remap.code(q, epi));
    const Tensor x = cl ? x0 : x0.contiguous();
    const uint8_t* xp = x.data_ptr<uint8_t>();
    uint8_t* t = cl ? u : static_cast<uint8_t*>(quant_scratch(5, size_t(n)));  // slot 5 is free until the epilogue
    const int64_t blocks = (n + 16383) / 16384;
#pragma omp parallel for if (n > 65536)
    for (int64_t b = 0; b < blocks; ++b)
      lut_u8(xp + b * 16384, std::min<int64_t>(16384, n - b * 16384), lut, t + b * 16384);
    // Codes within [0, 127] (7-bit activations) need no shift: act_shift would return 0.
    int32_t add = remap.qmin >= 0 && remap.qmax <= 127 ? 0 : act_shift(t, n);
    if (!cl)
      shift_to_channels_last(t, s.N, s.C, s.in_plane(), add, u);
    else if (add != 0)
      shift_rows(t, n, add, u);
    zp = epi.x_zp + add;
    return u;
  }
  if (!cl) {
    zp = epi.x_zp + prepare_act(x0.contiguous(), u, true, s.N, s.C, s.in_plane());
    return u;
  }
  auto run = [&]<class T>(const T* p) {
    int32_t add = act_shift(p, n);
    zp = epi.x_zp + add;
    if (add == 0 && std::is_same_v<T, uint8_t>) return reinterpret_cast<const uint8_t*>(p);
    shift_rows(p, n, add, u);
    return static_cast<const uint8_t*>(u);
  };
  return x0.dtype() == DType::u8 ? run(x0.data_ptr<uint8_t>()) : run(x0.data_ptr<int8_t>());
}

// dst [N, C, P] from src [N, P, C], elements of `es` bytes, in tiles of 16 positions so
// the reads of a tile stay in L1 while each channel's 16 outputs are written together.
template <class T> void transpose_tiles(const T* x, int64_t N, int64_t P, int64_t C, T* y) {
  const int64_t tiles = (P + 15) / 16;
#pragma omp parallel for if (N * P * C > 65536)
  for (int64_t nt = 0; nt < N * tiles; ++nt) {
    const int64_t n = nt / tiles, p0 = (nt % tiles) * 16, p1 = std::min(P, p0 + 16);
    const T* xs = x + n * P * C;
    T* ys = y + n * C * P;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = p0; p < p1; ++p) ys[c * P + p] = xs[p * C + c];
  }
}
void to_channels_first(const char* src, int64_t N, int64_t P, int64_t C, size_t es, void* dst) {
  if (es == 4) {
    transpose_tiles(reinterpret_cast<const float*>(src), N, P, C, static_cast<float*>(dst));
    return;
  }
  const auto* x = reinterpret_cast<const uint8_t*>(src);
  auto* y = static_cast<uint8_t*>(dst);
  const int64_t bands = (P + 63) / 64;
#pragma omp parallel for if (N * P * C > 65536)
  for (int64_t nb = 0; nb < N * bands; ++nb) {
    const int64_t n = nb / bands, p0 = (nb % bands) * 64;
    transpose_u8(x + (n * P + p0) * C, std::min<int64_t>(64, P - p0), C, C, y + n * C * P + p0, P);
  }
}

// Per output channel: acc_scale = x_scale * w_scale[n] and the bias.
void channel_params(const quant::QEpilogue& epi, const Tensor& ws, const Tensor& b, std::vector<float>& scale,
                    std::vector<float>& bias) {
  int64_t N = ws.size(0);
  scale.resize(size_t(N));
  bias.assign(size_t(N), 0.0f);
  Tensor wsc = ws.contiguous();
  for (int64_t n = 0; n < N; ++n) scale[size_t(n)] = epi.acc_scale(wsc.data_ptr<float>()[n]);
  if (b.defined()) {
    Tensor bc = b.contiguous();
    for (int64_t n = 0; n < N; ++n) bias[size_t(n)] = bc.data_ptr<float>()[n];
  }
}

const char* q_supports(const ops::OpCall& c) {
  if (c.out[0].numel() == 0) return "empty output";
  if (c.in[0].numel() == 0) return "empty input";
  return nullptr;
}

void qlinear_cpu(ops::OpCall& c) {
  const Tensor x = c.in[0].contiguous(), &w = c.in[1];
  Tensor& out = c.out[0];
  auto epi = quant::QEpilogue::from(c.attrs);
  int64_t K = x.size(-1), N = w.size(0), M = x.numel() / K;
  uint8_t* u = static_cast<uint8_t*>(quant_scratch(0, size_t(M * K)));
  int32_t zp = epi.x_zp + prepare_act(x, u, false, 0, 0, 0);
  int32_t* acc = static_cast<int32_t*>(quant_scratch(4, size_t(M * N) * 4));
  gemm_u8s8_exact(u, M, K, w, acc);
  auto sums = weight_row_sums(w);
  std::vector<float> scale, bias;
  channel_params(epi, c.in[2], c.in[3], scale, bias);
  char* o = static_cast<char*>(out.raw_data());
  DType dt = out.dtype();
  size_t es = dtype_size(dt);
#pragma omp parallel for if (M * N > 16384)
  for (int64_t m = 0; m < M; ++m)
    quant_epilogue(epi, acc + m * N, zp, sums->data(), scale.data(), bias.data(), N, o + m * N * es, dt);
}

void qconv_cpu(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1];
  Tensor& out = c.out[0];
  auto epi = quant::QEpilogue::from(c.attrs);
  ops::Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "qconv");
  int64_t G = c.attrs.i("groups", 1), O = w.size(0), P = s.out_plane();
  int32_t zp = 0;
  const uint8_t* u = conv_input(x, epi, quant::QInputRemap::from(c.attrs), s, zp);
  std::vector<float> scale, bias;
  channel_params(epi, c.in[2], c.in[3], scale, bias);
  // Results in the channels-last order oneDNN writes (channels contiguous, as the
  // per-channel scales), straight into a channels-last output, else then moved to NC(spatial).
  DType dt = out.dtype();
  size_t es = dtype_size(dt);
  const bool cl_out = ops::is_channels_last(out);
  char* tmp = cl_out ? static_cast<char*>(out.raw_data()) : static_cast<char*>(quant_scratch(5, size_t(out.numel()) * es));
  // oneDNN requantises inside its kernel where it can do so in our order; otherwise the
  // epilogue is ours, on exact s32 sums.
  ConvRequant rq{scale.data(), c.in[3].defined() ? bias.data() : nullptr, epi.relu, dt, epi.inv_out_scale,
                 epi.out_zp, epi.out_qmin, epi.out_qmax};
  if (conv_u8s8_requant(u, zp, s, w, G, rq, tmp)) {
    if (!cl_out) to_channels_first(tmp, s.N, P, O, es, out.raw_data());
    return;
  }
  int32_t* acc = static_cast<int32_t*>(quant_scratch(4, size_t(out.numel()) * 4));
  conv_u8s8_exact(u, s, w, G, acc);
  auto taps = conv_tap_sums(s, w, G);
#pragma omp parallel for if (out.numel() > 16384)
  for (int64_t np = 0; np < s.N * P; ++np)
    quant_epilogue(epi, acc + np * O, zp, taps->data() + (np % P) * O, scale.data(), bias.data(), O, tmp + np * O * es,
                       dt);
  if (!cl_out) to_channels_first(tmp, s.N, P, O, es, out.raw_data());
}

}  // namespace

void register_quant_dnnl(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::qlinear, {"onednn-int8", q_supports, qlinear_cpu});
  ops::add_kernel(t, ops::OpKind::qconv, {"onednn-int8", q_supports, qconv_cpu});
}

}  // namespace qs::kernels
