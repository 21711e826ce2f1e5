// Losses, softmax and dropout against numbers computed by PyTorch 1.13 (the python line
// that produced each is quoted above it).
#include <gtest/gtest.h>

#include "oracle_util.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

using namespace qs;
using qs::test::expect_near;

namespace {
Tensor ce_logits() {
  return from_vector({1.0, 2.0, 0.5, -1.0, 0.3, 2.2, 0.1, 0.2, 0.3, 3.0, -2.0, 0.0}, {4, 3}, DType::f64);
}
Tensor ce_target() { return from_vector({0, 2, -100, 1}, {4}, DType::i64); }
}  // namespace

// L=torch.tensor([[1.0,2.0,0.5],[-1.0,0.3,2.2],[0.1,0.2,0.3],[3.0,-2.0,0.0]],dtype=torch.float64)
// t=torch.tensor([0,2,-100,1])
// F.cross_entropy(L,t,ignore_index=-100,label_smoothing=0.1,reduction=r)
TEST(Losses, CrossEntropyIgnoreIndexLabelSmoothing) {
  Tensor L = ce_logits(), t = ce_target();
  expect_near(cross_entropy(L, t, -100, 0.1, "mean"), {2.2045284302}, 1e-9);
  expect_near(cross_entropy(L, t, -100, 0.1, "sum"), {6.6135852907}, 1e-9);
  expect_near(cross_entropy(L, t, -100, 0.1, "none"), {1.4477021174, 0.3442312712, 0.0, 4.8216519020}, 1e-9);
}

// l=F.cross_entropy(L,t,ignore_index=-100,label_smoothing=0.1); l.backward(); L.grad
TEST(Losses, CrossEntropyGradient) {
  Tensor L = ce_logits().requires_grad_();
  cross_entropy(L, ce_target(), -100, 0.1).backward();
  expect_near(L.grad(),
              {-2.3403647857e-01, 1.9839946196e-01, 3.5637016611e-02, 3.0369984840e-04, 3.0773216704e-02,
               -3.1076916553e-02, 0, 0, 0, 3.0438859641e-01, -3.0898529080e-01, 4.5966943971e-03},
              1e-9);
}

TEST(Losses, CrossEntropyWithoutSmoothingIsNllOfLogSoftmax) {
  Tensor L = ce_logits(), t = ce_target();
  expect_near(cross_entropy(L, t), nll_loss(log_softmax(L, 1), t).to_vector(), 1e-12);
  EXPECT_THROW(cross_entropy(L, t, -100, 1.5), Error);
  EXPECT_THROW(cross_entropy(L, t, -100, 0.0, "avg"), Error);
}

// lp=torch.tensor([[-1.2,-0.7,-2.0,-3.1],[-0.5,-1.5,-2.5,-0.9],[-0.3,-1.1,-4.0,-2.2]],dtype=torch.float64)
// tt=torch.tensor([1,3,0]); w=torch.tensor([0.5,2.0,1.0,1.5],dtype=torch.float64)
// F.nll_loss(lp,tt,weight=w,reduction=r)
TEST(Losses, NllLossWithClassWeights) {
  Tensor lp = from_vector({-1.2, -0.7, -2.0, -3.1, -0.5, -1.5, -2.5, -0.9, -0.3, -1.1, -4.0, -2.2}, {3, 4}, DType::f64);
  Tensor t = from_vector({1, 3, 0}, {3}, DType::i64);
  Tensor w = from_vector({0.5, 2.0, 1.0, 1.5}, {4}, DType::f64);
  expect_near(nll_loss(lp, t, w, -100, "mean"), {0.725}, 1e-12);
  expect_near(nll_loss(lp, t, w, -100, "sum"), {2.9}, 1e-12);
  expect_near(nll_loss(lp, t, w, -100, "none"), {1.4, 1.35, 0.15}, 1e-12);
  // d mean / d lp[n, t] = -w[t] / sum w[t] = -w[t] / 4
  Tensor lpg = lp.detach().requires_grad_();
  nll_loss(lpg, t, w).backward();
  expect_near(lpg.grad(), {0, -0.5, 0, 0, 0, 0, 0, -0.375, -0.125, 0, 0, 0}, 1e-12);
}

