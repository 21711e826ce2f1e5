// Conv-bn folding, prepare / prepare_qat (fusion, swaps, skips, errors), exact resume of
// QAT from a checkpoint, and QAT / PTQ on the Fashion-MNIST CNN.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "qiusuo/apps/cnn.h"
#include "qiusuo/autograd.h"
#include "qiusuo/data/idx.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/nn/activation.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/quant/qat.h"
#include "test_util.h"

using namespace qs;
using namespace qs::quant;
using qs::testing::error_of;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) { return amax(abs(a - b)).item(); }

// conv-bn-relu, flatten, linear-relu, linear: x [N, 1, 6, 6] -> [N, 3].
std::shared_ptr<nn::Sequential> small_model(uint64_t seed) {
  Generator g(seed);
  nn::ConvOptions same{.padding = 1};
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Conv2d>(1, 4, 3, same, g));
  m->push_back(std::make_shared<nn::BatchNorm2d>(4));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Flatten>());
  m->push_back(std::make_shared<nn::Linear>(4 * 36, 8, true, g));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Linear>(8, 3, true, g));
  return m;
}

}  // namespace

TEST(FoldConvBn, EqualsConvThenBatchNormInEval) {
  Generator g(1);
  nn::Conv2d conv(3, 5, 3, nn::ConvOptions{.padding = 1}, g);
  nn::BatchNorm2d bn(5);
  {
    NoGrad ng;
    Tensor(bn.weight()).copy_(uniform({5}, 0.5, 1.5, DType::f32, &g));
    Tensor(bn.bias()).copy_(uniform({5}, -0.3, 0.3, DType::f32, &g));
    Tensor(bn.running_mean()).copy_(uniform({5}, -0.5, 0.5, DType::f32, &g));
    Tensor(bn.running_var()).copy_(uniform({5}, 0.5, 2.0, DType::f32, &g));
  }
  bn.eval();
  Tensor x = randn({2, 3, 7, 7}, DType::f32, &g);
  auto folded = fold_conv_bn(conv, bn);
  NoGrad ng;
  EXPECT_LT(max_abs_diff((*folded)(x), bn(conv(x))), 1e-5);
  nn::BatchNorm2d wrong(4);
  EXPECT_NE(error_of([&] { fold_conv_bn(conv, wrong); }).find("4 channels"), std::string::npos);
}

TEST(PrepareQat, FusesSequentialPatternsAndKeepsTheFloatValuesBeforeObserving) {
  auto m = small_model(3);
  Generator g(4);
  Tensor x = randn({8, 1, 6, 6}, DType::f32, &g);
  m->eval();
  Tensor want;
  {
    NoGrad ng;
    want = (*m)(x);
  }
  prepare_qat(*m, QConfig::default_qat());
  EXPECT_EQ((*m)[0]->type_name(), "QatConvBnReLU2d");
  EXPECT_EQ((*m)[1]->type_name(), "Identity");
  EXPECT_EQ((*m)[2]->type_name(), "Identity");
  EXPECT_EQ((*m)[4]->type_name(), "QatLinearReLU");
  EXPECT_EQ((*m)[6]->type_name(), "QatLinear");
  auto layers = prepared_layers(*m);
  ASSERT_EQ(layers.size(), 3u);
  // state_dict: weights, batch norm, observers and fake-quant state.
  std::set<std::string> keys;
  for (auto& [k, t] : m->state_dict()) keys.insert(k);
  for (const char* k : {"0.weight", "0.bn.running_mean", "0.weight_fake_quant.scale", "0.input_fake_quant.zero_point",
                        "0.activation_post_process.activation_post_process.min_val", "6.bias"})
    EXPECT_TRUE(keys.count(k)) << k;
  // Simulated INT8 in eval: close to the float model (8-bit activations, 7-bit with reduce_range).
  m->train();
  (*m)(x);  // one observing step
  m->eval();
  NoGrad ng;
  Tensor got = (*m)(x);
  EXPECT_LT(max_abs_diff(got, want), 0.1 * amax(abs(want)).item());
  QParams w = layers[0].second->weight_qparams();
  EXPECT_EQ(w.axis, 0);
  EXPECT_TRUE(w.symmetric());
  EXPECT_EQ(w.scale.size(), 4u);
}

