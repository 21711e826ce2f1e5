// Masks (include/qiusuo/prune/mask.h): exact counts, gradients that reach the survivors
// only, masks that survive optimiser steps (SGD with momentum and AdamW, masks added after
// their state built up), finalize, and the errors.
#include <gtest/gtest.h>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/activation.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/prune/mask.h"
#include "test_util.h"

namespace qs {
namespace {

struct Mlp : nn::Module {
  explicit Mlp(Generator& g) : Module("Mlp") {
    register_module("l1", std::make_shared<nn::Linear>(8, 10, true, g));
    register_module("l2", std::make_shared<nn::Linear>(10, 3, true, g));
  }
  Tensor forward(const Tensor& x) override { return child("l2")->forward(relu(child("l1")->forward(x))); }
};

Tensor param(nn::Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  return Tensor();
}

std::vector<float> values(const Tensor& t) {
  Tensor c = t.detach().contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

TEST(PruneMask, ExactCountsSmallestMagnitudesGo) {
  Generator g(1);
  Mlp m(g);
  Tensor w = param(m, "l1.weight");  // [10, 8]
  {
    NoGrad ng;
    std::vector<double> v(80);
    for (int i = 0; i < 80; ++i) v[size_t(i)] = (i % 2 ? -1 : 1) * double(i + 1);
    w.copy_(from_vector(v, {10, 8}));
  }
  prune::Masks masks(m);
  masks.add("l1.weight", prune::l1_unstructured(w, 0.3));
  EXPECT_EQ(masks.zeros("l1.weight"), 24);
  const auto wv = values(w);
  for (int i = 0; i < 80; ++i) EXPECT_EQ(wv[size_t(i)] == 0.0f, i < 24) << i;  // |w| = i + 1
  // A second mask multiplies into the first.
  masks.add("l1.weight", prune::l1_unstructured(w, 0.5));  // 40 of the 80, the 24 zeros among them
  EXPECT_EQ(masks.zeros("l1.weight"), 40);
  // Global: the smallest |w| over both parameters. l1 has 40 zeros and survivors of |w| >= 41,
  // l2 is all 0.5: the 55 smallest of the 110 are l1's 40 zeros and 15 of l2's entries.
  {
    NoGrad ng;
    param(m, "l2.weight").copy_(full({3, 10}, 0.5));
  }
  prune::global_unstructured(masks, {"l1.weight", "l2.weight"}, 0.5);
  EXPECT_EQ(masks.zeros("l1.weight"), 40);
  EXPECT_EQ(masks.zeros("l2.weight"), 15);
  EXPECT_EQ(masks.zeros(), 55);
  EXPECT_EQ(masks.params(), (std::vector<std::string>{"l1.weight", "l2.weight"}));
  nn::StateDict sd = masks.state_dict();
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "l1.weight_mask");
}

// Masks added after momentum and Adam state built up: the pruned entries stay exactly zero
// through every step, their gradients are zero, the survivors keep training; finalize()
// keeps the zeros and stops masking.
TEST(PruneMask, MasksSurviveOptimiserSteps) {
  for (const char* which : {"sgd", "adamw"}) {
    SCOPED_TRACE(which);
    Generator g(2);
    Mlp m(g);
    std::unique_ptr<optim::Optimizer> opt;
    if (std::string(which) == "sgd") opt = std::make_unique<optim::SGD>(m.parameters(), 0.1, 0.9, 0.0, 1e-2, true);
    else opt = std::make_unique<optim::AdamW>(m.parameters(), 1e-2);
    const Tensor x = randn({16, 8}, DType::f32, &g), y = randint(0, 3, {16}, DType::i64, &g);
    auto step = [&] {
      opt->zero_grad();
      cross_entropy(m(x), y).backward();
      opt->step();
    };
    for (int i = 0; i < 3; ++i) step();  // momentum / moments for every entry
    prune::Masks masks(m);
    Tensor w = param(m, "l1.weight");
    masks.add("l1.weight", prune::l1_unstructured(w, 0.5));
    masks.attach(*opt);
    const auto mask = values(masks.mask("l1.weight"));
    const auto at_mask = values(w);
    for (int i = 0; i < 4; ++i) {
      opt->zero_grad();
      cross_entropy(m(x), y).backward();
      const auto grad = values(w.grad());
      for (size_t k = 0; k < mask.size(); ++k)
        if (mask[k] == 0) ASSERT_EQ(grad[k], 0.0f) << "gradient of pruned entry " << k;
      opt->step();
      const auto now = values(w);
      for (size_t k = 0; k < mask.size(); ++k)
        if (mask[k] == 0) ASSERT_EQ(now[k], 0.0f) << "pruned entry " << k << " after step " << i;
    }
    int moved = 0;
    const auto after = values(w);
    for (size_t k = 0; k < mask.size(); ++k) moved += mask[k] == 1 && after[k] != at_mask[k];
    EXPECT_EQ(moved, 40);  // every survivor trained
    masks.finalize();
    EXPECT_TRUE(masks.params().empty());
    step();
    int revived = 0;
    const auto free_now = values(w);
    for (size_t k = 0; k < mask.size(); ++k) revived += mask[k] == 0 && free_now[k] != 0.0f;
    EXPECT_GT(revived, 0);  // no mask any more: the optimiser moves them again
  }
}

// The optimiser may outlive the masks (its hook then does nothing) and the masks the optimiser.
TEST(PruneMask, OptimiserAndMasksMayOutliveEachOther) {
  Generator g(4);
  Mlp m(g);
  const Tensor x = randn({4, 8}, DType::f32, &g), y = randint(0, 3, {4}, DType::i64, &g);
  optim::SGD sgd(m.parameters(), 0.1, 0.9);
  {
    prune::Masks masks(m);
    masks.add("l1.weight", prune::l1_unstructured(param(m, "l1.weight"), 0.5));
    masks.attach(sgd);
  }
  sgd.zero_grad();
  cross_entropy(m(x), y).backward();
  EXPECT_NO_THROW(sgd.step());
  auto masks = std::make_unique<prune::Masks>(m);
  {
    optim::SGD other(m.parameters(), 0.1);
    masks->attach(other);
  }
  EXPECT_NO_THROW(masks.reset());
}

TEST(PruneMask, BadMasksAreClearErrors) {
  Generator g(3);
  Mlp m(g);
  prune::Masks masks(m);
  using qs::testing::error_of;
  EXPECT_NE(error_of([&] { masks.add("l3.weight", ones({3})); }).find("not a parameter"), std::string::npos);
  EXPECT_NE(error_of([&] { masks.add("l1.weight", ones({8, 10})); }).find("has shape [8, 10], the parameter [10, 8]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { masks.add("l1.bias", full({10}, 0.5)); }).find("masks hold 0 and 1"), std::string::npos);
  EXPECT_NE(error_of([&] { prune::l1_unstructured(param(m, "l1.bias"), 1.5); }).find("outside [0, 1]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { masks.mask("l2.bias"); }).find("has no mask"), std::string::npos);
  EXPECT_EQ(masks.zeros(), 0);
}

}  // namespace
}  // namespace qs
