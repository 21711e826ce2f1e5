// rope, topk and the MoE layer: the optimised kernels against their references (and
// rope against the composite it replaced), and the grouped MoE dispatch against running
// every expert on every token.
#include "bench/bench.h"
#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/moe.h"
#include "qiusuo/ops.h"

namespace qs::bench {

double kernel_time(ops::OpKind op, std::vector<Tensor> in, Attrs attrs, std::string impl, int iters) {
  const auto& fast = ops::op_def(op).optimised;
  if (impl == "fast") impl = fast.empty() ? "ref" : fast.front().name;
  ops::OpCall call{op, std::move(in), std::move(attrs), {}};
  for (auto& sp : ops::run_meta(call)) call.out.push_back(empty(sp.shape, sp.dtype));
  return time_per_call([&] { ops::run_kernel(call, impl); }, 1, iters);
}

namespace {

// q heads of a fused projection [b, n, 3, H, d], read in place as [b, H, n, d].
std::vector<nlohmann::json> rope_bench(const Options& o) {
  const int64_t b = 4, n = 512, H = 16, d = 64;
  const int iters = o.iters ? o.iters : 20;
  Tensor q = randn({b, n, 3, H, d}).select(2, 0).permute({0, 2, 1, 3});
  Tensor ang = arange(0, double(n)).reshape({n, 1}) * rand({1, d / 2});
  Tensor c = cos(ang), s = sin(ang);
  NoGrad ng;
  double fast = kernel_time(ops::OpKind::rope, {q, c, s}, {}, "fast", iters);
  double ref = kernel_time(ops::OpKind::rope, {q, c, s}, {}, "ref", 2);
  double composite = time_per_call(
      [&] {
        Tensor x1 = q.narrow(-1, 0, d / 2), x2 = q.narrow(-1, d / 2, d / 2);
        cat({x1 * c - x2 * s, x1 * s + x2 * c}, -1);
      },
      1, iters);
  double bytes = 2.0 * double(q.numel()) * 4;
  return {{{"workload", "rope"},
           {"shape", "[4, 16, 512, 64] head slice of qkv"},
           {"ms", fast * 1e3},
           {"gb_per_s", bytes / fast / 1e9},
           {"ref_ms", ref * 1e3},
           {"composite_ms", composite * 1e3}}};
}

std::vector<nlohmann::json> topk_bench(const Options& o) {
  const int iters = o.iters ? o.iters : 20;
  std::vector<nlohmann::json> out;
  struct Case {
    const char* name;
    Shape shape;
    int64_t k;
  };
  for (const Case& cs : {Case{"router 4096x64 k=8", {4096, 64}, 8}, Case{"vocab 1x128000 k=50", {1, 128000}, 50}}) {
    Tensor x = randn(cs.shape);
    Attrs a = Attrs().set("k", cs.k).set("dim", int64_t(1)).set("largest", true).set("sorted", true);
    double fast = kernel_time(ops::OpKind::topk, {x}, a, "fast", iters);
    double ref = kernel_time(ops::OpKind::topk, {x}, a, "ref", 2);
    out.push_back({{"workload", "topk"}, {"case", cs.name}, {"ms", fast * 1e3}, {"ref_ms", ref * 1e3}});
  }
  return out;
}

// A DeepSeek-style layer, 2048 tokens: forward and forward + backward, against the same
// experts run densely on every token (what the grouping avoids).
std::vector<nlohmann::json> moe_bench(const Options& o) {
  const int iters = o.iters ? o.iters : 5;
  nn::MoEConfig c;
  c.d_model = 512;
  c.d_expert = 256;
  c.n_routed = 16;
  c.n_shared = 1;
  c.top_k = 4;
  nn::MoE m(c);
  Tensor x = randn({4, 512, 512});
  double fwd = 0, dense = 0;
  {
    NoGrad ng;
    fwd = time_per_call([&] { m.forward(x); }, 1, iters);
    Tensor xf = x.reshape({2048, 512});
    dense = time_per_call(
        [&] {
          for (int64_t e = 0; e < c.n_routed; ++e) m.expert(e)->forward(xf);
        },
        1, iters);
  }
  // A dense upstream gradient, as in training (sum(y) would pass an expanded one).
  Tensor xr = x.detach().requires_grad_(), w = randn(x.shape());
  double train = time_per_call(
      [&] {
        sum(m.forward(xr) * w).backward();
        m.zero_grad();
      },
      1, iters);
  return {{{"workload", "moe"},
           {"config", "d=512 d_expert=256 E=16+1 shared k=4, 2048 tokens"},
           {"forward_ms", fwd * 1e3},
           {"forward_backward_ms", train * 1e3},
           {"dense_all_experts_ms", dense * 1e3}}};
}

}  // namespace

std::vector<Workload> moe_workloads() {
  return {{"rope", "rope on a head slice of qkv: cpu kernel vs reference vs the old composite (ms)", rope_bench},
          {"topk", "topk for a router and a vocabulary: cpu kernel vs reference (ms)", topk_bench},
          {"moe", "DeepSeek-V3 MoE layer forward / forward+backward vs every expert on every token (ms)", moe_bench}};
}

}  // namespace qs::bench
