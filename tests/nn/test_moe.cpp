// The DeepSeek-V3 mixture of experts against a dense loop written from its formula (f64),
// its gradients against finite differences, the bias balancing on a skewed router, the
// balance loss against its formula, and SwiGLU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ops/harness.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/moe.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

// Converts every parameter and buffer of m to dtype in place. The handles keep their
// TensorImpl, so the module's members and optimisers see the change (as torch's .to()).
void cast_module(nn::Module& m, DType dt) {
  auto retype = [dt](const Tensor& t) {
    Tensor c = t.detach().to(dt).contiguous();
    TensorImpl* impl = t.impl();
    impl->storage = c.storage();
    impl->dtype = dt;
    impl->strides = c.strides();
    impl->offset = c.offset();
  };
  for (auto& kv : m.named_parameters()) retype(kv.second);
  for (auto& kv : m.named_buffers()) retype(kv.second);
}

double silu_d(double v) { return v / (1 + std::exp(-v)); }

// SwiGLU of one row x [D], from the weights.
std::vector<double> swiglu_row(const nn::SwiGLU& m, const double* x, int64_t D) {
  auto Wg = m.gate_proj()->weight().to_vector(), Wu = m.up_proj()->weight().to_vector(),
       Wd = m.down_proj()->weight().to_vector();
  int64_t H = m.gate_proj()->out_features();
  std::vector<double> h(static_cast<size_t>(H)), y(static_cast<size_t>(D), 0.0);
  for (int64_t j = 0; j < H; ++j) {
    double g = 0, u = 0;
    for (int64_t i = 0; i < D; ++i) g += Wg[size_t(j * D + i)] * x[i], u += Wu[size_t(j * D + i)] * x[i];
    h[size_t(j)] = silu_d(g) * u;
  }
  for (int64_t i = 0; i < D; ++i)
    for (int64_t j = 0; j < H; ++j) y[size_t(i)] += Wd[size_t(i * H + j)] * h[size_t(j)];
  return y;
}

// Every token: sum over its selected experts of gate * expert(x), plus the shared expert.
std::vector<double> dense_moe(const nn::MoE& m, const Tensor& x) {
  const auto& c = m.config();
  const int64_t D = c.d_model, E = c.n_routed, T = x.numel() / D;
  auto X = x.contiguous().to_vector(), W = m.gate_weight().to_vector(), bias = m.score_bias().to_vector();
  std::vector<double> out(size_t(T * D), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const double* xt = X.data() + t * D;
    std::vector<double> s(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      double l = 0;
      for (int64_t i = 0; i < D; ++i) l += W[size_t(e * D + i)] * xt[i];
      s[size_t(e)] = l;
    }
    if (c.score == "sigmoid") {
      for (double& v : s) v = 1 / (1 + std::exp(-v));
    } else {
      double mx = *std::max_element(s.begin(), s.end()), z = 0;
      for (double& v : s) z += v = std::exp(v - mx);
      for (double& v : s) v /= z;
    }
    std::vector<int64_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return s[size_t(a)] + bias[size_t(a)] > s[size_t(b)] + bias[size_t(b)];
    });
    double norm = 0;
    for (int64_t j = 0; j < c.top_k; ++j) norm += s[size_t(order[size_t(j)])];
    for (int64_t j = 0; j < c.top_k; ++j) {
      int64_t e = order[size_t(j)];
      double w = s[size_t(e)] / (c.norm_topk_prob && c.top_k > 1 ? norm : 1.0) * c.routed_scaling;
      auto y = swiglu_row(*m.expert(e), xt, D);
      for (int64_t i = 0; i < D; ++i) out[size_t(t * D + i)] += w * y[size_t(i)];
    }
    if (m.shared_experts()) {
      auto y = swiglu_row(*m.shared_experts(), xt, D);
      for (int64_t i = 0; i < D; ++i) out[size_t(t * D + i)] += y[size_t(i)];
    }
  }
  return out;
}

