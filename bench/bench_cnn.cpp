// The compass CNN workloads, shaped exactly as shared/peers/torch_cnn.py:
// cnn_train_b128 (SGD momentum step), cnn_infer_b64_fp32 (and _int8, PTQ-converted), cnn3d_train_b8_32cube (AdamW).
// The inference workloads take --model CKPT (a trained float or quantised checkpoint) instead of the random model.
#include "bench/bench.h"
#include "ops/op.h"
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

// --model CKPT: the checkpoint's FashionCNN (apps::load_fashion_cnn, float or quantised); the
// workload's kind must match the file's ("fp32" for _fp32, a converted ptq/qat model for _int8).
std::shared_ptr<apps::FashionCNN> checkpoint_cnn(const Options& o, bool int8, std::string& method) {
  auto m = apps::load_fashion_cnn(o.model, &method);
  if (int8)
    QS_CHECK(method == "ptq" || method == "qat",
             "bench cnn_infer_b64_int8: {} is {}, not a converted INT8 model; make one with 'qiusuo quantize {} "
             "--method ptq --out CKPT_Q'",
             o.model, method, o.model);
  else
    QS_CHECK(method == "fp32", "bench cnn_infer_b64_fp32: {} is quantised ({}); use cnn_infer_b64_int8", o.model,
             method);
  return m;
}

// Without --model: the random model converted to INT8 (PTQ: conv-bn-relu fused, calibrated on
// random images; the values do not matter for timing). The convolutions hand u8 channels-last
// codes to each other (max pooling in u8); the average pool and the classifier run in f32.
std::shared_ptr<apps::FashionCNN> random_cnn(bool int8, Generator& g) {
  auto m = std::make_shared<apps::FashionCNN>(g);
  m->eval();
  if (!int8) return m;
  quant::PrepareOptions po;
  po.fuse = apps::FashionCNN::fuse_groups();
  quant::prepare(*m, quant::QConfig::default_ptq(), po);
  quant::calibrate(*m, {randn({64, 1, 28, 28}, DType::f32, &g), randn({64, 1, 28, 28}, DType::f32, &g)});
  quant::convert(*m, zeros({1, 1, 28, 28}, DType::f32));  // with the u8 channels-last chain c1 -> c2 -> c3
  return m;
}

std::vector<nlohmann::json> cnn_infer_b64(const Options& o, bool int8) {
  Generator g(0);
  std::string method = int8 ? "ptq" : "fp32";
  auto m = o.model.empty() ? random_cnn(int8, g) : checkpoint_cnn(o, int8, method);
  m->eval();
  Tensor x = randn({64, 1, 28, 28}, DType::f32, &g);
  NoGrad ng;
  double s = time_per_call([&] { (*m)(x); }, 2, o.iters ? o.iters : 10);
  nlohmann::json r = {{"workload", int8 ? "cnn_infer_b64_int8" : "cnn_infer_b64_fp32"}, {"ms", s * 1e3}};
  if (!o.model.empty()) r["model"] = o.model, r["method"] = method;
  return {r};
}

std::vector<nlohmann::json> cnn3d_train_b8_32cube(const Options& o) {
  Generator g(0);
  apps::CNN3D m(g);
  optim::AdamW opt(m.parameters(), 1e-3);
  Tensor x = randn({8, 1, 32, 32, 32}, DType::f32, &g), y = randint(0, 2, {8}, DType::i64, &g);
  double s = train_step_seconds(m, opt, x, y, o.iters ? o.iters : 5);
  return {{{"workload", "cnn3d_train_b8_32cube"}, {"volumes_per_s", 8 / s}, {"step_ms", s * 1e3}}};
}

// The CNN's first batch norm + ReLU ([128, 32, 28, 28], training): forward and backward
// kernels on f32 and on bf16 activations (autocast's), with the bytes each moves per call
// (forward: x read twice, y written; backward: dy, x, y read twice, dx written).
std::vector<nlohmann::json> batch_norm_b128(const Options& o) {
  const int iters = o.iters ? o.iters : 20;
  const Shape xs{128, 32, 28, 28};
  const int64_t C = xs[1];
  NoGrad ng;
  Attrs a = Attrs().set("training", true).set("momentum", 0.1).set("eps", 1e-5).set("relu", true);
  std::vector<nlohmann::json> out;
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor x = randn(xs).to(dt), gy = randn(xs).to(dt);
    Tensor w = ones({C}), b = zeros({C}), rm = zeros({C}), rv = ones({C});
    auto r = ops::dispatch(ops::OpKind::batch_norm, {x, w, b, rm, rv}, a);
    double fwd = kernel_time(ops::OpKind::batch_norm, {x, w, b, rm, rv}, a, "fast", iters);
    double bwd = kernel_time(ops::OpKind::batch_norm_backward, {gy, x, w, r[1], r[2], r[0]}, a, "fast", iters);
    const double bytes = double(x.numel()) * double(dtype_size(dt));
    out.push_back({{"workload", "batch_norm_b128"},
                   {"dtype", dtype_name(dt)},
                   {"shape", "[128, 32, 28, 28] + relu, training"},
                   {"forward_ms", fwd * 1e3},
                   {"backward_ms", bwd * 1e3},
                   {"forward_gb_per_s", 3 * bytes / fwd / 1e9},
                   {"backward_gb_per_s", 7 * bytes / bwd / 1e9}});
  }
  return out;
}

}  // namespace

std::vector<Workload> cnn_workloads() {
  return {{"cnn_train_b128", "Fashion-MNIST CNN, one SGD training step on 128 images", cnn_train_b128},
          {"cnn_infer_b64_fp32", "Fashion-MNIST CNN, inference on 64 images (--model: a float checkpoint)",
           [](const Options& o) { return cnn_infer_b64(o, false); }, true},
          {"cnn_infer_b64_int8", "Fashion-MNIST CNN converted to INT8 (PTQ), inference on 64 images (--model: CKPT_Q)",
           [](const Options& o) { return cnn_infer_b64(o, true); }, true},
          {"cnn3d_train_b8_32cube", "3D CNN, one AdamW step on 8 volumes of 32^3", cnn3d_train_b8_32cube},
          {"batch_norm_b128", "the CNN's first batch norm + ReLU, forward and backward kernels, f32 and bf16 (ms, GB/s)",
           batch_norm_b128}};
}

}  // namespace qs::bench
