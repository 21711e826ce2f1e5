// Chained quantised convolutions (quant::chain_quantized_layers, QuantizedConv's chained
// input/output): u8 channels-last codes between layers give the same logits, bit for bit,
// as the f32 hand-over; the proof refuses data flows it cannot show safe; a u8 input to a
// layer not marked as chained is an error.
#include <gtest/gtest.h>

#include "kernels/spatial.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/activation.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/convert.h"
#include "quant/quant_test_util.h"
#include "test_util.h"

using namespace qs;
using namespace qs::quant;
using qs::testing::error_of;

namespace {

std::shared_ptr<apps::FashionCNN> converted_cnn(uint64_t seed) {
  auto m = qs::testing::calibrated_cnn(seed);
  convert(*m);
  return m;
}

std::shared_ptr<QuantizedConv> qconv_of(const nn::Module& m, const std::string& name) {
  return std::dynamic_pointer_cast<QuantizedConv>(m.child(name));
}

Tensor run(nn::Module& m, const Tensor& x) {
  NoGrad ng;
  return m.forward(x);
}

// Two quantised 3x3 convolutions (relu, u8 output) with `between` in the middle.
std::shared_ptr<nn::Sequential> two_convs(std::shared_ptr<nn::Module> between, Generator& g) {
  nn::ConvOptions same{.padding = 1};
  nn::Conv2d a(3, 32, 3, same, g), b(32, 16, 3, same, g);
  QParams in{QDtype::u8, -1, 0, {0.03f}, {40}, 0, 127}, mid{QDtype::u8, -1, 0, {0.05f}, {0}, 0, 127},
      mid_in{QDtype::u8, -1, 0, {0.045f}, {2}, 0, 127}, out{QDtype::u8, -1, 0, {0.1f}, {0}, 0, 127};
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<QuantizedConv>(a, in, mid, true));
  m->push_back(std::move(between));
  m->push_back(std::make_shared<QuantizedConv>(b, mid_in, out, true));
  return m;
}

}  // namespace

TEST(QuantChain, FashionCnnChainedLogitsEqualTheF32HandOverBitForBit) {
  auto m = converted_cnn(21);
  auto c1 = qconv_of(*m, "c1"), c2 = qconv_of(*m, "c2"), c3 = qconv_of(*m, "c3");
  // The calibration gives every layer its own input range: the chain must requantise.
  EXPECT_NE(c1->output_qparams()->scale, c2->input_qparams().scale);
  Generator g(22);
  Tensor x = randn({5, 1, 28, 28}, DType::f32, &g);
  Tensor want = run(*m, x);
  EXPECT_EQ(chain_quantized_layers(*m, zeros({1, 1, 28, 28}, DType::f32)), 2);
  EXPECT_TRUE(c1->chained_output() && c2->chained_input() && c2->chained_output() && c3->chained_input());
  EXPECT_FALSE(c1->chained_input() || c3->chained_output());
  Tensor got = run(*m, x);
  EXPECT_EQ(got.to_vector(), want.to_vector());
  // c1 now hands over u8 codes, channels-last, of logical shape [N, 32, 28, 28].
  Tensor h = run(*c1, x);
  EXPECT_EQ(h.dtype(), DType::u8);
  EXPECT_EQ(h.shape(), (Shape{5, 32, 28, 28}));
  EXPECT_TRUE(ops::is_channels_last(h) && !h.is_contiguous());
  // Chaining again (e.g. after loading) is idempotent; convert(model, example) does both.
  EXPECT_EQ(chain_quantized_layers(*m, zeros({2, 1, 28, 28}, DType::f32)), 2);
  EXPECT_EQ(run(*m, x).to_vector(), want.to_vector());
  auto m2 = converted_cnn(21);
  EXPECT_EQ(run(*m2, x).to_vector(), want.to_vector());
}