TEST(Losses, NllLossRejectsBadTargets) {
  Tensor lp = zeros({2, 3}, DType::f64);
  EXPECT_THROW(nll_loss(lp, from_vector({0, 3}, {2}, DType::i64)), Error);  // out of range
  EXPECT_THROW(nll_loss(lp, from_vector({0, 1, 2}, {3}, DType::i64)), Error);  // wrong N
  EXPECT_THROW(nll_loss(lp, from_vector({0, 1}, {2}, DType::f32)), Error);  // not int64
}

// x=torch.tensor([[0.5,-1.5,2.0],[100.0,-100.0,0.0]],dtype=torch.float64)
// y=torch.tensor([[1.0,0.0,0.5],[0.0,1.0,1.0]],dtype=torch.float64); pw=torch.tensor([2.0,0.5,3.0],dtype=torch.float64)
// F.binary_cross_entropy_with_logits(x,y,pos_weight=pw,reduction=r)
TEST(Losses, BceWithLogitsPosWeight) {
  Tensor x = from_vector({0.5, -1.5, 2.0, 100.0, -100.0, 0.0}, {2, 3}, DType::f64);
  Tensor y = from_vector({1.0, 0.0, 0.5, 0.0, 1.0, 1.0}, {2, 3}, DType::f64);
  Tensor pw = from_vector({2.0, 0.5, 3.0}, {3}, DType::f64);
  expect_near(binary_cross_entropy_with_logits(x, y, pw, "mean"), {25.7471441350}, 1e-9);
  expect_near(binary_cross_entropy_with_logits(x, y, pw, "sum"), {154.4828648101}, 1e-9);
  expect_near(binary_cross_entropy_with_logits(x, y, pw, "none"),
              {0.9481539684, 0.2014132780, 1.2538560221, 100.0, 50.0, 2.0794415417}, 1e-9);
  // F.binary_cross_entropy_with_logits(x,y)
  expect_near(binary_cross_entropy_with_logits(x, y), {33.7492609090}, 1e-9);
  // l=F.binary_cross_entropy_with_logits(x,y,pos_weight=pw); l.backward(); x.grad  (x = 0 included)
  Tensor xg = x.detach().requires_grad_();
  binary_cross_entropy_with_logits(xg, y, pw).backward();
  expect_near(xg.grad(), {-0.1258468896, 0.0304042540, 0.0435990260, 0.1666666667, -0.0833333333, -0.25}, 1e-9);
}

// F.mse_loss(torch.tensor([1.0,2.0,3.5]), torch.tensor([0.5,2.5,1.0]))
TEST(Losses, MseLoss) {
  Tensor a = from_vector({1.0, 2.0, 3.5}, {3}), b = from_vector({0.5, 2.5, 1.0}, {3});
  expect_near(mse_loss(a, b), {2.25}, 1e-6);
  expect_near(mse_loss(a, b, "sum"), {6.75}, 1e-6);
  expect_near(mse_loss(a, b, "none"), {0.25, 0.25, 6.25}, 1e-6);
}

// torch.softmax(torch.tensor([1000.0,1001.0]),0), torch.log_softmax(torch.tensor([1000.0,1001.0]),0)
TEST(Softmax, LargeValuesStayFinite) {
  for (bool ref : {false, true}) {
    Tensor x = from_vector({1000.0, 1001.0}, {2});
    Tensor s = ref ? softmax(x.view({1, 2}).t(), 0) : softmax(x, 0);  // the transposed view takes another path
    expect_near(s, {0.2689414322, 0.7310585976}, 1e-6);
    expect_near(log_softmax(x, 0), {-1.3132616282, -0.3132616580}, 1e-6);
  }
  // A fully masked entry gets exactly 0.
  Tensor m = from_vector({0.0, -INFINITY, 1.0}, {1, 3});
  EXPECT_EQ(softmax(m, 1).to_vector()[1], 0.0);
}

