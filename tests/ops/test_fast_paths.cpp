// The speed paths of the LM training step, checked beyond the generic harness:
// f32 erf/exp (gelu, softmax, attention) against libm over dense ranges and at their edges,
// the attention kernels' AVX-512 builds taken by ISA, and expanded
// (stride-0) operands reaching matmul/linear taking the oneDNN kernel, forward and
// backward, with the reference's values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "backend/dnnl_util.h"
#include "kernels/fast_math.h"
#include "ops/op.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

// Error in units of the f32 spacing at the true value.
double ulps(double got, double want) {
  float w = float(std::abs(want));
  return std::abs(got - want) / double(std::nextafter(w, 2.0f * w + 1.0f) - w);
}

TEST(FastMath, ErfWithinAFewUlpOfLibmOverADenseRange) {
  double worst_abs = 0, worst_ulps = 0, worst_ulps_small = 0;
  for (int64_t i = -6 * 8192; i <= 6 * 8192; ++i) {
    float x = float(i) / 8192.0f;
    double want = std::erf(double(x)), got = kernels::fast_erf(x);
    worst_abs = std::max(worst_abs, std::abs(got - want));
    if (x == 0) continue;
    worst_ulps = std::max(worst_ulps, ulps(got, want));
    if (std::abs(x) < 1) worst_ulps_small = std::max(worst_ulps_small, ulps(got, want));
  }
  EXPECT_LT(worst_abs, 4e-7);
  EXPECT_LT(worst_ulps, 8.0);
  EXPECT_LT(worst_ulps_small, 4.0);
  for (float x : {1e-30f, 1e-10f, 1e-5f}) EXPECT_LT(ulps(kernels::fast_erf(x), std::erf(double(x))), 2.0);
  EXPECT_EQ(kernels::fast_erf(0.0f), 0.0f);
  EXPECT_EQ(kernels::fast_erf(50.0f), 1.0f);
  EXPECT_EQ(kernels::fast_erf(-50.0f), -1.0f);
}

TEST(FastMath, ExpWithinAnUlpOfLibmOverTheNormalRange) {
  double worst = 0;
  for (int64_t i = -87 * 4096; i < 88 * 4096; ++i) {
    float x = float(i) / 4096.0f + 1.0f / 8192.0f;
    worst = std::max(worst, ulps(kernels::fast_exp(x), std::exp(double(x))));
  }
  EXPECT_LT(worst, 1.05);  // the header says 1.01
  EXPECT_EQ(kernels::fast_exp(0.0f), 1.0f);
}

// The edges every caller relies on: masked scores (-inf) and anything below -87.3 give
// exactly 0 (softmax and attention weights), large inputs stay finite, NaN propagates.
TEST(FastMath, ExpEdges) {
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {-inf, -1e30f, -1000.0f, -87.31f}) EXPECT_EQ(kernels::fast_exp(x), 0.0f) << x;
  EXPECT_GT(kernels::fast_exp(-87.3f), 0.0f);
  EXPECT_NEAR(kernels::fast_exp(-87.3f) / std::exp(double(-87.3f)), 1.0, 1e-6);
  const float top = float(std::exp(88.0));
  for (float x : {88.0f, 88.5f, 1000.0f, 1e30f, inf}) EXPECT_NEAR(kernels::fast_exp(x) / top, 1.0f, 1e-6f) << x;
  EXPECT_TRUE(std::isnan(kernels::fast_exp(std::numeric_limits<float>::quiet_NaN())));
  // The same edges when the loop is vectorised, as the kernels run it.
  float v[16] = {-inf, -1000.0f, 0.0f, 1.0f, inf, std::numeric_limits<float>::quiet_NaN(), -87.31f, 88.5f};
#pragma omp simd
  for (int i = 0; i < 16; ++i) v[i] = kernels::fast_exp(v[i]);
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_EQ(v[1], 0.0f);
  EXPECT_EQ(v[2], 1.0f);
  EXPECT_NEAR(v[3], std::exp(1.0f), 1e-6f);
  EXPECT_TRUE(std::isfinite(v[4]));
  EXPECT_TRUE(std::isnan(v[5]));
  EXPECT_EQ(v[6], 0.0f);
  EXPECT_TRUE(std::isfinite(v[7]));
}

