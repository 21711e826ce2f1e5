// Fake quantisation (the op, its straight-through / LSQ backward checked against the
// formulas, since finite differences of a step function are zero), observers and the
// FakeQuantize module.
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/fake_quant.h"
#include "qiusuo/quant/fake_quantize.h"
#include "qiusuo/quant/observer.h"
#include "test_util.h"

using namespace qs;
using namespace qs::quant;
using qs::testing::error_of;

namespace {
Tensor vec(std::vector<double> v, DType dt = DType::f32) { return from_vector(v, {int64_t(v.size())}, dt); }
bool all_equal(const Tensor& a, const Tensor& b) { return a.shape() == b.shape() && a.to_vector() == b.to_vector(); }
}  // namespace

TEST(FakeQuantize, RoundsHalfToEvenAndSaturates) {
  // x / s = -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 1000, -1000 with s = 0.5 and zp = 3 (s8).
  Tensor x = vec({-1.25, -0.75, -0.25, 0.25, 0.75, 1.25, 500, -500});
  std::vector<double> y = fake_quantize(x, vec({0.5}), vec({3}, DType::i32), -1, -128, 127).to_vector();
  std::vector<double> want = {-1.0, -1.0, 0.0, 0.0, 1.0, 1.0, (127 - 3) * 0.5, (-128 - 3) * 0.5};
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], want[i]) << i;
}

TEST(FakeQuantize, StraightThroughAndLsqGradientsFollowTheirFormulas) {
  Generator g(3);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = (randn({4, 3, 9}, dt, &g) * 3.0).requires_grad_(true);
    Tensor s = vec({0.02, 0.05, 0.011}, dt).requires_grad_(true);
    Tensor z = vec({0, 4, -3}, DType::i32);
    Tensor w = randn({4, 3, 9}, dt, &g);
    Tensor y = fake_quantize(x, s, z, 1, -128, 127);
    sum(y * w).backward();
    auto xv = x.detach().to_vector(), wv = w.to_vector(), dx = x.grad().to_vector(), ds = s.grad().to_vector();
    std::vector<double> sv = s.detach().to_vector(), want_ds(3, 0.0);
    int inside = 0, outside = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
      size_t c = (i / 9) % 3;
      int zp = int(z.to_vector()[c]);
      double q_raw = std::nearbyint(float(xv[i]) * (1.0f / float(sv[c]))) + zp;
      bool in = q_raw >= -128 && q_raw <= 127;
      (in ? inside : outside)++;
      EXPECT_EQ(dx[i], in ? wv[i] : 0.0) << i;
      double q = std::clamp(q_raw, -128.0, 127.0);
      want_ds[c] += wv[i] * (in ? (q - zp) - xv[i] / sv[c] : q - zp);
    }
    EXPECT_GT(inside, 20);
    EXPECT_GT(outside, 20);
    for (size_t c = 0; c < 3; ++c) EXPECT_NEAR(ds[c], want_ds[c], 1e-4 * (1 + std::abs(want_ds[c]))) << c;
  }
}

TEST(FakeQuantize, RejectsBadParametersWithClearErrors) {
  Tensor x = randn({3, 4});
  auto fq = [&](Tensor s, Tensor z, int64_t axis, int64_t lo = -128, int64_t hi = 127) {
    return error_of([&] { fake_quantize(x, s, z, axis, lo, hi); });
  };
  EXPECT_NE(fq(vec({0.0}), vec({0}, DType::i32), -1).find("scale[0] must be finite and > 0"), std::string::npos);
  EXPECT_NE(fq(vec({NAN}), vec({0}, DType::i32), -1).find("scale[0]"), std::string::npos);
  EXPECT_NE(fq(vec({0.1}), vec({300}, DType::i32), -1).find("zero_point[0] = 300 is outside"), std::string::npos);
  EXPECT_NE(fq(vec({0.1, 0.1}), vec({0, 0}, DType::i32), 0).find("scale must be a floating [3]"), std::string::npos);
  EXPECT_NE(fq(vec({0.1}), vec({0}, DType::i64), -1).find("zero_point must be i32"), std::string::npos);
  EXPECT_NE(fq(vec({0.1}), vec({0}, DType::i32), 2).find("axis"), std::string::npos);
  EXPECT_NE(fq(vec({0.1}), vec({5}, DType::i32), -1, 5, 5).find("qmin < qmax"), std::string::npos);
  EXPECT_NE(error_of([&] { fake_quantize(x.to(DType::bf16), vec({0.1}), vec({0}, DType::i32), -1, 0, 255); })
                .find("f32 or f64"), std::string::npos);
}

