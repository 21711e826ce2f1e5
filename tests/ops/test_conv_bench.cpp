// Timing of the compass CNN layers (labelled slow): forward and backward primitives of
// each conv / batch-norm / pool layer of the Fashion-MNIST CNN (batch 128, 28x28) and of
// the 3D CNN (8 volumes of 32^3), and full forward + backward passes through autograd.
// Prints ms per layer; the assertions only guard against a broken setup.
#include <gtest/gtest.h>

#include <ctime>
#include <cstdio>
#include <functional>

#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

// Process CPU time per call (ms): on a machine shared with other builds, wall time
// mostly measures the neighbours. With T threads, divide by T for the ideal wall time.
double cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e3 + double(t.tv_nsec) * 1e-6;
}
double time_ms(const std::function<void()>& f, int reps = 5) {
  f();  // warm: builds the primitives
  double t0 = cpu_ms();
  for (int i = 0; i < reps; ++i) f();
  return (cpu_ms() - t0) / reps;
}

// One conv-bn-relu(-pool) layer: ms of each primitive, forward and backward.
double bench_layer(const char* name, int nsp, Shape x_shape, int64_t O, bool pool) {
  NoGrad ng;
  int64_t C = x_shape[1];
  Shape ws{O, C};
  for (int i = 0; i < nsp; ++i) ws.push_back(3);
  Tensor x = randn(x_shape), w = randn(ws) * 0.1, b = randn({O});
  Attrs ca = Attrs().set("stride", Shape{1}).set("padding", Shape{1}).set("dilation", Shape{1}).set("groups", 1);
  Tensor y = ops::dispatch1(ops::OpKind::convolution, {x, w, b}, ca);
  Tensor gy = randn(y.shape()) * 0.01;
  double conv_f = time_ms([&] { ops::dispatch1(ops::OpKind::convolution, {x, w, b}, ca); });
  double conv_bd = C == 1 ? 0.0 : time_ms([&] {
    ops::dispatch1(ops::OpKind::convolution_backward_data, {gy, w}, Attrs(ca).set("input_shape", x.shape()));
  });
  double conv_bw = time_ms([&] {
    ops::dispatch(ops::OpKind::convolution_backward_weight, {gy, x}, Attrs(ca).set("weight_shape", w.shape()));
  });
  Tensor gamma = ones({O}), beta = zeros({O}), rm = zeros({O}), rv = ones({O});
  Attrs ba = Attrs().set("training", true).set("momentum", 0.1).set("eps", 1e-5);
  auto bn = ops::dispatch(ops::OpKind::batch_norm, {y, gamma, beta, rm, rv}, ba);
  double bn_f = time_ms([&] { ops::dispatch(ops::OpKind::batch_norm, {y, gamma, beta, rm, rv}, ba); });
  double bn_b = time_ms([&] { ops::dispatch(ops::OpKind::batch_norm_backward, {gy, y, gamma, bn[1], bn[2], Tensor()}, ba); });
  double relu_f = time_ms([&] { relu(bn[0]); });
  // The models' fused batch-norm + ReLU (batch_norm_relu), forward and backward.
  Attrs fa = Attrs(ba).set("relu", true);
  auto bnr = ops::dispatch(ops::OpKind::batch_norm, {y, gamma, beta, rm, rv}, fa);
  double bnr_f = time_ms([&] { ops::dispatch(ops::OpKind::batch_norm, {y, gamma, beta, rm, rv}, fa); });
  double bnr_b = time_ms(
      [&] { ops::dispatch(ops::OpKind::batch_norm_backward, {gy, y, gamma, bnr[1], bnr[2], bnr[0]}, fa); });
  double pool_f = 0, pool_b = 0;
  if (pool) {
    Attrs pa = Attrs().set("kernel", Shape{2}).set("stride", Shape{2}).set("padding", Shape{0});
    auto p = ops::dispatch(ops::OpKind::max_pool, {y}, pa);
    Tensor gp = randn(p[0].shape());
    pool_f = time_ms([&] { ops::dispatch(ops::OpKind::max_pool, {y}, pa); });
    pool_b = time_ms([&] {
      ops::dispatch1(ops::OpKind::max_pool_backward, {gp, p[1]}, Attrs(pa).set("input_shape", y.shape()));
    });
  }
  double total = conv_f + conv_bd + conv_bw + bnr_f + bnr_b + pool_f + pool_b;
  std::printf("%-22s conv fwd %6.2f bwd-data %6.2f bwd-w %6.2f | bn fwd %5.2f bwd %5.2f | relu %5.2f | bn+relu fwd "
              "%5.2f bwd %5.2f | pool fwd %5.2f bwd %5.2f | total (fused) %7.2f ms\n", name, conv_f, conv_bd, conv_bw,
              bn_f, bn_b, relu_f, bnr_f, bnr_b, pool_f, pool_b, total);
  return total;
}

