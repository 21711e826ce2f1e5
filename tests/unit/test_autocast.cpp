#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ops/op.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

using namespace qs;

TEST(Autocast, LinearRunsInBf16AndReturnsF32) {
  Generator g(3);
  Tensor x = randn({8, 64}, DType::f32, &g);
  Tensor w = randn({16, 64}, DType::f32, &g).requires_grad_();
  Tensor b = randn({16}, DType::f32, &g).requires_grad_();
  Tensor ref = linear(x, w, b);
  Tensor y;
  {
    Autocast ac;
    EXPECT_TRUE(autocast_active());
    y = linear(x, w, b);
  }
  EXPECT_FALSE(autocast_active());
  EXPECT_EQ(y.dtype(), DType::f32);
  // Same as multiplying bf16-rounded operands in f32.
  Tensor xr = x.to(DType::bf16).to(DType::f32), wr = w.detach().to(DType::bf16).to(DType::f32);
  Tensor expect = linear(xr, wr, b.detach());
  auto got = y.to_vector(), want = expect.to_vector(), full = ref.to_vector();
  double worst_vs_f32 = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-4 * (1 + std::abs(want[i])));
    worst_vs_f32 = std::max(worst_vs_f32, std::abs(got[i] - full[i]));
  }
  EXPECT_GT(worst_vs_f32, 0.0);  // it really ran on rounded operands
  // Gradients reach the f32 master weights, in f32.
  sum(y).backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_EQ(w.grad().shape(), w.shape());
  EXPECT_EQ(b.grad().dtype(), DType::f32);
}

// The f32 weight gradient of a bf16 product is kept in f32: 1 + 2^-8 is exact in f32 and
// a tie between two bf16 values, so a gradient rounded to the bf16 copy's dtype on its way
// back (as before) would read 1.
TEST(Autocast, WeightGradientOfABf16CopyIsNotRoundedToBf16) {
  Tensor w = full({1, 1}, 0.5).requires_grad_();
  Tensor x = from_vector({1.0, 1.0 / 256}, {2, 1});  // both exact in bf16
  Tensor y;
  {
    Autocast ac;
    y = linear(x, w);
  }
  sum(y).backward();
  ASSERT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_EQ(w.grad().to_vector()[0], 1.0 + 1.0 / 256);
}

TEST(Autocast, ReductionsStayF32) {
  Tensor x = randn({4, 5});
  Autocast ac;
  Tensor y = matmul(x, x.t());
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_EQ(sum(y).dtype(), DType::f32);
}

TEST(Autocast, ScopeMaySpanTrainingSteps) {
  Generator g(5);
  Tensor w = randn({4, 8}, DType::f32, &g).requires_grad_();
  Tensor x = randn({3, 8}, DType::f32, &g);
  Autocast ac;
  Tensor first;
  for (int step = 0; step < 3; ++step) {
    Tensor y = linear(x, w);
    if (step == 0) first = y.detach().clone();
    sum(y).backward();  // a fresh graph every step
    NoGrad ng;
    w.copy_(w - w.grad() * 0.5);  // the update must be seen by the next forward
    w.zero_grad();
  }
  Tensor again = linear(x, w);
  EXPECT_NE(again.to_vector(), first.to_vector());
}