TEST(Observer, MinMaxFormulasAndErrors) {
  ObserverOptions o;  // u8 affine
  MinMaxObserver m(o);
  EXPECT_NE(error_of([&] { m.qparams(); }).find("no data observed"), std::string::npos);
  m.observe(vec({0.5, 2.0, 1.0}));  // zero is included: [0, 2]
  QParams qp = m.qparams();
  EXPECT_EQ(qp.scale[0], 2.0f / 255.0f);
  EXPECT_EQ(qp.zero_point[0], 0);
  m.observe(vec({-1.0}));
  qp = m.qparams();
  EXPECT_EQ(qp.scale[0], 3.0f / 255.0f);
  EXPECT_EQ(qp.zero_point[0], int(std::nearbyint(0 - (-1.0f / (3.0f / 255.0f)))));
  MinMaxObserver zeros_only(o);
  zeros_only.observe(zeros({5}));
  EXPECT_NE(error_of([&] { zeros_only.qparams(); }).find("every observed value was 0"), std::string::npos);
  MinMaxObserver nan(o);
  nan.observe(vec({1.0, NAN}));
  EXPECT_NE(error_of([&] { nan.qparams(); }).find("NaN"), std::string::npos);
  ObserverOptions sym;
  sym.dtype = QDtype::s8, sym.symmetric = true, sym.reduce_range = true;
  MinMaxObserver s(sym);
  s.observe(vec({-3.0, 1.0}));
  qp = s.qparams();
  EXPECT_EQ(qp.scale[0], 3.0f / (127.0f / 2.0f));
  EXPECT_EQ(qp.zero_point[0], 0);
  EXPECT_EQ(qp.qmin(), -64);
  EXPECT_EQ(qp.qmax(), 63);
}

TEST(Observer, PerChannelAndMovingAverage) {
  ObserverOptions o;
  o.dtype = QDtype::s8, o.symmetric = true, o.axis = 0, o.channels = 2;
  PerChannelMinMaxObserver pc(o);
  pc.observe(from_vector({1, -4, 2, 0.5, 0.25, -0.125}, {2, 3}));
  QParams qp = pc.qparams();
  EXPECT_EQ(qp.axis, 0);
  EXPECT_EQ(qp.scale[0], 4.0f / 127.5f);
  EXPECT_EQ(qp.scale[1], 0.5f / 127.5f);
  EXPECT_NE(error_of([&] { pc.observe(zeros({3, 3})); }).find("expected 2 channels along axis 0"), std::string::npos);
  MovingAverageMinMaxObserver ma;
  ma.observe(vec({-1.0, 1.0}));
  ma.observe(vec({-2.0, 3.0}));
  EXPECT_EQ(ma.min_val().item(), double(-1.0f + 0.01f * (-2.0f + 1.0f)));
  EXPECT_EQ(ma.max_val().item(), double(1.0f + 0.01f * (3.0f - 1.0f)));
}

TEST(Observer, StateIsSavedAndResumes) {
  HistogramObserver a;
  Generator g(5);
  a.observe(randn({500}, DType::f32, &g));
  a.observe(randn({500}, DType::f32, &g) * 3.0);  // grows the range: re-binned
  double mass = sum(a.histogram()).item();
  EXPECT_NEAR(mass, 1000.0, 1e-3);
  HistogramObserver b;
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.qparams().scale, a.qparams().scale);
  EXPECT_EQ(b.qparams().zero_point, a.qparams().zero_point);
  Tensor more = randn({200}, DType::f32, &g);
  a.observe(more), b.observe(more);
  EXPECT_EQ(b.qparams().scale, a.qparams().scale);
}

TEST(Observer, HistogramPercentileCoversTheMass) {
  ObserverOptions o;
  o.method = "percentile", o.percentile = 99.0;
  HistogramObserver h(o);
  h.observe(arange(0, 1000, 1) / 100.0);  // uniform on [0, 9.99]
  auto [lo, hi] = h.clipping_range();
  EXPECT_NEAR(lo, 0.1, 0.02);
  EXPECT_NEAR(hi, 9.89, 0.02);
}

TEST(FakeQuantizeModule, ObservesThenQuantisesAndSwitches) {
  FakeQuantize fq(ObserverKind::minmax, ObserverOptions{});
  Tensor x = vec({-1.0, 0.3, 2.0});
  Tensor y = fq(x);
  QParams qp = fq.qparams();
  EXPECT_EQ(qp.scale[0], 3.0f / 255.0f);
  EXPECT_TRUE(all_equal(y, fake_quantize(x, qp)));
  fq.disable_fake_quant();
  EXPECT_TRUE(fq(x).same(x));
  fq.disable_observer();
  fq.enable_fake_quant();
  fq(vec({-10.0, 10.0}));
  EXPECT_EQ(fq.qparams().scale[0], 3.0f / 255.0f);  // unchanged: not observing
  auto sd = fq.state_dict();
  FakeQuantize other(ObserverKind::minmax, ObserverOptions{});
  other.load_state_dict(sd);
  EXPECT_FALSE(other.observer_enabled());
  EXPECT_EQ(other.qparams().scale, fq.qparams().scale);
}

TEST(FakeQuantizeModule, LearnableScaleGetsTheLsqGradScale) {
  FakeQuantize fq(ObserverKind::minmax, ObserverOptions{}, true);
  Generator g(9);
  Tensor x = randn({4, 25}, DType::f32, &g);
  fq(x);  // observation initialises the scale
  fq.disable_observer();
  Tensor s = fq.scale();
  ASSERT_TRUE(s.requires_grad());
  Tensor w = randn({4, 25}, DType::f32, &g);
  sum(fq(x) * w).backward();
  Tensor s2 = s.detach().clone().requires_grad_(true);
  sum(fake_quantize(x, s2, fq.zero_point(), -1, 0, 255) * w).backward();
  double factor = 1.0 / std::sqrt(100.0 * 255.0);
  EXPECT_NEAR(s.grad().item(), s2.grad().item() * factor, 1e-6 * std::abs(s2.grad().item()) + 1e-9);
}