TEST(FastMath, GeluF32AndItsGradientMatchF64) {
  Generator g(7);
  Tensor x64 = randn({4099}, DType::f64, &g) * 3.0;
  Tensor x32 = x64.to(DType::f32).requires_grad_();
  Tensor x64g = x32.detach().to(DType::f64).requires_grad_();
  Tensor w = randn({4099}, DType::f64, &g);
  Tensor y32 = gelu(x32), y64 = gelu(x64g);
  EXPECT_LT(amax(abs(y32.to(DType::f64) - y64)).item(), 2e-6);
  sum(y32 * w.to(DType::f32)).backward();
  sum(y64 * w).backward();
  EXPECT_LT(amax(abs(x32.grad().to(DType::f64) - x64g.grad())).item(), 2e-6);
}

#ifdef QS_WITH_OPTIMISED
int64_t count(const ops::KernelLog& log, ops::OpKind op, const std::string& kernel, bool match) {
  int64_t n = 0;
  for (auto& e : log.entries()) n += e.op == op && (e.kernel == kernel) == match;
  return n;
}

// The register-blocked f32 attention forward and backward have an AVX-512 build, its own kernel
// (cpu-avx512), taken exactly where oneDNN runs AVX-512 (CI's ONEDNN_MAX_CPU_ISA=AVX2 pass
// takes the AVX2 build, "cpu"); both builds agree with the f64 reference.
TEST(AttentionFastPaths, TheAvx512BuildRunsWhereOneDnnHasAvx512) {
  Generator g(11);
  Tensor q = randn({1, 4, 75, 32}, DType::f32, &g), k = randn({1, 2, 80, 32}, DType::f32, &g);
  Tensor v = randn({1, 2, 80, 48}, DType::f32, &g);
  const Attrs a = Attrs()
                      .set("scale", 1.0 / std::sqrt(32.0))
                      .set("causal", true)
                      .set("relative", std::string("none"))
                      .set("num_buckets", int64_t(32))
                      .set("max_distance", int64_t(128))
                      .set("bidirectional", false)
                      .set("return_bucket_weights", false);
  const std::vector<Tensor> in = {q, k, v, Tensor(), Tensor(), Tensor()};
  Tensor out;
  {
    ops::KernelLog log;
    out = ops::dispatch(ops::OpKind::attention, in, a)[0];
    EXPECT_EQ(count(log, ops::OpKind::attention, "cpu-avx512", true), backend::avx512() ? 1 : 0);
    EXPECT_EQ(count(log, ops::OpKind::attention, "cpu", true), backend::avx512() ? 0 : 1);
  }
  std::vector<Tensor> in64;
  for (const Tensor& t : in) in64.push_back(t.defined() ? t.to(DType::f64) : t);
  const Tensor want = ops::dispatch(ops::OpKind::attention, in64, a)[0];
  EXPECT_LT(amax(abs(out.to(DType::f64) - want)).item(), 1e-5);
  std::vector<std::vector<double>> builds;
  for (const char* kernel : {"cpu", "cpu-avx512"}) {
    if (std::string(kernel) == "cpu-avx512" && !backend::avx512()) continue;
    ops::OpCall call{ops::OpKind::attention, in, a, {}};
    for (auto& s : ops::run_meta(call)) call.out.push_back(ops::empty_output(s));
    ops::run_kernel(call, kernel);
    EXPECT_LT(amax(abs(call.out[0].to(DType::f64) - want)).item(), 1e-5) << kernel;
    builds.push_back(call.out[0].to_vector());
  }
  if (builds.size() == 2) EXPECT_EQ(builds[0], builds[1]) << "the two builds sum in the same order";
  // The backward (register-blocked too: no relative bias, dk and dv multiples of 16) takes
  // the same choice, with the f64 gradients.
  std::vector<Tensor> leaves = {q.detach().requires_grad_(true), k.detach().requires_grad_(true),
                                v.detach().requires_grad_(true)};
  std::vector<Tensor> leaves64;
  for (const Tensor& t : leaves) leaves64.push_back(t.detach().to(DType::f64).requires_grad_(true));
  const Tensor r = randn(out.shape(), DType::f32, &g);
  {
    ops::KernelLog log;
    Tensor o = ops::dispatch(ops::OpKind::attention, {leaves[0], leaves[1], leaves[2], Tensor(), Tensor(), Tensor()},
                             a)[0];
    sum(o * r).backward();
    EXPECT_EQ(count(log, ops::OpKind::attention_backward, "cpu-avx512", true), backend::avx512() ? 1 : 0);
    EXPECT_EQ(count(log, ops::OpKind::attention_backward, "cpu", true), backend::avx512() ? 0 : 1);
  }
  Tensor o64 =
      ops::dispatch(ops::OpKind::attention, {leaves64[0], leaves64[1], leaves64[2], Tensor(), Tensor(), Tensor()}, a)[0];
  sum(o64 * r.to(DType::f64)).backward();
  for (size_t i = 0; i < 3; ++i)
    EXPECT_LT(amax(abs(leaves[i].grad().to(DType::f64) - leaves64[i].grad())).item(), 1e-4) << "input " << i;
}

