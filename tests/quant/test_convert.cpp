// quant::convert (prepared model -> INT8 modules) and quantised checkpoints: the converted
// model computes what the fake-quantised model simulates, files rebuild the module tree,
// bad files fail naming the tensor.
#include <gtest/gtest.h>

#include "qiusuo/apps/cnn.h"
#include "qiusuo/autograd.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/nn/activation.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/checkpoint.h"
#include "qiusuo/quant/convert.h"
#include "quant/quant_test_util.h"
#include "test_util.h"

using namespace qs;
using namespace qs::quant;
using qs::testing::calibrated_cnn;
using qs::testing::error_of;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) { return amax(abs(a - b)).item(); }

double argmax_agreement(const Tensor& a, const Tensor& b) {
  return sum(eq(argmax(a, 1), argmax(b, 1)).to(DType::f32)).item() / double(a.size(0));
}

// conv-bn-relu, conv-relu, flatten, linear-relu, linear: x [N, 2, 7, 7] -> [N, 5].
std::shared_ptr<nn::Sequential> tiny_cnn(uint64_t seed) {
  Generator g(seed);
  nn::ConvOptions same{.padding = 1};
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Conv2d>(2, 6, 3, same, g));
  m->push_back(std::make_shared<nn::BatchNorm2d>(6));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Conv2d>(6, 8, 3, nn::ConvOptions{.stride = 2}, g));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Flatten>());
  m->push_back(std::make_shared<nn::Linear>(8 * 9, 16, true, g));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Linear>(16, 5, true, g));
  return m;
}

}  // namespace

TEST(Convert, QatModelMatchesItsFakeQuantisedTwin) {
  auto m = tiny_cnn(5);
  Generator g(6);
  prepare_qat(*m, QConfig::default_qat());
  for (int i = 0; i < 3; ++i) (*m)(randn({32, 2, 7, 7}, DType::f32, &g));  // observe, train-mode bn
  enable_observer(*m, false);
  m->eval();
  Tensor x = randn({256, 2, 7, 7}, DType::f32, &g), want, got;
  {
    NoGrad ng;
    want = (*m)(x);
  }
  EXPECT_EQ(convert(*m), 4);
  EXPECT_EQ((*m)[0]->type_name(), "QuantizedConv");
  EXPECT_EQ((*m)[1]->type_name(), "Identity");
  EXPECT_EQ((*m)[3]->type_name(), "QuantizedConv");
  EXPECT_EQ((*m)[6]->type_name(), "QuantizedLinear");
  EXPECT_EQ((*m)[8]->type_name(), "QuantizedLinear");
  EXPECT_TRUE(prepared_layers(*m).empty());
  got = (*m)(x);
  // The same arithmetic up to float summation order: an occasional one-step flip of the
  // output quantisation (scale / 2 .. scale of one logit).
  double range = amax(abs(want)).item();
  EXPECT_LT(max_abs_diff(got, want), 0.1 * range);
  EXPECT_LT(mean(abs(got - want)).item(), 0.01 * range);
  EXPECT_GE(argmax_agreement(got, want), 0.97);
}

TEST(Convert, PtqFashionCnnMatchesFakeQuantAndShrinksWeights) {
  auto m = calibrated_cnn(7);
  int64_t fp32 = model_weight_bytes(apps::FashionCNN());
  enable_fake_quant(*m, true);
  enable_observer(*m, false);
  Generator g(8);
  Tensor x = randn({128, 1, 28, 28}, DType::f32, &g), want;
  {
    NoGrad ng;
    want = (*m)(x);
  }
  EXPECT_EQ(convert(*m), 4);
  Tensor got = (*m)(x);
  double range = amax(abs(want)).item();
  EXPECT_LT(mean(abs(got - want)).item(), 0.01 * range);
  EXPECT_GE(argmax_agreement(got, want), 0.95);
  // FP32: 94410 floats (weights, biases, batch-norm affine); INT8: s8 weights + f32 scales and biases.
  EXPECT_EQ(fp32, 94410 * 4);
  int64_t int8 = model_weight_bytes(*m);
  EXPECT_EQ(int8, 93728 + 2 * 4 * (32 + 64 + 128 + 10));
  EXPECT_LE(double(int8) / double(fp32), 0.26);
}