TEST(QuantChain, ConvertWithAnExampleChainsAndMatches) {
  Generator g(23);
  auto a = std::make_shared<apps::FashionCNN>(g);
  a->eval();
  PrepareOptions po;
  po.fuse = apps::FashionCNN::fuse_groups();
  prepare(*a, QConfig::default_ptq(), po);
  calibrate(*a, {randn({8, 1, 28, 28}, DType::f32, &g)});
  Tensor x = randn({3, 1, 28, 28}, DType::f32, &g);
  EXPECT_EQ(convert(*a, zeros({1, 1, 28, 28}, DType::f32)), 4);
  EXPECT_TRUE(qconv_of(*a, "c1")->chained_output());
  Tensor chained = run(*a, x);
  for (const char* c : {"c1", "c2", "c3"}) {  // back to the f32 hand-over
    qconv_of(*a, c)->set_chained_input(nullptr);
    qconv_of(*a, c)->set_chained_output(false);
  }
  EXPECT_EQ(run(*a, x).to_vector(), chained.to_vector());
}

TEST(QuantChain, ProvesOnlyFlowsThroughMaxPoolAndIdentity) {
  Generator g(24);
  Tensor x = randn({2, 3, 8, 8}, DType::f32, &g), ex = zeros({1, 3, 8, 8}, DType::f32);
  for (int kind = 0; kind < 4; ++kind) {
    std::shared_ptr<nn::Module> between;
    if (kind == 0) between = std::make_shared<nn::Identity>();
    if (kind == 1) between = std::make_shared<nn::MaxPool2d>(2);
    if (kind == 2) between = std::make_shared<nn::MaxPool2d>(3, 1, 1);
    if (kind == 3) between = std::make_shared<nn::ReLU>();  // an f32 op: not proven, stays f32
    auto m = two_convs(between, g);
    Tensor want = run(*m, x);
    EXPECT_EQ(chain_quantized_layers(*m, ex), kind == 3 ? 0 : 1) << kind;
    EXPECT_EQ(run(*m, x).to_vector(), want.to_vector()) << kind;
  }
  // The intermediate also read elsewhere (here: returned by a branch) is not chained.
  struct Branchy : nn::Module {
    std::shared_ptr<nn::Sequential> s;
    explicit Branchy(std::shared_ptr<nn::Sequential> seq) : Module("Branchy"), s(register_module("s", seq)) {}
    Tensor forward(const Tensor& x) override {
      Tensor h = max_pool2d((*s)[0]->forward(x), 2);
      return sum((*s)[2]->forward(h)) + sum(h);
    }
  };
  Branchy b(two_convs(std::make_shared<nn::Identity>(), g));
  EXPECT_EQ(chain_quantized_layers(b, ex), 0);
  EXPECT_EQ(run(b, x).dtype(), DType::f32);
}

TEST(QuantChain, QuantisedInputToAnUnchainedLayerIsRefused) {
  auto m = converted_cnn(25);
  auto c2 = qconv_of(*m, "c2");
  Tensor codes = randint(0, 128, {1, 32, 14, 14}, DType::u8);
  std::string msg = error_of([&] { run(*c2, codes); });
  EXPECT_NE(msg.find("not marked as taking chained input"), std::string::npos) << msg;
  EXPECT_NE(msg.find("chain_quantized_layers"), std::string::npos) << msg;
  chain_quantized_layers(*m, zeros({1, 1, 28, 28}, DType::f32));
  EXPECT_EQ(run(*c2, codes).dtype(), DType::u8);  // now marked: accepted, u8 out to c3
  msg = error_of([&] { run(*c2, randint(-5, 5, {1, 32, 14, 14}, DType::i8)); });
  EXPECT_NE(msg.find("must be u8"), std::string::npos) << msg;
  // A chained output needs u8 output parameters; c3 of a float-output layer cannot chain.
  nn::Conv2d f(1, 4, 3, nn::ConvOptions{.padding = 1});
  QuantizedConv no_out(f, QParams{QDtype::u8, -1, 0, {0.02f}, {0}, 0, 127});
  msg = error_of([&] { no_out.set_chained_output(true); });
  EXPECT_NE(msg.find("u8 per-tensor output"), std::string::npos) << msg;
}
