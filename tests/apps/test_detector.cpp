// The FCOS-style defect detectors: map shapes of both models, target assignment worked by
// hand, the loss's gradient against finite differences, NMS and decoding by hand, and a
// few steps of training that fit one batch.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "ops/harness.h"
#include "qiusuo/apps/detector.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "test_util.h"

using namespace qs;
using apps::DetectorConfig;

namespace {
DetectorConfig tiny(const std::string& model) {
  DetectorConfig c;
  c.model = model;
  c.width = 8;
  c.channels = 16;
  c.heads = 2;
  c.frames = 3;
  return c;
}
Tensor box(std::vector<double> v) { return from_vector(v, {int64_t(v.size() / 4), 4}); }
Tensor label(std::vector<double> v) { return from_vector(v, {int64_t(v.size())}, DType::i64); }
}  // namespace

TEST(Detector, MapsOfBothModels) {
  Generator g(1);
  for (const char* model : {"cnn", "spatiotemporal"}) {
    apps::Detector d(tiny(model), g);
    const int64_t T = d.config().frames_in();
    apps::DetectorMaps m = d.maps(randn({2, T, 1, 64, 48}, DType::f32, &g));
    EXPECT_EQ(m.cls.shape(), (Shape{2, 6, 8, 6})) << model;
    EXPECT_EQ(m.reg.shape(), (Shape{2, 4, 8, 6}));
    EXPECT_EQ(m.ctr.shape(), (Shape{2, 1, 8, 6}));
    for (double v : m.reg.to_vector()) EXPECT_GT(v, 0);
    // Every class starts at probability 0.01.
    EXPECT_NEAR(mean(sigmoid(m.cls)).item(), 0.01, 0.01);
  }
  apps::Detector st(tiny("spatiotemporal"), g);
  EXPECT_NE(qs::testing::error_of([&] { st.maps(randn({2, 2, 1, 64, 64})); }).find("expected frames [B, 3, 1, H, W]"),
            std::string::npos);
  EXPECT_NE(qs::testing::error_of([] { DetectorConfig::from_json(nlohmann::json{{"model", "rnn"}}); }).find("cnn or spatiotemporal"),
            std::string::npos);
}

// A 64 x 64 image at stride 8: locations centred at 4, 12, ..., 60. The box (10, 10, 50, 40)
// (centre (30, 25)) holds centres x in {12, ..., 44} and y in {12, ..., 36}; within 1.5 x 8 =
// 12 of its centre: x in {20, 28, 36} (j = 2..4), y in {20, 28, 36} (i = 2..4): 9 positives.
TEST(Detector, TargetsByHand) {
  apps::DetectorMaps m;
  m.cls = zeros({1, 6, 8, 8});
  m.stride = 8;
  auto t = apps::fcos_targets({box({10, 10, 50, 40})}, {label({2})}, m);
  EXPECT_EQ(t.n_pos, 9);
  const auto cls = t.cls.to_vector(), reg = t.reg.to_vector(), ctr = t.ctr.to_vector();
  int ones = 0;
  for (double v : cls) ones += v == 1.0;
  EXPECT_EQ(ones, 9);
  EXPECT_EQ(cls[size_t((2 * 8 + 3) * 8 + 3)], 1.0);  // class 2 at (3, 3)
  // At (i, j) = (3, 3), centre (28, 28): l 18, t 18, r 22, b 12.
  auto at = [&](int q) { return reg[size_t((q * 8 + 3) * 8 + 3)]; };
  EXPECT_EQ(at(0), 18);
  EXPECT_EQ(at(1), 18);
  EXPECT_EQ(at(2), 22);
  EXPECT_EQ(at(3), 12);
  EXPECT_NEAR(ctr[size_t(3 * 8 + 3)], std::sqrt(18.0 / 22 * 12.0 / 18), 1e-6);
  EXPECT_EQ(ctr[size_t(1 * 8 + 1)], 0.0);
  // Overlapping boxes: the smaller takes a shared location. A box smaller than a cell
  // (30, 30, 32, 32) claims the location nearest its centre, (3, 3).
  auto u = apps::fcos_targets({box({10, 10, 50, 40, 20, 20, 40, 36, 30, 30, 32, 32})}, {label({0, 1, 5})}, m);
  const auto c2 = u.cls.to_vector();
  EXPECT_EQ(c2[size_t((5 * 8 + 3) * 8 + 3)], 1.0);
  // (i, j) = (3, 4), centre (36, 28): inside both big boxes and near both centres; the
  // second, (20, 20, 40, 36), is smaller.
  EXPECT_EQ(c2[size_t((1 * 8 + 3) * 8 + 4)], 1.0);
  EXPECT_EQ(c2[size_t((0 * 8 + 3) * 8 + 4)], 0.0);
  EXPECT_EQ(c2[size_t((0 * 8 + 3) * 8 + 2)], 1.0);  // (3, 2), centre (20, 28): on B's edge, so A's
  EXPECT_NE(qs::testing::error_of([&] { apps::fcos_targets({box({5, 5, 5, 9})}, {label({0})}, m); }).find("empty"),
            std::string::npos);
  EXPECT_NE(qs::testing::error_of([&] { apps::fcos_targets({box({5, 5, 9, 9})}, {label({6})}, m); }).find("class 6"),
            std::string::npos);
}

