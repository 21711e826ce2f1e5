// The compass CNN workloads, shaped exactly as shared/peers/torch_cnn.py:
// cnn_train_b128 (SGD momentum step), cnn_infer_b64_fp32 (and _int8, PTQ-converted), cnn3d_train_b8_32cube (AdamW).
#include "bench/bench.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/quant/convert.h"

namespace qs::bench {

namespace {

// One training step per call; the Autocast scope (if any) is the caller's (cmd_bench).
template <class Opt> double train_step_seconds(nn::Module& m, Opt& opt, const Tensor& x, const Tensor& y, int iters) {
  m.train();
  return time_per_call(
      [&] {
        opt.zero_grad();
        Tensor loss = cross_entropy(m(x), y);
        loss.backward();
        opt.step();
      },
      2, iters);
}

std::vector<nlohmann::json> cnn_train_b128(const Options& o) {
  Generator g(0);
  apps::FashionCNN m(g);
  optim::SGD opt(m.parameters(), 0.05, 0.9);
  Tensor x = randn({128, 1, 28, 28}, DType::f32, &g), y = randint(0, 10, {128}, DType::i64, &g);
  double s = train_step_seconds(m, opt, x, y, o.iters ? o.iters : 5);
  return {{{"workload", "cnn_train_b128"}, {"images_per_s", 128 / s}, {"step_ms", s * 1e3}}};
}

std::vector<nlohmann::json> cnn_infer_b64_fp32(const Options& o) {
  Generator g(0);
  apps::FashionCNN m(g);
  m.eval();
  Tensor x = randn({64, 1, 28, 28}, DType::f32, &g);
  NoGrad ng;
  double s = time_per_call([&] { m(x); }, 2, o.iters ? o.iters : 10);
  return {{{"workload", "cnn_infer_b64_fp32"}, {"ms", s * 1e3}}};
}

// The same model converted to INT8 (PTQ: conv-bn-relu fused, calibrated on random images;
// the values do not matter for timing). Max pooling and the average pool run in f32.
std::vector<nlohmann::json> cnn_infer_b64_int8(const Options& o) {
  Generator g(0);
  apps::FashionCNN m(g);
  m.eval();
  quant::PrepareOptions po;
  po.fuse = apps::FashionCNN::fuse_groups();
  quant::prepare(m, quant::QConfig::default_ptq(), po);
  Tensor x = randn({64, 1, 28, 28}, DType::f32, &g);
  quant::calibrate(m, {x, randn({64, 1, 28, 28}, DType::f32, &g)});
  quant::convert(m);
  NoGrad ng;
  double s = time_per_call([&] { m(x); }, 2, o.iters ? o.iters : 10);
  return {{{"workload", "cnn_infer_b64_int8"}, {"ms", s * 1e3}}};
}

std::vector<nlohmann::json> cnn3d_train_b8_32cube(const Options& o) {
  Generator g(0);
  apps::CNN3D m(g);
  optim::AdamW opt(m.parameters(), 1e-3);
  Tensor x = randn({8, 1, 32, 32, 32}, DType::f32, &g), y = randint(0, 2, {8}, DType::i64, &g);
  double s = train_step_seconds(m, opt, x, y, o.iters ? o.iters : 5);
  return {{{"workload", "cnn3d_train_b8_32cube"}, {"volumes_per_s", 8 / s}, {"step_ms", s * 1e3}}};
}

}  // namespace

std::vector<Workload> cnn_workloads() {
  return {{"cnn_train_b128", "Fashion-MNIST CNN, one SGD training step on 128 images", cnn_train_b128},
          {"cnn_infer_b64_fp32", "Fashion-MNIST CNN, inference on 64 images", cnn_infer_b64_fp32},
          {"cnn_infer_b64_int8", "Fashion-MNIST CNN converted to INT8 (PTQ), inference on 64 images", cnn_infer_b64_int8},
          {"cnn3d_train_b8_32cube", "3D CNN, one AdamW step on 8 volumes of 32^3", cnn3d_train_b8_32cube}};
}

}  // namespace qs::bench