nn::MoEConfig small_config(const std::string& score) {
  nn::MoEConfig c;
  c.d_model = 6;
  c.d_expert = 5;
  c.n_routed = 5;
  c.n_shared = 2;
  c.top_k = 2;
  c.score = score;
  c.routed_scaling = 2.5;
  return c;
}

TEST(SwiGLU, NamesAndFormula) {
  Generator g(1);
  nn::SwiGLU m(4, 3, false, g);
  std::vector<std::string> names;
  for (auto& kv : m.named_parameters()) names.push_back(kv.first);
  EXPECT_EQ(names, (std::vector<std::string>{"gate_proj.weight", "up_proj.weight", "down_proj.weight"}));
  cast_module(m, DType::f64);
  Tensor x = randn({2, 4}, DType::f64, &g);
  auto got = m.forward(x).to_vector(), X = x.to_vector();
  for (int64_t r = 0; r < 2; ++r) {
    auto want = swiglu_row(m, X.data() + r * 4, 4);
    for (int64_t i = 0; i < 4; ++i) EXPECT_NEAR(got[size_t(r * 4 + i)], want[size_t(i)], 1e-13);
  }
  nn::SwiGLU b(4, 3, true, g);
  EXPECT_EQ(b.named_parameters().size(), 6u);
}

TEST(MoE, MatchesDenseLoopInF64) {
  for (std::string score : {"sigmoid", "softmax"}) {
    Generator g(2);
    nn::MoEConfig c = small_config(score);
    c.norm_topk_prob = score == "sigmoid";
    nn::MoE m(c, g);
    cast_module(m, DType::f64);
    Tensor(m.score_bias()).copy_(from_vector({0.3, -0.2, 0.0, 0.1, -0.05}, {5}, DType::f64));
    Tensor x = randn({2, 7, 6}, DType::f64, &g);
    Tensor y = m.forward(x);
    ASSERT_EQ(y.shape(), x.shape());
    auto got = y.to_vector(), want = dense_moe(m, x);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-12) << score << " element " << i;
    nn::ExpertLoad load = m.load_stats();
    EXPECT_EQ(load.total, 2 * 7 * 2);  // every token counted top_k times, no expert ran on every token
  }
}

