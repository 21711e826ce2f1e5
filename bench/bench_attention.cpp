// Attention workloads, shaped as the language model's layers (b8, h8, n256, d32, causal):
// the fused op (qs::attention) against the textbook path (qs::attention_explicit).
#include "bench/bench.h"
#include "qiusuo/attention.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::bench {

namespace {

constexpr int64_t B = 8, H = 8, N = 256, D = 32;

std::vector<nlohmann::json> attention_fwd(const Options& o) {
  Generator g(0);
  Tensor q = randn({B, H, N, D}, DType::f32, &g), k = randn({B, H, N, D}, DType::f32, &g),
         v = randn({B, H, N, D}, DType::f32, &g);
  AttentionOptions opt;
  opt.causal = true;
  NoGrad ng;
  const int iters = o.iters ? o.iters : 20;
  double fused = time_per_call([&] { attention(q, k, v, opt); }, 3, iters);
  double expl = time_per_call([&] { attention_explicit(q, k, v, opt); }, 3, iters);
  return {{{"workload", "attention_fwd_b8_h8_n256_d32"},
           {"ms", fused * 1e3},
           {"explicit_ms", expl * 1e3},
           {"speedup_over_explicit", expl / fused}}};
}

std::vector<nlohmann::json> attention_train(const Options& o) {
  Generator g(0);
  Tensor q = randn({B, H, N, D}, DType::f32, &g).requires_grad_();
  Tensor k = randn({B, H, N, D}, DType::f32, &g).requires_grad_();
  Tensor v = randn({B, H, N, D}, DType::f32, &g).requires_grad_();
  Tensor dout = randn({B, H, N, D}, DType::f32, &g);
  AttentionOptions opt;
  opt.causal = true;
  auto step = [&](bool fused) {
    Tensor out = fused ? attention(q, k, v, opt).out : attention_explicit(q, k, v, opt).out;
    out.backward(dout);
    for (Tensor* t : {&q, &k, &v}) t->zero_grad();
  };
  const int iters = o.iters ? o.iters : 10;
  double fused = time_per_call([&] { step(true); }, 2, iters);
  double expl = time_per_call([&] { step(false); }, 2, iters);
  return {{{"workload", "attention_train_b8_h8_n256_d32"},
           {"ms", fused * 1e3},
           {"explicit_ms", expl * 1e3},
           {"speedup_over_explicit", expl / fused}}};
}

// One decoding step's attention: 1 query against a cache of 384 keys, 16 heads of 64 (shape B
// of the llama.cpp comparison), k and v views of larger buffers as the KV cache holds them.
std::vector<nlohmann::json> attention_decode(const Options& o) {
  Generator g(0);
  const int64_t h = 16, m = 384, d = 64;
  Tensor q = randn({1, h, 1, d}, DType::f32, &g);
  Tensor kb = randn({1, h, 512, d}, DType::f32, &g), vb = randn({1, h, 512, d}, DType::f32, &g);
  Tensor k = kb.narrow(2, 0, m), v = vb.narrow(2, 0, m);
  AttentionOptions opt;
  opt.causal = true;
  NoGrad ng;
  const int iters = o.iters ? o.iters : 200;
  double fused = time_per_call([&] { attention(q, k, v, opt); }, 10, iters);
  return {{{"workload", "attention_decode_h16_m384_d64"}, {"us", fused * 1e6}}};
}

}  // namespace

std::vector<Workload> attention_workloads() {
  return {{"attention_fwd_b8_h8_n256_d32", "causal attention forward, fused vs explicit (ms)", attention_fwd},
          {"attention_train_b8_h8_n256_d32", "causal attention forward + backward, fused vs explicit (ms)",
           attention_train},
          {"attention_decode_h16_m384_d64", "one query against a 384-key cache, 16 heads of 64 (us)", attention_decode}};
}

}  // namespace qs::bench
