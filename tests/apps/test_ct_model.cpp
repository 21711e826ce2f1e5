// The CT classifier's variants: shapes, gate maps, gradients reaching every parameter, and
// the config round trip.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "qiusuo/apps/ct_model.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "test_util.h"

using namespace qs;

TEST(CtNet, VariantsShapesGatesAndGradients) {
  for (const char* variant : {"base", "fusion", "fusion+gates"}) {
    SCOPED_TRACE(variant);
    Generator g(1);
    apps::CtNet net({variant, 4, 2, 16}, g);
    Tensor x = randn({3, 1, 16, 16, 16}, DType::f32, &g);
    std::vector<Tensor> gates;
    Tensor y = net.forward_gates(x, &gates);
    EXPECT_EQ(y.shape(), (Shape{3, 2}));
    if (std::string(variant) == "fusion+gates") {
      ASSERT_EQ(gates.size(), 2u);
      EXPECT_EQ(gates[0].shape(), (Shape{3, 1, 8, 8, 8}));
      EXPECT_EQ(gates[1].shape(), (Shape{3, 1, 16, 16, 16}));
      for (const Tensor& a : gates) {
        EXPECT_GT(amin(a).item(), 0.0);
        EXPECT_LT(amax(a).item(), 1.0);
      }
    } else {
      EXPECT_TRUE(gates.empty());
    }
    focal_loss(y, from_vector({0, 1, 1}, {3}, DType::i64)).backward();
    for (auto& [name, p] : net.named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_GT(amax(abs(p.grad())).item(), 0.0) << name << " gets no gradient";
    }
  }
  const apps::CtNetConfig c{"fusion", 6, 2, 24};
  const apps::CtNetConfig back = apps::CtNetConfig::from_json(c.to_json());
  EXPECT_EQ(back.variant, "fusion");
  EXPECT_EQ(back.width, 6);
  EXPECT_EQ(back.patch, 24);
  EXPECT_NE(qs::testing::error_of([] { apps::CtNet({"unet", 4, 2, 16}); }).find("unknown variant 'unet'"),
            std::string::npos);
  EXPECT_NE(qs::testing::error_of([] { apps::CtNetConfig::from_json({{"widht", 4}}); }).find("unknown key 'widht'"),
            std::string::npos);
  Generator g(2);
  apps::CtNet net({"base", 4, 2, 16}, g);
  EXPECT_NE(qs::testing::error_of([&] { net(zeros({1, 1, 8, 16, 16})); }).find("expected patches"), std::string::npos);
}
