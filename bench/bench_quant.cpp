// Integer kernels beside their f32 twins, at the kernel level:
//   qlinear_b64_1024x1024        u8 x s8 -> u8 (7-bit and full 8-bit activations) vs f32 linear
//   qlinear_b256_1024x4096       the LM MLP's up-projection at 256 tokens
//   qconv2d_b64_32x64_14         the Fashion CNN's second conv (3x3, pad 1) on 64 images
//   dynamic_linear_b256_1024x1024  per-token dynamic INT8 vs f32
//   woq_gemv_4096x4096_{fp32,int8,int4}  batch-1 generation GEMV (weights 64 / 16 / 8 MB; q8 and f32 activations)
//   woq_prefill_b256_4096x4096   the same layer on a 256-token prompt
#include "bench/bench.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/int8.h"

namespace qs::bench {

namespace {

using namespace qs::quant;

QParams act(QDtype dt, float scale, int32_t zp, int32_t lo = 0, int32_t hi = 0) {
  QParams p;
  p.dtype = dt, p.scale = {scale}, p.zero_point = {zp}, p.quant_min = lo, p.quant_max = hi;
  return p;
}

nlohmann::json linear_case(const char* name, int64_t M, int64_t K, int64_t N, const Options& o) {
  Generator g(0);
  int iters = o.iters ? o.iters : 20;
  Tensor x = uniform({M, K}, -1, 1, DType::f32, &g), w = randn({N, K}, DType::f32, &g), b = randn({N}, DType::f32, &g);
  auto [wq, ws] = quantize_weight_per_channel(w);
  QParams in7 = act(QDtype::u8, 2.0f / 127, 64, 0, 127), in8 = act(QDtype::u8, 2.0f / 255, 128);
  Tensor x7 = quantize(x, in7), x8 = quantize(x, in8);
  QOutput out;
  out.out = act(QDtype::u8, 0.5f, 128);
  NoGrad ng;
  double fp32 = time_per_call([&] { linear(x, w, b); }, 3, iters);
  double q7 = time_per_call([&] { qlinear(x7, in7, wq, ws, b, out); }, 3, iters);
  double q8 = time_per_call([&] { qlinear(x8, in8, wq, ws, b, out); }, 3, iters);
  double q7f = time_per_call([&] { qlinear(x7, in7, wq, ws, b); }, 3, iters);
  return {{"workload", name},          {"fp32_ms", fp32 * 1e3},       {"int8_u8out_ms", q7 * 1e3},
          {"int8_f32out_ms", q7f * 1e3}, {"int8_full_range_ms", q8 * 1e3}, {"speedup_vs_fp32", fp32 / q7},
          {"full_range_speedup_vs_fp32", fp32 / q8}};
}

std::vector<nlohmann::json> qlinear_b64(const Options& o) { return {linear_case("qlinear_b64_1024x1024", 64, 1024, 1024, o)}; }
std::vector<nlohmann::json> qlinear_b256(const Options& o) {
  return {linear_case("qlinear_b256_1024x4096", 256, 1024, 4096, o)};
}

std::vector<nlohmann::json> qconv2d_b64(const Options& o) {
  Generator g(0);
  int iters = o.iters ? o.iters : 10;
  Tensor x = uniform({64, 32, 14, 14}, 0, 2, DType::f32, &g), w = randn({64, 32, 3, 3}, DType::f32, &g);
  Tensor b = randn({64}, DType::f32, &g);
  auto [wq, ws] = quantize_weight_per_channel(w);
  QParams in7 = act(QDtype::u8, 2.0f / 127, 0, 0, 127), in8 = act(QDtype::u8, 2.0f / 255, 0);
  Tensor x7 = quantize(x, in7), x8 = quantize(x, in8);
  QOutput out;
  out.relu = true;
  out.out = act(QDtype::u8, 0.2f, 0, 0, 127);
  QConvOptions c;
  c.padding = 1;
  NoGrad ng;
  double fp32 = time_per_call([&] { relu(conv2d(x, w, b, 1, 1)); }, 2, iters);
  double q7 = time_per_call([&] { qconv(x7, in7, wq, ws, b, c, out); }, 2, iters);
  double q8 = time_per_call([&] { qconv(x8, in8, wq, ws, b, c, out); }, 2, iters);
  return {{{"workload", "qconv2d_b64_32x64_14"},
           {"fp32_relu_ms", fp32 * 1e3},
           {"int8_ms", q7 * 1e3},
           {"int8_full_range_ms", q8 * 1e3},
           {"speedup_vs_fp32", fp32 / q7},
           {"full_range_speedup_vs_fp32", fp32 / q8}}};
}

std::vector<nlohmann::json> dynamic_b256(const Options& o) {
  Generator g(0);
  int iters = o.iters ? o.iters : 20;
  Tensor x = randn({256, 1024}, DType::f32, &g), w = randn({1024, 1024}, DType::f32, &g), b = randn({1024});
  auto [wq, ws] = quantize_weight_per_channel(w);
  NoGrad ng;
  double fp32 = time_per_call([&] { linear(x, w, b); }, 3, iters);
  double d7 = time_per_call([&] { dynamic_linear(x, wq, ws, b, "token", true); }, 3, iters);
  double d8 = time_per_call([&] { dynamic_linear(x, wq, ws, b, "token", false); }, 3, iters);
  return {{{"workload", "dynamic_linear_b256_1024x1024"},
           {"fp32_ms", fp32 * 1e3},
           {"int8dyn_reduce_range_ms", d7 * 1e3},
           {"int8dyn_full_range_ms", d8 * 1e3},
           {"speedup_vs_fp32", fp32 / d7}}};
}

// y = x W^T for x [1, 4096] with W in f32, int8 per channel or int4 in groups of 128; the
// quantised ones with q8 activations (what quantize_linears makes: "ms") and with f32 ones.
std::vector<nlohmann::json> woq_gemv(const Options& o, int bits) {
  const int64_t n = 4096;
  Generator g(0);
  int iters = o.iters ? o.iters : 50;
  Tensor x = uniform({1, n}, -1, 1, DType::f32, &g), w = randn({n, n}, DType::f32, &g);
  NoGrad ng;
  double s = 0, s_f32 = 0;
  int64_t weight_bytes = n * n * 4;
  if (bits == 32) {
    s = time_per_call([&] { linear(x, w, Tensor()); }, 5, iters);
  } else {
    auto [q, sc] = bits == 8 ? quantize_weight_per_channel(w) : quantize_weight_int4_groups(w, 128);
    weight_bytes = q.numel() + sc.numel() * 4;
    const int64_t group = bits == 8 ? 0 : 128;
    for (int round = 0; round < 2; ++round) {  // alternated: one run's drift touches both
      s += time_per_call([&] { woq_linear(x, q, sc, Tensor(), bits, group, "q8"); }, 5, iters) / 2;
      s_f32 += time_per_call([&] { woq_linear(x, q, sc, Tensor(), bits, group, "f32"); }, 5, iters) / 2;
    }
  }
  std::string name = bits == 32 ? "woq_gemv_4096x4096_fp32" : bits == 8 ? "woq_gemv_4096x4096_int8" : "woq_gemv_4096x4096_int4";
  nlohmann::json r = {{"workload", name}, {"ms", s * 1e3}, {"weight_mb", double(weight_bytes) / 1e6},
                      {"weight_gb_per_s", double(weight_bytes) / s / 1e9}};
  if (bits != 32) r["activations"] = "q8", r["f32_activations_ms"] = s_f32 * 1e3;
  return {r};
}

// One decoding step's weight stream: the 5 linears of 8 blocks of shape B of the llama.cpp
// comparison (d 1024, FFN 4096: q/k/v 3072x1024, o 1024x1024, gate and up 4096x1024, down
// 1024x4096), 134M weights (f32 537 MB, int8 134 MB, int4 71 MB: far beyond the caches), at
// batch 1 in sequence. GB/s over the weight bytes: compare with mem_read_bw.
std::vector<nlohmann::json> gemv_stream(const Options& o, int bits) {
  const int64_t d = 1024, f = 4096, layers = 8;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{3 * d, d}, {d, d}, {f, d}, {f, d}, {d, f}};
  Generator g(0);
  NoGrad ng;
  struct Layer {
    Tensor w, q, s;
    int64_t k;
  };
  std::vector<Layer> ls;
  int64_t bytes = 0;
  for (int64_t l = 0; l < layers; ++l)
    for (auto [n, k] : shapes) {
      Tensor w = randn({n, k}, DType::f32, &g) * 0.02;
      Layer x;
      x.k = k;
      if (bits == 32) {
        x.w = w;
      } else {
        auto [q, sc] = bits == 8 ? quantize_weight_per_channel(w) : quantize_weight_int4_groups(w, 128);
        x.q = q, x.s = sc;
      }
      bytes += bits == 32 ? w.numel() * 4 : x.q.numel() + x.s.numel() * 4;
      ls.push_back(x);
    }
  Tensor xd = uniform({1, d}, -1, 1, DType::f32, &g), xf = uniform({1, f}, -1, 1, DType::f32, &g);
  auto pass = [&] {
    for (auto& x : ls) {
      const Tensor& in = x.k == f ? xf : xd;
      if (bits == 32) linear(in, x.w, Tensor());
      else woq_linear(in, x.q, x.s, Tensor(), bits, bits == 4 ? 128 : 0, "q8");
    }
  };
  double s = time_per_call(pass, 2, o.iters ? o.iters : 20);
  std::string name = std::string("gemv_stream_") + (bits == 32 ? "fp32" : bits == 8 ? "int8" : "int4");
  return {{{"workload", name}, {"ms", s * 1e3}, {"weight_mb", double(bytes) / 1e6}, {"weight_gb_per_s", double(bytes) / s / 1e9}}};
}

// A 256-token prompt through the same layer (q8 activations, as quantize_linears makes them).
std::vector<nlohmann::json> woq_prefill(const Options& o) {
  const int64_t n = 4096;
  Generator g(0);
  int iters = o.iters ? o.iters : 5;
  Tensor x = uniform({256, n}, -1, 1, DType::f32, &g), w = randn({n, n}, DType::f32, &g);
  auto [q8, s8] = quantize_weight_per_channel(w);
  auto [q4, s4] = quantize_weight_int4_groups(w, 128);
  NoGrad ng;
  double fp32 = time_per_call([&] { linear(x, w, Tensor()); }, 1, iters);
  double i8 = time_per_call([&] { woq_linear(x, q8, s8, Tensor(), 8, 0, "q8"); }, 1, iters);
  double i4 = time_per_call([&] { woq_linear(x, q4, s4, Tensor(), 4, 128, "q8"); }, 1, iters);
  return {{{"workload", "woq_prefill_b256_4096x4096"}, {"fp32_ms", fp32 * 1e3}, {"int8_ms", i8 * 1e3},
           {"int4_ms", i4 * 1e3}}};
}

}  // namespace