TEST(MoE, StateDictUsesHuggingFaceNames) {
  nn::MoE m(small_config("sigmoid"));
  std::vector<std::string> names;
  for (auto& kv : m.state_dict()) names.push_back(kv.first);
  for (const char* want : {"experts.0.gate_proj.weight", "experts.4.down_proj.weight", "gate.weight",
                           "gate.e_score_correction_bias", "shared_experts.up_proj.weight"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  for (auto& kv : m.named_parameters()) EXPECT_NE(kv.first, "gate.e_score_correction_bias");
  EXPECT_EQ(m.shared_experts()->up_proj()->out_features(), 2 * 5);
}

// The bias decides the choice; the gate weight is the score without it.
TEST(MoE, RoutingRespectsTheBiasButGateWeightsDoNot) {
  Generator g(3);
  nn::MoEConfig c = small_config("sigmoid");
  c.norm_topk_prob = false;
  c.routed_scaling = 1.0;
  nn::MoE m(c, g);
  Tensor(m.score_bias()).copy_(from_vector({0, 0, 0, 10, 0}, {5}));
  Tensor x = randn({9, 6}, DType::f32, &g);
  nn::Routing r = m.route(x);
  auto idx = r.indices.to_vector_as<int64_t>();
  auto w = r.weights.to_vector(), s = r.scores.to_vector();
  for (int64_t t = 0; t < 9; ++t) {
    EXPECT_EQ(idx[size_t(t * 2)], 3) << "token " << t;
    EXPECT_FLOAT_EQ(w[size_t(t * 2)], s[size_t(t * 5 + 3)]);
    EXPECT_LT(w[size_t(t * 2)], 1.0);
  }
  // Without the bias the same scores pick expert 3 first only where it really is the best.
  Tensor(m.score_bias()).zero_();
  auto plain = m.route(x).indices.to_vector_as<int64_t>();
  EXPECT_NE(std::count(plain.begin(), plain.end(), 3), 18);
}

TEST(MoE, GradientsMatchFiniteDifferences) {
  Generator g(4);
  nn::MoEConfig c;
  c.d_model = 4;
  c.d_expert = 3;
  c.n_routed = 4;
  c.n_shared = 1;
  c.top_k = 2;
  c.routed_scaling = 1.5;
  c.aux_loss_alpha = 0.1;
  nn::MoE m(c, g);
  cast_module(m, DType::f64);
  Tensor(m.score_bias()).copy_(from_vector({0.05, -0.05, 0.1, 0}, {4}, DType::f64));
  Tensor x = randn({2, 3, 4}, DType::f64, &g).requires_grad_();
  std::vector<Tensor> params = m.parameters(), inputs = {x}, originals;
  for (auto& p : params) inputs.push_back(p), originals.push_back(p.detach().clone());
  // gradcheck perturbs copies of its inputs: the module's parameters take their values.
  auto f = [&](const std::vector<Tensor>& xs) {
    {
      NoGrad ng;
      for (size_t i = 0; i < params.size(); ++i) params[i].copy_(xs[i + 1].same(params[i]) ? originals[i] : xs[i + 1]);
    }
    Tensor y = m.forward(xs[0]);
    return std::vector<Tensor>{y, m.aux_loss()};
  };
  EXPECT_EQ(ops::gradcheck(f, inputs), "");
  EXPECT_GT(m.aux_loss().item(), 0.0);
}

TEST(MoE, GradientReachesTheRouterOnlyThroughGateWeights) {
  Generator g(5);
  nn::MoE m(small_config("sigmoid"), g);
  Tensor x = randn({2, 5, 6}, DType::f32, &g);
  sum(m.forward(x) * randn({2, 5, 6}, DType::f32, &g)).backward();
  ASSERT_TRUE(m.gate_weight().grad().defined());
  EXPECT_GT(amax(abs(m.gate_weight().grad())).item(), 0.0);
  EXPECT_FALSE(m.score_bias().requires_grad());
}

// Per sequence (sigmoid, V3) and over the batch (softmax, V2), from route()'s decisions.
TEST(MoE, BalanceLossMatchesItsFormula) {
  for (std::string score : {"sigmoid", "softmax"}) {
    Generator g(6);
    nn::MoEConfig c = small_config(score);
    c.aux_loss_alpha = 0.01;
    nn::MoE m(c, g);
    cast_module(m, DType::f64);
    const int64_t b = 3, n = 4, E = 5, K = 2;
    Tensor x = randn({b, n, 6}, DType::f64, &g);
    m.forward(x);
    double got = m.aux_loss().item();
    nn::Routing r = m.route(x.reshape({b * n, 6}));
    auto idx = r.indices.to_vector_as<int64_t>();
    auto s = r.scores.to_vector();
    bool seq = score == "sigmoid";
    int64_t groups = seq ? b : 1, tokens = seq ? n : b * n;
    double want = 0;
    for (int64_t gi = 0; gi < groups; ++gi)
      for (int64_t e = 0; e < E; ++e) {
        double count = 0, P = 0;
        for (int64_t t = gi * tokens; t < (gi + 1) * tokens; ++t) {
          for (int64_t j = 0; j < K; ++j) count += idx[size_t(t * K + j)] == e;
          double z = 0;
          for (int64_t e2 = 0; e2 < E; ++e2) z += s[size_t(t * E + e2)];
          P += s[size_t(t * E + e)] / (seq ? z : 1.0) / double(tokens);
        }
        want += c.aux_loss_alpha * double(E) / double(K * tokens) * count * P / double(groups);
      }
    EXPECT_NEAR(got, want, 1e-14) << score;
    m.eval();
    m.forward(x);
    EXPECT_FALSE(m.aux_loss().defined());
  }
}

// A router that sends almost every token to expert 0, fed a fresh batch each step: the
// bias updates alone spread the load, and max/mean falls toward 1 (on a fixed batch the
// sign update ends in a limit cycle of amplitude gamma instead).
TEST(MoE, BiasUpdatesBalanceASkewedRouter) {
  Generator g(7);
  nn::MoEConfig c;
  c.d_model = 8;
  c.d_expert = 4;
  c.n_routed = 4;
  c.top_k = 1;
  c.bias_update_speed = 0.01;
  nn::MoE m(c, g);
  {
    NoGrad ng;
    Tensor(m.gate_weight()).copy_(0.05 * randn({4, 8}, DType::f32, &g));
    Tensor(m.gate_weight()).select(0, 0).fill_(0.5);
  }
  std::vector<double> imbalance;
  NoGrad ng;
  for (int step = 0; step < 120; ++step) {
    m.reset_stats();
    m.forward(randn({4, 64, 8}, DType::f32, &g) + 1.0);
    imbalance.push_back(m.load_stats().max_over_mean);
    m.update_bias();
  }
  double head = std::accumulate(imbalance.begin(), imbalance.begin() + 10, 0.0) / 10;
  double tail = std::accumulate(imbalance.end() - 20, imbalance.end(), 0.0) / 20;
  EXPECT_GT(head, 3.0);  // nearly all on one of 4 experts
  EXPECT_LT(tail, 1.5) << "max/mean over the first 10 steps " << head << ", the last 20 " << tail;
  auto b = m.score_bias().to_vector();
  EXPECT_LT(b[0], 0.0);  // the overloaded expert was pushed down
  // Eval forwards count for the statistics but not for the bias.
  m.eval();
  m.reset_stats();
  m.forward(randn({4, 64, 8}, DType::f32, &g));
  m.update_bias();
  EXPECT_EQ(m.score_bias().to_vector(), b);
  EXPECT_EQ(m.load_stats().total, 4 * 64);
}

TEST(MoE, LoadStatistics) {
  nn::MoEConfig c = small_config("sigmoid");
  c.top_k = 1;
  nn::MoE m(c);
  Tensor(m.score_bias()).copy_(from_vector({0, 0, 5, 0, 0}, {5}));  // everything to expert 2
  NoGrad ng;
  m.forward(randn({1, 10, 6}));
  nn::ExpertLoad s = m.load_stats();
  EXPECT_EQ(s.counts, (std::vector<int64_t>{0, 0, 10, 0, 0}));
  EXPECT_EQ(s.total, 10);
  EXPECT_DOUBLE_EQ(s.fraction[2], 1.0);
  EXPECT_DOUBLE_EQ(s.max_over_mean, 5.0);
  EXPECT_DOUBLE_EQ(s.cv, 2.0);  // std of {0, 0, 10, 0, 0} is 4, mean 2
  m.reset_stats();
  EXPECT_EQ(m.load_stats().total, 0);
}

// Under bf16 autocast the experts and the router take bf16 operands; the layer still runs
// and returns f32 close to the f32 result (a few tokens may pick another expert).
TEST(MoE, RunsUnderAutocast) {
  Generator g(8);
  nn::MoE m(small_config("sigmoid"), g);
  Tensor x = randn({2, 16, 6}, DType::f32, &g);
  NoGrad ng;
  Tensor want = m.forward(x), got;
  {
    Autocast ac;
    got = m.forward(x);
  }
  ASSERT_EQ(got.dtype(), DType::f32);
  double rel = std::sqrt(sum(square(got - want)).item() / sum(square(want)).item());
  EXPECT_LT(rel, 3e-2);
}

TEST(MoE, ConfigAndInputErrors) {
  nn::MoEConfig c = small_config("sigmoid");
  c.top_k = 6;
  EXPECT_THROW(nn::MoE{c}, Error);
  c = small_config("relu");
  EXPECT_THROW(nn::MoE{c}, Error);
  c = small_config("sigmoid");
  c.d_expert = 0;
  EXPECT_THROW(nn::MoE{c}, Error);
  nn::MoE m(small_config("sigmoid"));
  EXPECT_THROW(m.forward(zeros({3, 6})), Error);
  EXPECT_THROW(m.forward(zeros({1, 3, 5})), Error);
}

}  // namespace
}  // namespace qs
