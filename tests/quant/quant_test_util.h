// Shared by the quantisation tests: a FashionCNN prepared for PTQ (conv-bn-relu fused)
// and calibrated on two batches of random images, ready for quant::convert.
#pragma once
#include <memory>

#include "qiusuo/apps/cnn.h"
#include "qiusuo/quant/convert.h"

namespace qs::testing {

inline std::shared_ptr<apps::FashionCNN> calibrated_cnn(uint64_t seed) {
  Generator g(seed);
  auto m = std::make_shared<apps::FashionCNN>(g);
  quant::PrepareOptions po;
  po.fuse = apps::FashionCNN::fuse_groups();
  m->eval();
  quant::prepare(*m, quant::QConfig::default_ptq(), po);
  quant::calibrate(*m, {randn({16, 1, 28, 28}, DType::f32, &g), randn({16, 1, 28, 28}, DType::f32, &g)});
  return m;
}

}  // namespace qs::testing