// A conv net's activations stay bf16 under autocast: convolution returns bf16 (kLowpOut),
// batch norm with its ReLU and max pooling read and write bf16 with f32 statistics, and
// any other op (here mean) widens to f32; the parameters' gradients come back in f32 and
// equal the ones computed with every op forced to its reference kernel.
TEST(Autocast, ConvNetActivationsStayBf16) {
  Generator g(11);
  Tensor x = randn({4, 1, 12, 12}, DType::f32, &g);
  Tensor w1 = (randn({8, 1, 3, 3}, DType::f32, &g) * 0.3).requires_grad_();
  Tensor b1 = zeros({8}).requires_grad_();
  Tensor w2 = (randn({16, 8, 3, 3}, DType::f32, &g) * 0.1).requires_grad_();
  Tensor gamma = ones({8}).requires_grad_(), beta = zeros({8}).requires_grad_();
  Tensor rm = zeros({8}), rv = ones({8});
  auto step = [&](bool check_dtypes) {
    for (Tensor* p : {&w1, &b1, &w2, &gamma, &beta}) p->zero_grad();
    Autocast ac;
    Tensor h = conv2d(x, w1, b1, 1, 1);
    Tensor a = batch_norm_relu(h, rm, rv, gamma, beta, true, 0.1, 1e-5);
    Tensor p = max_pool2d(a, 2);
    Tensor c = conv2d(p, w2, Tensor(), 1, 1);
    Tensor m = mean(c, {2, 3});
    if (check_dtypes) {
      EXPECT_EQ(h.dtype(), DType::bf16);
      EXPECT_EQ(a.dtype(), DType::bf16);
      EXPECT_EQ(p.dtype(), DType::bf16);
      EXPECT_EQ(c.dtype(), DType::bf16);
      EXPECT_EQ(m.dtype(), DType::f32);
      EXPECT_EQ(rm.dtype(), DType::f32);  // the running statistics stay f32
    }
    sum(m * m).backward();
    std::vector<Tensor> grads;
    for (Tensor* t : {&w1, &b1, &w2, &gamma, &beta}) {
      EXPECT_EQ(t->grad().dtype(), DType::f32);
      grads.push_back(t->grad().clone());
    }
    return grads;
  };
  auto fast = step(true);
  std::vector<Tensor> ref;
  {
    ops::ReferenceKernels all_ref;
    ref = step(false);
  }
  for (size_t i = 0; i < fast.size(); ++i) {
    auto a = fast[i].to_vector(), b = ref[i].to_vector();
    double peak = 0;
    for (double v : b) peak = std::max(peak, std::abs(v));
    for (size_t j = 0; j < a.size(); ++j) EXPECT_NEAR(a[j], b[j], 2e-2 * peak + 1e-6) << "parameter " << i;
  }
}

// The gradient of a bf16 activation used twice is summed (an add, which autocast widens to
// f32) and handed to the op that made it in that op's dtype again.
TEST(Autocast, SummedGradientOfABf16ActivationKeepsItsDtype) {
  Generator g(12);
  Tensor x = randn({2, 3, 6, 6}, DType::f32, &g).requires_grad_();
  Tensor rm = zeros({3}), rv = ones({3});
  Autocast ac;
  Tensor a = batch_norm(x.to(DType::bf16), rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5);
  ASSERT_EQ(a.dtype(), DType::bf16);
  Tensor y = max_pool2d(a, 2);
  sum(y * 2.0 + mean(a, {2, 3}, true).expand(y.shape())).backward();  // a reaches the loss twice
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().dtype(), DType::f32);
}

// The vectorised rounding (eight lanes at a time, src/kernels/cpu/simd_avx2.h) agrees with
// f32_to_bf16 bit for bit: ties to even both ways, the largest finite values rounding to
// infinity, infinities, signed zeros, subnormals and NaNs (which stay quiet NaNs).
TEST(Autocast, VectorisedBf16RoundingMatchesTheScalarOne) {
  auto from_bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  std::vector<float> v = {1.0f, 1.00390625f, 1.01171875f, -1.00390625f, 3.4028235e38f, -3.4028235e38f,
                          from_bits(0x7f7f8000u), INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -1e-45f,
                          from_bits(0x7fc00000u), from_bits(0x7f800001u), from_bits(0xffbfffffu), 65504.0f, 1e-3f};
  Generator g(13);
  for (double r : randn({45}, DType::f32, &g).to_vector()) v.push_back(float(r * 1000));
  Tensor t = from_vector(std::vector<double>(v.begin(), v.end()), {int64_t(v.size())});
  // from_vector goes through double, which keeps every f32 value but may quiet a
  // signalling NaN: write the exact bits.
  std::memcpy(t.raw_data(), v.data(), v.size() * 4);
  Tensor b = t.to(DType::bf16);
  const bf16* got = static_cast<const bf16*>(b.raw_data());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(got[i].bits, f32_to_bf16(v[i]).bits) << "value " << i << " " << v[i];
  Tensor back = b.to(DType::f32);
  const float* w = static_cast<const float*>(back.raw_data());
  for (size_t i = 0; i < v.size(); ++i) {
    float want = bf16_to_f32(got[i]);
    EXPECT_EQ(std::memcmp(&w[i], &want, 4), 0) << "value " << i;
  }
}