TEST(PrepareQat, SkipsAndRejectsWithClearErrors) {
  auto m = small_model(3);
  QConfig q = QConfig::default_qat();
  q.skip_names = {"6"};
  prepare_qat(*m, q);
  EXPECT_EQ((*m)[6]->type_name(), "Linear");
  EXPECT_EQ((*m)[4]->type_name(), "QatLinearReLU");

  auto m2 = small_model(3);
  PrepareOptions no_fuse;
  no_fuse.auto_fuse_sequential = false;  // leaves the batch norm alone: unsupported
  std::string msg = error_of([&] { prepare_qat(*m2, QConfig::default_qat(), no_fuse); });
  EXPECT_NE(msg.find("module '1' (BatchNorm2d)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("skip_names"), std::string::npos) << msg;

  auto m3 = small_model(3);
  QConfig bad = QConfig::default_qat();
  bad.skip_names = {"nope"};
  EXPECT_NE(error_of([&] { prepare_qat(*m3, bad); }).find("'nope', which names no module"), std::string::npos);
  PrepareOptions wrong;
  wrong.fuse = {{"0", "4"}};
  wrong.auto_fuse_sequential = false;
  EXPECT_NE(error_of([&] { prepare_qat(*m3, QConfig::default_qat(), wrong); }).find("cannot fuse 0"), std::string::npos);
}

// QAT for 6 steps, or 3 steps, a checkpoint, a fresh process-like restart and 3 more:
// the losses and final weights agree bit for bit.
TEST(PrepareQat, ResumesExactlyFromACheckpoint) {
  Generator g(21);
  Tensor x = randn({16, 1, 6, 6}, DType::f32, &g), y = randint(0, 3, {16}, DType::i64, &g);
  auto run = [&](nn::Module& m, optim::SGD& opt, int steps, std::vector<double>& losses) {
    const int first = int(losses.size());
    for (int s = first; s < first + steps; ++s) {
      Tensor xb = x.narrow(0, (s % 2) * 8, 8), yb = y.narrow(0, (s % 2) * 8, 8);
      opt.zero_grad();
      Tensor loss = cross_entropy(m(xb), yb);
      loss.backward();
      opt.step();
      losses.push_back(loss.item());
    }
  };
  QConfig q = QConfig::default_qat();
  q.global.activation.learnable_scale = true;  // LSQ scales are trained and saved too
  std::vector<double> full, part;
  auto a = small_model(5);
  prepare_qat(*a, q);
  optim::SGD oa(a->parameters(), 0.05, 0.9);
  run(*a, oa, 6, full);

  auto b = small_model(5);
  prepare_qat(*b, q);
  optim::SGD ob(b->parameters(), 0.05, 0.9);
  run(*b, ob, 3, part);
  std::string path = qs::testing::temp_dir("qat_resume") + "/qat.safetensors";
  io::save_checkpoint(path, io::Checkpoint{b->state_dict(), ob.state_dict(), 3, {}, nullptr, nullptr});

  auto c = small_model(99);  // other initial values: everything must come from the file
  prepare_qat(*c, q);
  optim::SGD oc(c->parameters(), 0.05, 0.9);
  io::Checkpoint ck = io::load_checkpoint(path);
  c->load_state_dict(ck.model);
  oc.load_state_dict(ck.optimizer);
  run(*c, oc, 3, part);
  ASSERT_EQ(part.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(part[i], full[i]) << "step " << i + 1;
  auto sa = a->state_dict(), sc = c->state_dict();
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(max_abs_diff(sa[i].second.to(DType::f64), sc[i].second.to(DType::f64)), 0.0) << sa[i].first;
}

// Fashion-MNIST: a float CNN trained briefly (2048 images), then (1) QAT fine-tuning on
// 512 more images keeps the accuracy (500 test images) close to the float model, (2) PTQ calibration gives
// activation parameters whose range covers what the min/max observers saw, and the
// simulated INT8 model stays close too.
TEST(QuantFashionCnn, QatAndPtqStayCloseToFloat) {
  std::string dir = qs::testing::temp_dir("quant_cnn");
  apps::TrainCnnOptions o;
  o.epochs = 1, o.batch = 64, o.limit_train = 2048, o.limit_test = 256, o.threads = 2, o.quiet = true, o.seed = 3;
  o.out_dir = dir;
  apps::TrainCnnResult fr = apps::train_fashion_cnn(o);
  io::Checkpoint ck = io::load_checkpoint(fr.checkpoint);
  data::FashionMNIST train(true, data::FashionMNIST::kDefaultRoot, true), test(false, data::FashionMNIST::kDefaultRoot, true);
  Tensor test_x = test.images.narrow(0, 0, 500), test_y = test.labels.narrow(0, 0, 500);
  apps::FashionCNN fm;
  fm.load_state_dict(ck.model);
  double float_acc = apps::evaluate_classifier(fm, test_x, test_y).first;
  EXPECT_GT(float_acc, 0.6);

  PrepareOptions fuse;
  fuse.fuse = apps::FashionCNN::fuse_groups();
  apps::FashionCNN qm;
  qm.load_state_dict(ck.model);
  prepare_qat(qm, QConfig::default_qat(), fuse);
  optim::SGD sgd(qm.parameters(), 0.01, 0.9);
  for (int64_t s = 0; s < 8; ++s) {  // 512 images
    Tensor xb = train.images.narrow(0, 2048 + s * 64, 64), yb = train.labels.narrow(0, 2048 + s * 64, 64);
    sgd.zero_grad();
    Tensor loss = cross_entropy(qm(xb), yb);
    loss.backward();
    sgd.step();
  }
  double qat_acc = apps::evaluate_classifier(qm, test_x, test_y).first;
  EXPECT_GT(qat_acc, float_acc - 0.03) << "float " << float_acc << ", QAT " << qat_acc;

  QConfig minmax = QConfig::default_ptq();
  minmax.global.activation.observer = ObserverKind::minmax;
  apps::FashionCNN pm;
  pm.load_state_dict(ck.model);
  prepare(pm, minmax, fuse);
  std::vector<Tensor> calib;
  for (int64_t b = 0; b < 2; ++b) calib.push_back(train.images.narrow(0, b * 128, 128));
  calibrate(pm, calib);
  for (auto& [name, layer] : prepared_layers(pm)) {
    SCOPED_TRACE(name);
    for (FakeQuantize* fq : {&layer->input_fake_quant(), &layer->output_fake_quant()}) {
      QParams qp = fq->qparams();
      double lo = (qp.qmin() - qp.zero_point[0]) * double(qp.scale[0]), hi = (qp.qmax() - qp.zero_point[0]) * double(qp.scale[0]);
      EXPECT_LE(lo, fq->observer().min_val().item() + qp.scale[0]);  // zero-point rounding: within one step
      EXPECT_GE(hi, fq->observer().max_val().item() - qp.scale[0]);  // the top is reached to within one step
    }
  }
  enable_fake_quant(pm);
  double ptq_acc = apps::evaluate_classifier(pm, test_x, test_y).first;
  EXPECT_GT(ptq_acc, float_acc - 0.03) << "float " << float_acc << ", PTQ " << ptq_acc;
  std::printf("accuracy on 500 test images: float %.3f, QAT %.3f, PTQ (simulated) %.3f\n", float_acc, qat_acc, ptq_acc);
  EXPECT_NE(error_of([&] { calibrate(pm, {}); }).find("calibration set is empty"), std::string::npos);
}