// The loss is a composite of differentiable ops: its gradient with respect to the three
// maps against central differences, in f64.
TEST(Detector, LossGradientMatchesFiniteDifferences) {
  Generator g(2);
  apps::DetectorMaps shape;
  shape.cls = zeros({1, 3, 4, 4});
  shape.stride = 8;
  const auto t = apps::fcos_targets({box({2, 3, 20, 25, 17, 9, 31, 30})}, {label({1, 2})}, shape);
  ASSERT_GT(t.n_pos, 0);
  auto to64 = [](const apps::DetectorTargets& s) {
    apps::DetectorTargets d = s;
    d.cls = s.cls.to(DType::f64), d.reg = s.reg.to(DType::f64), d.ctr = s.ctr.to(DType::f64);
    return d;
  };
  const auto t64 = to64(t);
  auto f = [&](const std::vector<Tensor>& in) {
    apps::DetectorMaps m;
    m.cls = in[0], m.reg = in[1], m.ctr = in[2];
    m.stride = 8;
    return std::vector<Tensor>{apps::detector_loss(m, t64).total};
  };
  std::vector<Tensor> in = {randn({1, 3, 4, 4}, DType::f64, &g).requires_grad_(),
                            (uniform({1, 4, 4, 4}, 2, 20, DType::f64, &g)).requires_grad_(),
                            randn({1, 1, 4, 4}, DType::f64, &g).requires_grad_()};
  EXPECT_EQ(ops::gradcheck(f, in), "");
}

TEST(Detector, NmsAndDecodingByHand) {
  // B overlaps A with IoU 81 / 119 = 0.68.
  const std::vector<std::array<double, 4>> b = {{0, 0, 10, 10}, {1, 1, 11, 11}, {20, 20, 30, 30}};
  EXPECT_EQ(apps::nms(b, {0.9, 0.8, 0.7}, 0.5), (std::vector<int>{0, 2}));
  EXPECT_EQ(apps::nms(b, {0.9, 0.8, 0.7}, 0.7), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(apps::nms(b, {0.5, 0.9, 0.5}, 0.5), (std::vector<int>{1, 2}));
  // One confident location: class 1 at (i, j) = (2, 5) of a 4 x 8 map at stride 8, centre
  // (44, 20), distances 6, 7, 8, 9: the box (38, 13, 52, 29); everything else far below 0.05.
  apps::DetectorMaps m;
  m.stride = 8;
  m.cls = full({1, 3, 4, 8}, -12.0);
  m.ctr = full({1, 1, 4, 8}, -12.0);
  m.reg = full({1, 4, 4, 8}, 5.0);
  {
    float* c = m.cls.data_ptr<float>();
    c[(1 * 4 + 2) * 8 + 5] = 12;
    m.ctr.data_ptr<float>()[2 * 8 + 5] = 12;
    float* r = m.reg.data_ptr<float>();
    for (int q = 0; q < 4; ++q) r[(q * 4 + 2) * 8 + 5] = float(6 + q);
  }
  const auto found = apps::decode_detections(m, 32, 64);
  ASSERT_EQ(found.size(), 1u);
  ASSERT_EQ(found[0].size(), 1u);
  EXPECT_EQ(found[0][0].cls, 1);
  EXPECT_GT(found[0][0].score, 0.99);
  EXPECT_EQ(found[0][0].box, (std::array<double, 4>{38, 13, 52, 29}));
}

// Both models fit one batch: 40 AdamW steps take the loss below half its start.
TEST(Detector, FitsOneBatch) {
  for (const char* model : {"cnn", "spatiotemporal"}) {
    Generator g(7);
    apps::Detector d(tiny(model), g);
    const int64_t T = d.config().frames_in();
    const Tensor x = randn({2, T, 1, 64, 64}, DType::f32, &g);
    std::vector<Tensor> params;
    for (auto& [n, p] : d.named_parameters()) params.push_back(p);
    optim::AdamW opt(params, 3e-3);
    const std::vector<Tensor> boxes = {box({8, 8, 40, 30}), box({20, 24, 60, 50, 2, 40, 20, 62})};
    const std::vector<Tensor> labels = {label({0}), label({3, 5})};
    double first = 0, last = 0;
    for (int step = 0; step < 40; ++step) {
      auto m = d.maps(x);
      auto l = apps::detector_loss(m, apps::fcos_targets(boxes, labels, m));
      if (step == 0) first = l.total.item();
      last = l.total.item();
      ASSERT_TRUE(std::isfinite(last)) << model << " step " << step;
      d.zero_grad();
      l.total.backward();
      opt.step();
    }
    EXPECT_LT(last, 0.5 * first) << model;
  }
}

// travel: frame k of T is shifted up by (T - 1 - k) * travel rows before the backbone, so
// a model with travel 4 on raw frames equals the same weights with travel 0 on frames
// shifted by hand.
TEST(Detector, TravelAlignsEarlierFrames) {
  Generator g(9);
  DetectorConfig c = tiny("spatiotemporal");
  c.travel = 4;
  apps::Detector moved(c, g);
  c.travel = 0;
  apps::Detector plain(c, g);
  plain.load_state_dict(moved.state_dict());
  moved.eval(), plain.eval();
  const Tensor x = randn({1, 3, 1, 32, 16}, DType::f32, &g);
  std::vector<Tensor> frames;
  for (int64_t k = 0; k < 3; ++k) {
    const int64_t d = (2 - k) * 4;
    const Tensor f = x.select(1, k);
    frames.push_back(d == 0 ? f : cat({f.narrow(2, d, 32 - d), zeros({1, 1, d, 16})}, 2));
  }
  NoGrad ng;
  const auto a = moved.maps(x).cls.to_vector(), b = plain.maps(stack(frames, 1)).cls.to_vector();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5);
  const auto u = plain.maps(x).cls.to_vector();
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - u[i]));
  EXPECT_GT(diff, 1e-4);  // the shift changes what the model sees
}