TEST(ExpandedOperands, MatmulTakesOneDnnAndMatchesTheReference) {
  Generator g(3);
  Tensor row = randn({1, 33}, DType::f32, &g), b = randn({33, 17}, DType::f32, &g);
  Tensor a = row.expand({7, 33});  // stride 0 along M
  Tensor got;
  {
    ops::KernelLog log;
    got = matmul(a, b);
    EXPECT_EQ(count(log, ops::OpKind::matmul, "onednn", true), 1);
  }
  Tensor want = matmul(a.to(DType::f64).contiguous(), b.to(DType::f64));
  EXPECT_LT(amax(abs(got.to(DType::f64) - want)).item(), 1e-4);
  Tensor batch = randn({3, 33, 5}, DType::f32, &g);
  ops::KernelLog log;
  Tensor got3 = matmul(row.expand({3, 4, 33}), batch);  // stride 0 along the batch and M
  EXPECT_EQ(count(log, ops::OpKind::matmul, "onednn", false), 0);
  Tensor want3 = matmul(row.expand({3, 4, 33}).contiguous(), batch);
  EXPECT_LT(amax(abs(got3 - want3)).item(), 1e-5);
}

// sum/mean backward hand linear an expanded gradient; its matmuls must stay on oneDNN.
TEST(ExpandedOperands, LinearBackwardOfAMeanStaysOnOneDnn) {
  Generator g(4);
  Tensor x = randn({2, 9, 16}, DType::f32, &g).requires_grad_();
  Tensor w = randn({12, 16}, DType::f32, &g).requires_grad_();
  Tensor bias = randn({12}, DType::f32, &g).requires_grad_();
  {
    ops::KernelLog log;
    mean(linear(x, w, bias)).backward();
    EXPECT_EQ(count(log, ops::OpKind::matmul, "onednn", true), 2);
    EXPECT_EQ(count(log, ops::OpKind::matmul, "onednn", false), 0);
    EXPECT_EQ(count(log, ops::OpKind::linear, "onednn", false), 0);
  }
  // d mean / dx = (1/n) sum_n w[n, :]; d mean / dw = (1/n) sum over rows of x.
  double n = 2.0 * 9 * 12;
  Tensor gx = sum(w.detach(), {0}) / n, gw = sum(x.detach().reshape({-1, 16}), {0}) / n;
  EXPECT_LT(amax(abs(x.grad() - gx.expand({2, 9, 16}))).item(), 1e-6);
  EXPECT_LT(amax(abs(w.grad() - gw.expand({12, 16}))).item(), 1e-6);
  EXPECT_LT(amax(abs(bias.grad() - full({12}, 18.0 / n))).item(), 1e-6);
}