TEST(Dropout, DeterministicForASeedAndScaled) {
  Tensor x = ones({200, 500});
  Generator g1(42), g2(42), g3(43);
  Tensor a = dropout(x, 0.3, true, &g1), b = dropout(x, 0.3, true, &g2), c = dropout(x, 0.3, true, &g3);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), c.to_vector());
  int64_t zeros_n = 0;
  for (double v : a.to_vector()) {
    if (v == 0) ++zeros_n;
    else EXPECT_FLOAT_EQ(v, 1.0 / 0.7);
  }
  EXPECT_NEAR(double(zeros_n) / 1e5, 0.3, 0.01);
  EXPECT_NEAR(mean(a).item(), 1.0, 0.01);  // the kept elements are scaled by 1/(1-p)
}

TEST(Dropout, IdentityWhenNotTrainingAndGradientFollowsMask) {
  Tensor x = uniform({7, 9}, -1, 1, DType::f64).requires_grad_();
  EXPECT_TRUE(dropout(x, 0.5, false).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true).same(x));
  EXPECT_THROW(dropout(x, 1.5, true), Error);
  Generator g(7);
  Tensor y = dropout(x, 0.5, true, &g);
  y.backward(ones({7, 9}, DType::f64));
  std::vector<double> yv = y.to_vector(), xv = x.to_vector(), gv = x.grad().to_vector();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_DOUBLE_EQ(gv[i] * xv[i], yv[i]);
  expect_near(dropout(x, 1.0, true, &g), std::vector<double>(63, 0.0), 0);
}

// Focal loss against PyTorch autograd on the formula (torch has no softmax focal loss):
// def fl(L, t, g, a): lp = F.log_softmax(L, 1).gather(1, t[:, None])[:, 0]
//                     w = (1 - lp.exp())**g * (-lp); return w * torch.tensor(a)[t] if a else w
// L = ce_logits(), t = torch.tensor([0, 2, 1, 1])
TEST(Losses, FocalLossMatchesItsFormula) {
  Tensor L = ce_logits(), t = from_vector({0, 2, 1, 1}, {4}, DType::i64);
  expect_near(focal_loss(L, t, 2.0, {}, "none"), {0.8654663999, 0.0044546029, 0.4913821668, 4.9907148902}, 1e-9);
  expect_near(focal_loss(L, t, 2.0), {1.5880045149}, 1e-9);
  expect_near(focal_loss(L, t, 2.0, {0.25, 0.5, 0.25}), {0.7396321948}, 1e-9);
  expect_near(focal_loss(L, t, 0.5, {}, "none"), {1.2839567649, 0.0696701633, 0.9004801644, 5.0388404681}, 1e-9);
  // fl(L, t, 2.0, [0.25, 0.5, 0.25]).mean().backward(); L.grad
  Tensor G = ce_logits().requires_grad_();
  focal_loss(G, t, 2.0, {0.25, 0.5, 0.25}).backward();
  expect_near(G.grad(),
              {-5.3412033760e-02, 4.3668315524e-02, 9.7437182363e-03, 1.5490520174e-04, 5.6839314054e-04,
               -7.2329834228e-04, 3.5128446033e-02, -7.8034426908e-02, 4.2905980875e-02, 1.2438779060e-01,
               -1.3058069403e-01, 6.1929034345e-03},
              1e-9);
  // Binary with the paper's alpha = 0.25 on the positives: fl(B, tb, 2.0, [0.75, 0.25])
  Tensor B = from_vector({0.3, -0.2, 1.5, 0.1, -0.7, 0.4}, {3, 2}, DType::f64);
  expect_near(focal_loss(B, from_vector({1, 0, 1}, {3}, DType::i64), 2.0, {0.25}, "none"),
              {0.0943529002, 0.0064689006, 0.0044802771}, 1e-9);
  // gamma 0 without alpha is cross entropy.
  expect_near(focal_loss(L, t, 0.0), {cross_entropy(L, t).item()}, 1e-12);
  EXPECT_THROW(focal_loss(L, t, -1.0), Error);
  EXPECT_THROW(focal_loss(L, t, 2.0, {0.25}), Error);  // one alpha needs two classes
  EXPECT_THROW(focal_loss(L, from_vector({0, 3, 1, 1}, {4}, DType::i64)), Error);
}