std::vector<Workload> quant_workloads() {
  return {
      {"qlinear_b64_1024x1024", "INT8 linear (u8 x s8 -> u8) vs f32, M=64 K=N=1024 (ms)", qlinear_b64},
      {"qlinear_b256_1024x4096", "INT8 linear vs f32, M=256 K=1024 N=4096 (ms)", qlinear_b256},
      {"qconv2d_b64_32x64_14", "INT8 conv 3x3 (+relu, u8 out) vs f32 conv+relu, 64x32x14x14 -> 64 (ms)", qconv2d_b64},
      {"dynamic_linear_b256_1024x1024", "dynamic INT8 linear (per token) vs f32, M=256 K=N=1024 (ms)", dynamic_b256},
      {"woq_gemv_4096x4096_fp32", "f32 GEMV 4096x4096 at batch 1 (ms)", [](const Options& o) { return woq_gemv(o, 32); }},
      {"woq_gemv_4096x4096_int8", "weight-only INT8 GEMV 4096x4096 at batch 1 (ms)", [](const Options& o) { return woq_gemv(o, 8); }},
      {"gemv_stream_fp32", "8 blocks of LM linears (d1024, FFN 4096) at batch 1, f32: one decoding step's weights",
       [](const Options& o) { return gemv_stream(o, 32); }},
      {"gemv_stream_int8", "the same weight stream, weight-only INT8, q8 activations",
       [](const Options& o) { return gemv_stream(o, 8); }},
      {"gemv_stream_int4", "the same weight stream, weight-only INT4 (g128), q8 activations",
       [](const Options& o) { return gemv_stream(o, 4); }},
      {"woq_gemv_4096x4096_int4", "weight-only INT4 (g128) GEMV 4096x4096 at batch 1 (ms)",
       [](const Options& o) { return woq_gemv(o, 4); }},
      {"woq_prefill_b256_4096x4096", "weight-only INT8 / INT4 vs f32 at 256 tokens (ms)", woq_prefill},
  };
}

}  // namespace qs::bench