TEST(Convert, UncalibratedOrWrongWeightParamsAreErrorsNamingTheLayer) {
  Generator g(9);
  apps::FashionCNN m(g);
  PrepareOptions po;
  po.fuse = apps::FashionCNN::fuse_groups();
  prepare(m, QConfig::default_ptq(), po);
  std::string msg = error_of([&] { convert(m); });
  EXPECT_NE(msg.find("layer 'c1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("calibrate"), std::string::npos) << msg;
  EXPECT_EQ(m.child("c1")->type_name(), "QatConvReLU2d") << "a failed convert leaves the model unchanged";
}

TEST(QuantizedCheckpoint, RoundTripsTheModuleTreeAndValues) {
  auto m = calibrated_cnn(10);
  convert(*m);
  std::string dir = qs::testing::temp_dir("qconvert"), path = dir + "/q.safetensors";
  save_quantized_checkpoint(path, *m, {{"model", "FashionCNN"}}, "ptq");
  io::Checkpoint ck = io::load_checkpoint(path);
  ASSERT_TRUE(is_quantized_checkpoint(ck));
  EXPECT_EQ(ck.config["quantized"]["method"], "ptq");
  EXPECT_EQ(ck.config["quantized"]["layers"]["c2"]["type"], "QuantizedConv2d");
  EXPECT_EQ(ck.config["quantized"]["layers"]["b2"]["type"], "Identity");
  EXPECT_TRUE(ck.config["quantized"]["layers"]["fc"]["input"].contains("scale"));
  std::string method;
  auto back = apps::load_fashion_cnn(path, &method);
  EXPECT_EQ(method, "ptq");
  EXPECT_EQ(back->child("fc")->type_name(), "QuantizedLinear");
  Generator g(11);
  Tensor x = randn({8, 1, 28, 28}, DType::f32, &g);
  EXPECT_EQ(max_abs_diff((*back)(x), (*m)(x)), 0.0);
}

TEST(QuantizedCheckpoint, BadFilesFailNamingTheTensor) {
  auto m = calibrated_cnn(12);
  convert(*m);
  std::string dir = qs::testing::temp_dir("qconvert_bad");
  auto try_load = [&](const std::function<void(io::Checkpoint&)>& edit) {
    std::string p = dir + "/bad.safetensors";
    save_quantized_checkpoint(p, *m, {{"model", "FashionCNN"}}, "ptq");
    io::Checkpoint ck = io::load_checkpoint(p);
    edit(ck);
    io::save_checkpoint(p, ck);
    return error_of([&] { apps::load_fashion_cnn(p); });
  };
  auto set = [](io::Checkpoint& ck, const std::string& name, double v) {
    for (auto& [n, t] : ck.model)
      if (n == name) t = full(t.shape(), v, t.dtype());
  };
  std::string msg = try_load([](io::Checkpoint& ck) { ck.model.erase(ck.model.begin() + 1); });
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  msg = try_load([&](io::Checkpoint& ck) { set(ck, "c2.input_scale", 0.5); });
  EXPECT_NE(msg.find("c2.input_scale"), std::string::npos) << msg;
  msg = try_load([&](io::Checkpoint& ck) { set(ck, "c3.output_scale", -1.0); });
  EXPECT_NE(msg.find("c3.output_scale"), std::string::npos) << msg;
  msg = try_load([&](io::Checkpoint& ck) { set(ck, "fc.weight_scale", 0.0); });
  EXPECT_NE(msg.find("fc.weight_scale"), std::string::npos) << msg;
  msg = try_load([](io::Checkpoint& ck) { ck.config["quantized"]["layers"]["c1"].erase("weight_shape"); });
  EXPECT_NE(msg.find("'c1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("weight_shape"), std::string::npos) << msg;
  msg = try_load([](io::Checkpoint& ck) { ck.config["quantized"]["layers"]["nope"] = {{"type", "Identity"}}; });
  EXPECT_NE(msg.find("nope"), std::string::npos) << msg;
}

namespace {

std::shared_ptr<nn::TransformerLM> tiny_lm(const std::string& block) {
  nn::LMConfig c;
  c.vocab_size = 40, c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.max_seq_len = 16, c.block = block;
  Generator g(13);
  auto m = std::make_shared<nn::TransformerLM>(c, nn::FfnFactory{}, g);
  m->eval();
  return m;
}

}  // namespace

TEST(QuantizeLinears, SwapsEveryBlockLinearAndStaysCloseToFloat) {
  Generator g(14);
  Tensor ids = randint(0, 40, {2, 16}, DType::i64, &g);
  for (const char* block : {"gpt", "deepseek"})
    for (const char* method : {"dynamic", "weight-int8", "weight-int4"}) {
      auto m = tiny_lm(block);
      NoGrad ng;
      Tensor want = (*m)(ids);
      int64_t n = quantize_linears(*m, method, 8);  // group 8 divides 32, 88 (swiglu) and 128
      EXPECT_EQ(n, std::string(block) == "gpt" ? 8 : 10) << block << " " << method;  // 2 or 3 in attention+mlp
      for (auto& [name, mod] : m->named_modules())
        EXPECT_FALSE(name.rfind("blocks.", 0) == 0 && mod->type_name() == "Linear") << name;
      Tensor got = (*m)(ids);
      double tol = std::string(method) == "weight-int4" ? 0.15 : 0.05;
      EXPECT_LT(max_abs_diff(got, want), tol * amax(abs(want)).item()) << block << " " << method;
      EXPECT_GT(max_abs_diff(got, want), 0.0) << "the quantised layers must be the ones running";
    }
  auto m = tiny_lm("gpt");
  std::string msg = error_of([&] { quantize_linears(*m, "weight-int4", 128); });
  EXPECT_NE(msg.find("blocks.0.attn.in_proj"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { quantize_linears(*m, "int3"); }).find("unknown method 'int3'"), std::string::npos);
}

TEST(QuantizeLinears, LmCheckpointRebuildsTheQuantisedTree) {
  auto m = tiny_lm("gpt");
  quantize_linears(*m, "weight-int4", 16);
  std::string path = qs::testing::temp_dir("qconvert_lm") + "/lm.safetensors";
  save_quantized_checkpoint(path, *m, {{"kind", "test"}}, "weight-int4");
  io::Checkpoint ck = io::load_checkpoint(path);
  auto back = tiny_lm("gpt");
  load_quantized_checkpoint(path, ck, *back);
  EXPECT_EQ(back->child("blocks")->child("1")->child("mlp")->child("c_fc")->type_name(), "WeightOnlyLinear");
  Generator g(15);
  Tensor ids = randint(0, 40, {1, 16}, DType::i64, &g);
  NoGrad ng;
  EXPECT_EQ(max_abs_diff((*back)(ids), (*m)(ids)), 0.0);
}

// INT4 files that lie: every problem is named with its layer or tensor. A file written before
// q8 activations existed (no "activations") loads as f32 activations, the product it was made
// with; new files keep q8.
TEST(QuantizeLinears, BadInt4CheckpointsFailNamingTheTensor) {
  auto m = tiny_lm("gpt");
  quantize_linears(*m, "weight-int4", 16);
  const std::string dir = qs::testing::temp_dir("qconvert_int4_bad");
  auto load_edited = [&](const std::function<void(io::Checkpoint&)>& edit, nn::TransformerLM& into) {
    std::string p = dir + "/lm.safetensors";
    save_quantized_checkpoint(p, *m, {{"kind", "test"}}, "weight-int4");
    io::Checkpoint ck = io::load_checkpoint(p);
    edit(ck);
    io::save_checkpoint(p, ck);
    load_quantized_checkpoint(p, io::load_checkpoint(p), into);
  };
  auto error = [&](const std::function<void(io::Checkpoint&)>& edit) {
    auto back = tiny_lm("gpt");
    return error_of([&] { load_edited(edit, *back); });
  };
  const std::string layer = "blocks.1.mlp.c_fc";
  auto spec = [&](io::Checkpoint& ck) -> nlohmann::json& { return ck.config["quantized"]["layers"][layer]; };
  std::string msg = error([&](io::Checkpoint& ck) { spec(ck)["group_size"] = 24; });  // 32 inputs
  EXPECT_NE(msg.find(layer), std::string::npos) << msg;
  EXPECT_NE(msg.find("group_size 24"), std::string::npos) << msg;
  msg = error([&](io::Checkpoint& ck) {
    for (auto it = ck.model.begin(); it != ck.model.end(); ++it)
      if (it->first == layer + ".weight_scale") {
        ck.model.erase(it);
        break;
      }
  });
  EXPECT_NE(msg.find(layer + ".weight_scale"), std::string::npos) << msg;
  for (double bad : {std::nan(""), double(INFINITY), 0.0}) {
    msg = error([&](io::Checkpoint& ck) {
      for (auto& [n, t] : ck.model)
        if (n == layer + ".weight_scale") t.narrow(1, 0, 1).narrow(0, 3, 1).fill_(bad);
    });
    EXPECT_NE(msg.find("'" + layer + ".weight_scale' holds"), std::string::npos) << bad << ": " << msg;
  }
  msg = error([&](io::Checkpoint& ck) { spec(ck)["activations"] = "q9"; });
  EXPECT_NE(msg.find(layer), std::string::npos) << msg;
  EXPECT_NE(msg.find("activations 'q9'"), std::string::npos) << msg;

  Generator g(16);
  Tensor ids = randint(0, 40, {1, 16}, DType::i64, &g);
  NoGrad ng;
  auto old_file = tiny_lm("gpt");
  load_edited([&](io::Checkpoint& ck) { spec(ck).erase("activations"); }, *old_file);
  auto* loaded = old_file->child("blocks")->child("1")->child("mlp")->child("c_fc").get();
  EXPECT_NE(loaded->extra_repr().find("\"activations\":\"f32\""), std::string::npos) << loaded->extra_repr();
  auto same = tiny_lm("gpt");
  load_edited([](io::Checkpoint&) {}, *same);
  EXPECT_EQ(max_abs_diff((*same)(ids), (*m)(ids)), 0.0);
  const double q8_vs_f32 = max_abs_diff((*old_file)(ids), (*m)(ids));
  EXPECT_GT(q8_vs_f32, 0.0) << "q8 and f32 activations are different products";
  EXPECT_LT(q8_vs_f32, 0.02 * amax(abs((*m)(ids))).item());
}

// Static PTQ of a Transformer: MultiheadAttention, GeluMLP and SwiGLU keep typed pointers to
// their projections but call them through child(name), so prepare may swap them; the
// converted model computes what its fake-quantised twin simulates.
TEST(StaticLmQuantisation, EveryBlockLinearConvertsAndMatchesFakeQuant) {
  Generator g(16);
  Tensor ids = randint(0, 40, {2, 16}, DType::i64, &g);
  for (const char* block : {"gpt", "deepseek"}) {
    auto m = tiny_lm(block);
    QConfig q = QConfig::default_ptq();
    q.skip_unsupported = true;  // embeddings and norms stay f32
    prepare(*m, q);
    calibrate(*m, {randint(0, 40, {4, 16}, DType::i64, &g), randint(0, 40, {4, 16}, DType::i64, &g)});
    enable_fake_quant(*m, true);
    enable_observer(*m, false);
    NoGrad ng;
    Tensor fake = (*m)(ids);
    EXPECT_EQ(convert(*m), std::string(block) == "gpt" ? 8 : 10) << block;
    for (auto& [name, mod] : m->named_modules())
      EXPECT_FALSE(name.rfind("blocks.", 0) == 0 && mod->type_name() == "Linear") << name;
    Tensor got = (*m)(ids);
    const double range = (amax(fake) - amin(fake)).item();
    EXPECT_LT(mean(abs(got - fake)).item(), 0.01 * range) << block;
    EXPECT_GE(argmax_agreement(got.reshape({-1, got.size(-1)}), fake.reshape({-1, fake.size(-1)})), 0.9) << block;
  }
}