TEST(ConvBench, CnnLayers) {
  std::printf("threads: %d (times are process CPU ms per call)\n", get_num_threads());
  double t = bench_layer("cnn conv1 1->32 28x28", 2, {128, 1, 28, 28}, 32, true);
  t += bench_layer("cnn conv2 32->64 14x14", 2, {128, 32, 14, 14}, 64, true);
  t += bench_layer("cnn conv3 64->128 7x7", 2, {128, 64, 7, 7}, 128, false);
  std::printf("cnn layers total %.2f ms per batch of 128\n", t);
  double t3 = bench_layer("3d conv1 1->16 32^3", 3, {8, 1, 32, 32, 32}, 16, true);
  t3 += bench_layer("3d conv2 16->32 16^3", 3, {8, 16, 16, 16, 16}, 32, true);
  t3 += bench_layer("3d conv3 32->64 8^3", 3, {8, 32, 8, 8, 8}, 64, false);
  std::printf("cnn3d layers total %.2f ms per batch of 8\n", t3);
  EXPECT_GT(t, 0.0);
}

// Forward + backward of the whole 2D CNN through autograd (no loss or optimiser).
TEST(ConvBench, CnnForwardBackward) {
  Tensor x = randn({128, 1, 28, 28});
  std::vector<Tensor> params;
  auto param = [&](Tensor t) {
    t.requires_grad_(true);
    params.push_back(t);
    return t;
  };
  Tensor w1 = param(randn({32, 1, 3, 3}) * 0.3), b1 = param(zeros({32}));
  Tensor w2 = param(randn({64, 32, 3, 3}) * 0.06), b2 = param(zeros({64}));
  Tensor w3 = param(randn({128, 64, 3, 3}) * 0.04), b3 = param(zeros({128}));
  Tensor fw = param(randn({10, 128}) * 0.1), fb = param(zeros({10}));
  std::vector<Tensor> g, bb, rm, rv;
  for (int64_t c : {32, 64, 128}) {
    g.push_back(param(ones({c})));
    bb.push_back(param(zeros({c})));
    rm.push_back(zeros({c}));
    rv.push_back(ones({c}));
  }
  Tensor wl = randn({128, 10});
  auto step = [&] {
    Tensor h = max_pool2d(batch_norm_relu(conv2d(x, w1, b1, 1, 1), rm[0], rv[0], g[0], bb[0], true), 2);
    h = max_pool2d(batch_norm_relu(conv2d(h, w2, b2, 1, 1), rm[1], rv[1], g[1], bb[1], true), 2);
    h = batch_norm_relu(conv2d(h, w3, b3, 1, 1), rm[2], rv[2], g[2], bb[2], true);
    Tensor logits = linear(adaptive_avg_pool2d(h, 1).flatten(1), fw, fb);
    sum(logits * wl).backward();
  };
  double ms = time_ms(step, 5);
  std::printf("cnn forward+backward (batch 128): %.2f ms = %.0f images/s\n", ms, 128 * 1000.0 / ms);
  EXPECT_TRUE(w1.grad().defined());
}

// Forward + backward of the 3D CNN (8 volumes of 32^3) through autograd.
TEST(ConvBench, Cnn3dForwardBackward) {
  Tensor v = randn({8, 1, 32, 32, 32});
  auto param = [](Tensor t) { return t.requires_grad_(true); };
  Tensor w1 = param(randn({16, 1, 3, 3, 3}) * 0.2), w2 = param(randn({32, 16, 3, 3, 3}) * 0.05);
  Tensor w3 = param(randn({64, 32, 3, 3, 3}) * 0.03), fw = param(randn({2, 64}) * 0.1);
  std::vector<Tensor> bias, gamma, beta, rm, rv;
  for (int64_t c : {16, 32, 64}) {
    bias.push_back(param(zeros({c})));
    gamma.push_back(param(ones({c})));
    beta.push_back(param(zeros({c})));
    rm.push_back(zeros({c}));
    rv.push_back(ones({c}));
  }
  Tensor wl = randn({8, 2});
  auto block = [&](const Tensor& x, const Tensor& w, int i) {
    return batch_norm_relu(conv3d(x, w, bias[size_t(i)], 1, 1), rm[size_t(i)], rv[size_t(i)], gamma[size_t(i)],
                           beta[size_t(i)], true);
  };
  auto step = [&] {
    Tensor h = max_pool3d(block(v, w1, 0), 2);
    h = max_pool3d(block(h, w2, 1), 2);
    h = block(h, w3, 2);
    sum(linear(mean(h, {2, 3, 4}), fw) * wl).backward();
  };
  double ms = time_ms(step, 3);
  std::printf("cnn3d forward+backward (batch 8): %.2f ms = %.1f volumes/s\n", ms, 8 * 1000.0 / ms);
  EXPECT_TRUE(w1.grad().defined());
}

}  // namespace
}  // namespace qs
