// quantize, dequantize and dynamic_linear: OpenMP loops over contiguous data with
// quant_math.h's helpers (this file is compiled without FMA contraction, so it reproduces
// the reference's bits), and dynamic_linear's integer product on oneDNN (quant_pack.h).
#include <omp.h>

#include <limits>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/quant_pack.h"
#include "kernels/cpu/quant_epilogue_avx512.h"

namespace qs::kernels {

namespace {

// A contiguous tensor viewed as [outer, C, inner] for channel axis `axis` (-1: C = 1).
struct Channels {
  int64_t outer = 1, C = 1, inner = 1;
  Channels(const Shape& shape, int64_t axis) {
    if (axis < 0) {
      inner = shape_numel(shape);
      return;
    }
    for (int64_t d = 0; d < axis; ++d) outer *= shape[size_t(d)];
    C = shape[size_t(axis)];
    for (size_t d = size_t(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
  }
};

std::vector<float> f32s(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
std::vector<int32_t> i32s(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::vector<int32_t>(c.data_ptr<int32_t>(), c.data_ptr<int32_t>() + c.numel());
}

const char* nonempty(const ops::OpCall& c) { return c.out[0].numel() == 0 ? "empty output" : nullptr; }

template <class In, class Out>
void quantize_loop(const In* x, Out* q, const Channels& ch, const std::vector<float>& inv, const std::vector<int32_t>& zp,
                   int32_t lo, int32_t hi) {
#pragma omp parallel for collapse(2) if (ch.outer * ch.C * ch.inner > 32768)
  for (int64_t o = 0; o < ch.outer; ++o)
    for (int64_t c = 0; c < ch.C; ++c) {
      const int64_t base = (o * ch.C + c) * ch.inner;
      const float is = inv[size_t(c)];
      const int32_t z = zp[size_t(c)];
      for (int64_t i = 0; i < ch.inner; ++i) q[base + i] = Out(quant::quantize_value(float(x[base + i]), is, z, lo, hi));
    }
}

void quantize_cpu(ops::OpCall& c) {
  const Tensor x = c.in[0].contiguous();
  Channels ch(x.shape(), c.attrs.i("axis", -1));
  std::vector<float> inv = f32s(c.in[1]);
  for (float& s : inv) s = quant::inv_scale(s);
  std::vector<int32_t> zp = i32s(c.in[2]);
  int32_t lo = int32_t(c.attrs.i("qmin")), hi = int32_t(c.attrs.i("qmax"));
  if (x.dtype() == DType::f32) {  // runs of `inner` values share their parameters: 8 at a time
    const float* xp = x.data_ptr<float>();
    auto* q = static_cast<uint8_t*>(c.out[0].raw_data());
    const DType dt = c.out[0].dtype();
    const int64_t runs = ch.outer * ch.C, block = 16384, per_run = (ch.inner + block - 1) / block;
#pragma omp parallel for if (runs * ch.inner > 32768)
    for (int64_t t = 0; t < runs * per_run; ++t) {
      const int64_t r = t / per_run, k0 = (t % per_run) * block, base = r * ch.inner + k0;
      const size_t cc = size_t(r % ch.C);
      quantize_f32(xp + base, std::min(block, ch.inner - k0), inv[cc], zp[cc], lo, hi, q + base, dt);
    }
    return;
  }
  auto run = [&]<class In>(const In* xp) {
    if (c.out[0].dtype() == DType::u8)
      quantize_loop(xp, c.out[0].data_ptr<uint8_t>(), ch, inv, zp, lo, hi);
    else
      quantize_loop(xp, c.out[0].data_ptr<int8_t>(), ch, inv, zp, lo, hi);
  };
  run(x.data_ptr<double>());
}

// Runs of `inner` values share their parameters; blocks of a run go to different threads
// (a per-tensor run is the whole tensor).
template <class In> void dequantize_loop(const In* q, float* y, const Channels& ch, const std::vector<float>& scale,
                                         const std::vector<int32_t>& zp) {
  const int64_t runs = ch.outer * ch.C, block = 16384, per_run = (ch.inner + block - 1) / block;
#pragma omp parallel for if (runs * ch.inner > 32768)
  for (int64_t t = 0; t < runs * per_run; ++t) {
    const int64_t r = t / per_run, k0 = (t % per_run) * block, base = r * ch.inner + k0;
    const int64_t n = std::min(block, ch.inner - k0);
    const float s = scale[size_t(r % ch.C)];
    const int32_t z = zp[size_t(r % ch.C)];
    for (int64_t i = 0; i < n; ++i) y[base + i] = quant::dequantize_value(int32_t(q[base + i]), s, z);
  }
}

void dequantize_cpu(ops::OpCall& c) {
  const Tensor q = c.in[0].contiguous();
  Channels ch(q.shape(), c.attrs.i("axis", -1));
  std::vector<float> scale = f32s(c.in[1]);
  std::vector<int32_t> zp = i32s(c.in[2]);
  float* y = c.out[0].data_ptr<float>();
  if (q.dtype() == DType::u8)
    dequantize_loop(q.data_ptr<uint8_t>(), y, ch, scale, zp);
  else
    dequantize_loop(q.data_ptr<int8_t>(), y, ch, scale, zp);
}

// Per-row (or whole-tensor) u8 parameters and the quantised rows u [M, K]. Per token, each
// row is measured and quantised in one visit (K floats stay in L1 between the two loops);
// per tensor needs every row's extremes first.
std::vector<quant::DynamicQParams> quantize_rows(const float* x, int64_t M, int64_t K, bool per_token, int32_t qmax,
                                                 uint8_t* u) {
  std::vector<quant::DynamicQParams> p(static_cast<size_t>(M));
  constexpr float inf = std::numeric_limits<float>::infinity();
  if (per_token) {
#pragma omp parallel for if (M * K > 32768)
    for (int64_t m = 0; m < M; ++m) {
      float lo = inf, hi = -inf;
      min_max_f32(x + m * K, K, lo, hi);
      p[size_t(m)] = quant::dynamic_qparams(lo, hi, qmax);
      quantize_f32(x + m * K, K, quant::inv_scale(p[size_t(m)].scale), p[size_t(m)].zp, 0, qmax, u + m * K, DType::u8);
    }
    return p;
  }
  std::vector<float> lo(size_t(M), inf), hi(size_t(M), -inf);
#pragma omp parallel for if (M * K > 32768)
  for (int64_t m = 0; m < M; ++m) min_max_f32(x + m * K, K, lo[size_t(m)], hi[size_t(m)]);
  float l = inf, h = -inf;
  for (int64_t m = 0; m < M; ++m) l = std::min(l, lo[size_t(m)]), h = std::max(h, hi[size_t(m)]);
  std::fill(p.begin(), p.end(), quant::dynamic_qparams(l, h, qmax));
  const float inv = quant::inv_scale(p[0].scale);
#pragma omp parallel for if (M * K > 32768)
  for (int64_t m = 0; m < M; ++m) quantize_f32(x + m * K, K, inv, p[0].zp, 0, qmax, u + m * K, DType::u8);
  return p;
}

const char* dynamic_supports(const ops::OpCall& c) {
  if (c.out[0].numel() == 0) return "empty output";
  if (c.in[0].size(-1) == 0) return "K = 0";
  return nullptr;
}

void dynamic_linear_cpu(ops::OpCall& c) {
  const Tensor x = c.in[0].contiguous(), &w = c.in[1];
  bool per_token = !c.attrs.has("granularity") || c.attrs.s("granularity") == "token";
  int32_t qmax = c.attrs.b("reduce_range", false) ? 127 : 255;
  int64_t K = x.size(-1), N = w.size(0), M = x.numel() / K;
  uint8_t* u = static_cast<uint8_t*>(quant_scratch(0, size_t(M * K)));
  std::vector<quant::DynamicQParams> p = quantize_rows(x.data_ptr<float>(), M, K, per_token, qmax, u);
  int32_t* acc = static_cast<int32_t*>(quant_scratch(4, size_t(M * N) * 4));
  gemm_u8s8_exact(u, M, K, w, acc);
  auto sums = weight_row_sums(w);
  std::vector<float> ws = f32s(c.in[2]), bias(size_t(N), 0.0f);
  if (c.in[3].defined()) bias = f32s(c.in[3]);
  float* y = c.out[0].data_ptr<float>();
  quant::QEpilogue real;  // f32 output, no relu
#pragma omp parallel
  {
    std::vector<float> scale(static_cast<size_t>(N));
#pragma omp for
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) scale[size_t(n)] = p[size_t(m)].scale * ws[size_t(n)];
      quant_epilogue(real, acc + m * N, p[size_t(m)].zp, sums->data(), scale.data(), bias.data(), N, y + m * N,
                         DType::f32);
    }
  }
}

}  // namespace

void register_quant_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::quantize, {"cpu", nonempty, quantize_cpu});
  ops::add_kernel(t, ops::OpKind::dequantize, {"cpu", nonempty, dequantize_cpu});
  ops::add_kernel(t, ops::OpKind::dynamic_linear, {"onednn-int8", dynamic_supports, dynamic_linear_cpu});
}

}  // namespace qs::kernels