TEST(ExpandedOperands, LinearWithAnExpandedWeightTakesOneDnn) {
  Generator g(5);
  Tensor x = randn({5, 8}, DType::f32, &g), wrow = randn({1, 8}, DType::f32, &g);
  Tensor bias = randn({1}, DType::f32, &g).expand({6});
  ops::KernelLog log;
  Tensor got = linear(x, wrow.expand({6, 8}), bias);
  EXPECT_EQ(count(log, ops::OpKind::linear, "onednn", true), 1);
  Tensor want = linear(x, wrow.expand({6, 8}).contiguous(), bias.contiguous());
  EXPECT_LT(amax(abs(got - want)).item(), 1e-6);
}
// The first layer of an image or volume CNN (one input channel) runs on the 'c1' kernel,
// forward and backward-weights, with the f64 values.
TEST(ConvFastPaths, OneInputChannelTakesTheC1Kernel) {
  Generator g(6);
  for (Shape xs : {Shape{3, 1, 13, 11}, Shape{2, 1, 6, 7, 9}}) {
    Shape ws{5, 1, 3, 3};
    if (xs.size() == 5) ws.push_back(3);
    Tensor x = randn(xs, DType::f32, &g), w = randn(ws, DType::f32, &g).requires_grad_(true);
    Tensor b = randn({5}, DType::f32, &g).requires_grad_(true);
    Attrs a = Attrs().set("stride", Shape{1}).set("padding", Shape{1}).set("dilation", Shape{1}).set("groups", 1);
    ops::KernelLog log;
    Tensor y = ops::dispatch1(ops::OpKind::convolution, {x, w, b}, a);
    Tensor r = randn(y.shape(), DType::f32, &g);
    sum(y * r).backward();
    EXPECT_EQ(count(log, ops::OpKind::convolution, "c1", true), 1);
    EXPECT_EQ(count(log, ops::OpKind::convolution_backward_weight, "c1", true), 1);
    Tensor w64 = w.detach().to(DType::f64).requires_grad_(true), b64 = b.detach().to(DType::f64).requires_grad_(true);
    Tensor y64 = ops::dispatch1(ops::OpKind::convolution, {x.to(DType::f64), w64, b64}, a);
    sum(y64 * r.to(DType::f64)).backward();
    EXPECT_LT(amax(abs(y.detach().to(DType::f64) - y64.detach())).item(), 1e-4);
    EXPECT_LT(amax(abs(w.grad().to(DType::f64) - w64.grad())).item(), 1e-3);
    EXPECT_LT(amax(abs(b.grad().to(DType::f64) - b64.grad())).item(), 1e-3);
  }
}

// Convolution backward reorders its gradient once for both of its oneDNN ops (a
// StableOperands scope); the kept conversion must never outlive the buffer's contents.
TEST(ConvFastPaths, ReusedGradientConversionIsNeverStale) {
  Generator g(7);
  Tensor x = randn({4, 8, 10, 10}, DType::f32, &g), w = randn({16, 8, 3, 3}, DType::f32, &g);
  Tensor gy = randn({4, 16, 10, 10}, DType::f32, &g);
  Attrs a = Attrs().set("stride", Shape{1}).set("padding", Shape{1}).set("dilation", Shape{1}).set("groups", 1);
  Attrs ad = Attrs(a).set("input_shape", x.shape()), aw = Attrs(a).set("weight_shape", w.shape());
  auto both = [&] {
    ops::StableOperands stable;
    return std::pair{ops::dispatch1(ops::OpKind::convolution_backward_data, {gy, w}, ad),
                     ops::dispatch(ops::OpKind::convolution_backward_weight, {gy, x}, aw)[0]};
  };
  Tensor gx0 = ops::dispatch1(ops::OpKind::convolution_backward_data, {gy, w}, ad);
  Tensor gw0 = ops::dispatch(ops::OpKind::convolution_backward_weight, {gy, x}, aw)[0];
  auto [gx1, gw1] = both();
  EXPECT_EQ(amax(abs(gx1 - gx0)).item(), 0.0);
  EXPECT_EQ(amax(abs(gw1 - gw0)).item(), 0.0);
  gy.copy_(gy * 2.0);  // same buffer, new contents: a new scope must see them
  auto [gx2, gw2] = both();
  EXPECT_EQ(amax(abs(gx2 - gx0 * 2.0)).item(), 0.0);
  EXPECT_EQ(amax(abs(gw2 - gw0 * 2.0)).item(), 0.0);
}
// Backward-weights with input and output channels in multiples of 8 runs on 'direct8'
// (2-D and 3-D) where oneDNN runs AVX2 (on AVX-512 oneDNN's own is faster: CI's
// ONEDNN_MAX_CPU_ISA=AVX2 pass runs direct8 there), with the f64 gradients, and gives the
// same bits on a second call.
TEST(ConvFastPaths, EightChannelBlocksTakeTheDirectBackwardWeights) {
  Generator g(8);
  for (Shape xs : {Shape{3, 16, 9, 10}, Shape{2, 8, 5, 6, 7}}) {
    Shape ws{24, xs[1], 3, 3};
    if (xs.size() == 5) ws.push_back(3);
    Tensor x = randn(xs, DType::f32, &g), w = randn(ws, DType::f32, &g).requires_grad_(true);
    Tensor b = randn({24}, DType::f32, &g).requires_grad_(true);
    Attrs a = Attrs().set("stride", Shape{1}).set("padding", Shape{1}).set("dilation", Shape{1}).set("groups", 1);
    Tensor y = ops::dispatch1(ops::OpKind::convolution, {x, w, b}, a);
    Tensor r = randn(y.shape(), DType::f32, &g);
    {
      ops::KernelLog log;
      sum(y * r).backward();
      EXPECT_EQ(count(log, ops::OpKind::convolution_backward_weight, "direct8", true), backend::avx512() ? 0 : 1);
    }
    Tensor w64 = w.detach().to(DType::f64).requires_grad_(true), b64 = b.detach().to(DType::f64).requires_grad_(true);
    sum(ops::dispatch1(ops::OpKind::convolution, {x.to(DType::f64), w64, b64}, a) * r.to(DType::f64)).backward();
    EXPECT_LT(amax(abs(w.grad().to(DType::f64) - w64.grad())).item(), 1e-3);
    EXPECT_LT(amax(abs(b.grad().to(DType::f64) - b64.grad())).item(), 1e-3);
    Attrs aw = Attrs(a).set("weight_shape", w.shape());
    Tensor gy = r.contiguous();
    Tensor d1 = ops::dispatch(ops::OpKind::convolution_backward_weight, {gy, x}, aw)[0];
    Tensor d2 = ops::dispatch(ops::OpKind::convolution_backward_weight, {gy, x}, aw)[0];
    EXPECT_EQ(amax(abs(d1 - d2)).item(), 0.0);
  }
}

// bf16 max pooling backward with disjoint windows writes each gradient's bits to its input
// element: the same bits as the reference's sum 0 + g, -0 and NaN included.
TEST(PoolFastPaths, Bf16DisjointMaxPoolBackwardGivesTheSumsBits) {
  Generator g(9);
  Tensor x = randn({2, 3, 4, 6}, DType::f32, &g).to(DType::bf16);
  Attrs a = Attrs().set("kernel", Shape{2}).set("stride", Shape{2}).set("padding", Shape{0});
  auto fwd = ops::dispatch(ops::OpKind::max_pool, {x}, a);
  Tensor gy = randn(fwd[0].shape(), DType::f32, &g).to(DType::bf16).contiguous();
  bf16* gp = static_cast<bf16*>(gy.raw_data());
  gp[0].bits = 0x8000;  // -0
  gp[1].bits = 0x7f81;  // a signalling NaN
  gp[2].bits = 0xffc0;  // a quiet NaN
  Attrs ab = Attrs(a).set("input_shape", x.shape());
  ops::KernelLog log;
  Tensor got = ops::dispatch1(ops::OpKind::max_pool_backward, {gy, fwd[1]}, ab);
  EXPECT_EQ(count(log, ops::OpKind::max_pool_backward, "cpu", true), 1);
  ops::OpCall ref{ops::OpKind::max_pool_backward, {gy, fwd[1]}, ab, {empty(x.shape(), DType::bf16)}};
  ops::op_def(ops::OpKind::max_pool_backward).impl->ref(ref);
  const bf16 *gb = static_cast<const bf16*>(got.raw_data()), *rb = static_cast<const bf16*>(ref.out[0].raw_data());
  int64_t differ = 0;
  for (int64_t i = 0; i < x.numel(); ++i) differ += gb[i].bits != rb[i].bits;
  EXPECT_EQ(differ, 0);
}
#endif

}  // namespace
}  // namespace qs
