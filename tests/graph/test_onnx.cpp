// ONNX export (include/qiusuo/graph/onnx.h): every model family and a graph of the plain
// ops pass ONNX's checker and its strict shape inference (which checks each declared
// intermediate shape against the operators' rules), params arrive bit for bit as
// initializers, a dynamic batch is the symbolic dimension N, and what has no ONNX form is
// refused by name. OnnxZoo writes each model with an example input and qiusuo's output
// for it; the ctest onnx.ort_zoo runs them all in ONNX Runtime (tests/onnx/ort_check.js).
#include <gtest/gtest.h>

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>

#include "qiusuo/apps/cnn.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/graph/onnx.h"
#include "qiusuo/graph/passes.h"
#include "qiusuo/io/safetensors.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"
#include "test_util.h"

namespace qs {
namespace {

namespace fs = std::filesystem;
using qs::testing::error_of;

onnx::ModelProto read_model(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromIstream(&f)) << path;
  return m;
}

std::string tmp_path(const std::string& name) { return (fs::path(::testing::TempDir()) / name).string(); }

nn::LMConfig lm_config(const char* block, const char* attention, int64_t kv_heads, nn::PositionEncoding pos) {
  nn::LMConfig c;
  c.vocab_size = 64, c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.max_seq_len = 32;
  c.n_kv_heads = kv_heads;
  c.block = block;
  c.attention = attention;
  c.pos.kind = pos;
  return c;
}

// A model to export: its name, its traced graph and an example input with the eager output.
struct Case {
  std::string name;
  graph::Graph g;
  Tensor input, output;
};

// The models of every family qiusuo exports, traced and optimised as `qiusuo export` does.
std::vector<Case> model_zoo() {
  std::vector<Case> cases;
  Generator gen(11);
  auto add = [&](const std::string& name, nn::Module& m, const Tensor& example, const Tensor& probe, bool dynamic,
                 bool optimise) {
    graph::TraceOptions o;
    o.dynamic_batch = dynamic;
    graph::Graph g = graph::trace(m, example, o);
    if (optimise) graph::optimize(g);
    NoGrad ng;
    nn::EvalScope ev(m);
    cases.push_back({name, std::move(g), probe, m.forward(probe)});
  };
  auto cnn = std::make_shared<apps::FashionCNN>(gen);
  {
    // Batch-norm statistics that are not the identity, so that folding them matters.
    NoGrad ng;
    for (auto& [n, t] : cnn->named_buffers())
      if (n.find("running_var") != std::string::npos) t.copy_(uniform(t.shape(), 0.5, 2.0, DType::f32, &gen));
  }
  Tensor img = randn({2, 1, 28, 28}, DType::f32, &gen);
  add("cnn", *cnn, img, randn({2, 1, 28, 28}, DType::f32, &gen), false, true);
  add("cnn_batchnorm", *cnn, img, randn({2, 1, 28, 28}, DType::f32, &gen), false, false);
  add("cnn_dynamic", *cnn, img, randn({5, 1, 28, 28}, DType::f32, &gen), true, true);
  struct Lm {
    const char* name;
    nn::LMConfig cfg;
  };
  std::vector<Lm> lms = {
      {"lm_gpt_rope", lm_config("gpt", "mha", 0, nn::PositionEncoding::rope)},
      {"lm_gpt_learned", lm_config("gpt", "mha", 0, nn::PositionEncoding::learned)},
      {"lm_gpt_sinusoidal", lm_config("gpt", "mha", 0, nn::PositionEncoding::sinusoidal)},
      {"lm_deepseek_gqa", lm_config("deepseek", "mha", 2, nn::PositionEncoding::rope)},
      {"lm_deepseek_mla", lm_config("deepseek", "mla", 0, nn::PositionEncoding::rope)},
  };
  for (auto& [name, cfg] : lms) {
    auto lm = std::make_shared<nn::TransformerLM>(cfg, nn::FfnFactory{}, gen);
    Tensor idx = randint(0, 64, {1, 16}, DType::i64, &gen);
    add(name, *lm, idx, randint(0, 64, {1, 16}, DType::i64, &gen), false, true);
  }
  // Any batch and any length up to 32: traced at [2, 8], checked at [3, 13].
  for (const char* block : {"gpt", "deepseek"}) {
    auto lm = std::make_shared<nn::TransformerLM>(lm_config(block, "mha", 2, nn::PositionEncoding::rope),
                                                  nn::FfnFactory{}, gen);
    graph::TraceOptions o;
    o.dynamic_batch = o.dynamic_seq = true;
    o.max_seq = 32;
    graph::Graph g = graph::trace(*lm, randint(0, 64, {2, 8}, DType::i64, &gen), o);
    graph::optimize(g);
    Tensor probe = randint(0, 64, {3, 13}, DType::i64, &gen);
    NoGrad ng;
    nn::EvalScope ev(*lm);
    cases.push_back({std::string("lm_dynamic_") + block, std::move(g), probe, lm->forward(probe)});
  }
  return cases;
}

// A graph of the plain rows (elementwise, reductions, shapes, selection) in one forward.
Case plain_ops_case() {
  Generator gen(12);
  Tensor w = randn({6, 5}, DType::f32, &gen), x = randn({3, 6}, DType::f32, &gen);
  auto fn = [w](const std::vector<Tensor>& in) {
    const Tensor& a = in[0];
    Tensor m = matmul(a, w);                                          // [3, 5]
    Tensor e = exp(clamp(m, -3.0, 3.0)) - log(abs(m) + 1.0);
    Tensor s = softmax(e, 1) * sigmoid(m) + tanh(m) / (sqrt(abs(m) + 2.0));
    Tensor l = log_softmax(s, -1) + neg(relu(m));
    Tensor r = sum(l, {1}, true) + mean(l, {0}, true) - amax(l, {1}, true);  // [3, 5]
    Tensor sel = where(gt(r, m), r, m);
    Tensor c = cat({sel, sel.slice(1, 1, 4, 2)}, 1);                 // [3, 7]
    Tensor p = c.permute({1, 0}).reshape({7, 3});
    Tensor big = p.unsqueeze(0).expand({2, 7, 3}) * 0.5;
    Tensor k = topk(big, 2, -1).values;
    return std::vector<Tensor>{maximum(k, minimum(k, k * 2.0)) + sin(k) * cos(k)};
  };
  graph::Graph g = graph::trace(fn, {x}, {{"w", w}});
  Tensor probe = randn({3, 6}, DType::f32, &gen);
  NoGrad ng;
  return {"plain_ops", std::move(g), probe, fn({probe})[0]};
}

TEST(OnnxExport, EveryModelFamilyPassesTheCheckerWithItsShapes) {
  std::vector<Case> cases = model_zoo();
  cases.push_back(plain_ops_case());
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = tmp_path(c.name + ".onnx");
    graph::OnnxReport r = graph::save_onnx(c.g, path);
    EXPECT_EQ(r.opset, graph::kOnnxOpset);
    EXPECT_GT(r.nodes, 0);
    EXPECT_NO_THROW(graph::check_onnx(path));
    onnx::ModelProto m = read_model(path);
    EXPECT_EQ(m.opset_import(0).version(), graph::kOnnxOpset);
    EXPECT_EQ(m.producer_name(), "qiusuo");
    // Inputs and outputs as declared, the batch as "N".
    ASSERT_EQ(m.graph().input_size(), 1);
    const auto& in = m.graph().input(0).type().tensor_type().shape();
    const graph::Value& x0 = c.g.values[size_t(c.g.inputs[0])];
    ASSERT_EQ(in.dim_size(), int(x0.shape.size()));
    for (int d = 0; d < in.dim_size(); ++d)
      if (x0.shape[size_t(d)] == graph::kBatch)
        EXPECT_EQ(in.dim(d).dim_param(), "N");
      else if (x0.shape[size_t(d)] == graph::kSeq)
        EXPECT_EQ(in.dim(d).dim_param(), "S");
      else
        EXPECT_EQ(in.dim(d).dim_value(), x0.shape[size_t(d)]);
    // Every param arrives bit for bit.
    std::map<std::string, const onnx::TensorProto*> inits;
    for (const auto& t : m.graph().initializer()) inits[t.name()] = &t;
    for (size_t v = 0; v < c.g.values.size(); ++v) {
      if (c.g.values[v].kind != graph::ValueKind::param) continue;
      auto it = inits.find(c.g.values[v].name);
      ASSERT_NE(it, inits.end()) << c.g.values[v].name;
      const Tensor t = c.g.data[v].contiguous();
      ASSERT_EQ(it->second->raw_data().size(), size_t(t.numel()) * dtype_size(t.dtype()));
      EXPECT_EQ(std::memcmp(it->second->raw_data().data(), t.raw_data(), it->second->raw_data().size()), 0);
    }
  }
}

TEST(OnnxExport, DynamicBatchIsTheSymbolN) {
  Generator gen(13);
  apps::FashionCNN cnn(gen);
  graph::TraceOptions o;
  o.dynamic_batch = true;
  graph::Graph g = graph::trace(cnn, randn({2, 1, 28, 28}, DType::f32, &gen), o);
  const std::string path = tmp_path("dyn.onnx");
  graph::save_onnx(g, path);
  onnx::ModelProto m = read_model(path);
  EXPECT_EQ(m.graph().input(0).type().tensor_type().shape().dim(0).dim_param(), "N");
  EXPECT_EQ(m.graph().output(0).type().tensor_type().shape().dim(0).dim_param(), "N");
  // The flatten before the classifier reshapes to (-1, 128): it follows N.
  bool reshape = false;
  for (const auto& n : m.graph().node()) reshape = reshape || n.op_type() == "Reshape";
  EXPECT_TRUE(reshape);
  graph::check_onnx(path);
}

TEST(OnnxExport, WhatHasNoOnnxFormIsRefusedByName) {
  Generator gen(14);
  // bf16 graphs: ONNX Runtime's CPU kernels are float32.
  apps::FashionCNN cnn(gen);
  graph::Graph bf;
  {
    Autocast ac;
    bf = graph::trace(cnn, randn({1, 1, 28, 28}, DType::f32, &gen));
  }
  std::string e = error_of([&] { graph::save_onnx(bf, tmp_path("bf16.onnx")); });
  EXPECT_NE(e.find("is bf16"), std::string::npos) << e;
  EXPECT_NE(e.find("without --bf16"), std::string::npos) << e;
  // ALiBi: attention with slopes.
  nn::TransformerLM alibi(lm_config("gpt", "mha", 0, nn::PositionEncoding::alibi), {}, gen);
  graph::Graph ga = graph::trace(alibi, randint(0, 64, {1, 8}, DType::i64, &gen));
  e = error_of([&] { graph::save_onnx(ga, tmp_path("alibi.onnx")); });
  EXPECT_NE(e.find("(attention -> "), std::string::npos) << e;
  EXPECT_NE(e.find("ALiBi"), std::string::npos) << e;
  // An extra output a later node reads: max_pool's indices.
  Tensor x = randn({1, 1, 4, 4}, DType::f32, &gen);
  graph::Graph gi = graph::trace(
      [](const std::vector<Tensor>& in) {
        auto [v, i] = max_pool2d_with_indices(in[0], 2);
        return std::vector<Tensor>{v + i.to(DType::f32)};
      },
      {x});
  e = error_of([&] { graph::save_onnx(gi, tmp_path("indices.onnx")); });
  EXPECT_NE(e.find("(max_pool -> "), std::string::npos) << e;
  EXPECT_NE(e.find("indices (output 1) is read"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(tmp_path("indices.onnx")));
  // MoE: the experts are chosen by the router's values; the graph froze the example's choice.
  nn::LMConfig mc = lm_config("deepseek", "mha", 0, nn::PositionEncoding::rope);
  mc.ffn = "moe", mc.moe_n_routed = 4, mc.moe_top_k = 1;
  nn::TransformerLM moe(mc, {}, gen);
  graph::Graph gm = graph::trace(moe, randint(0, 64, {1, 8}, DType::i64, &gen));
  e = error_of([&] { graph::save_onnx(gm, tmp_path("moe.onnx")); });
  EXPECT_NE(e.find("chose its path by tensor values (MoE routing"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(tmp_path("moe.onnx")));
}

TEST(OnnxExport, CheckerRefusesABrokenFile) {
  const std::string path = tmp_path("broken.onnx");
  std::ofstream(path, std::ios::binary) << "not a protobuf at all \x01\x02";
  std::string e = error_of([&] { graph::check_onnx(path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  e = error_of([&] { graph::check_onnx(tmp_path("missing.onnx")); });
  EXPECT_NE(e.find("cannot open"), std::string::npos) << e;
  // A model whose node reads a value nothing defines.
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(graph::kOnnxOpset);
  auto* n = m.mutable_graph()->add_node();
  n->set_op_type("Relu");
  n->add_input("nowhere");
  n->add_output("y");
  m.mutable_graph()->set_name("g");
  std::string bytes;
  m.SerializeToString(&bytes);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  e = error_of([&] { graph::check_onnx(path); });
  EXPECT_NE(e.find("checker refused"), std::string::npos) << e;
}

// Writes every zoo model, with its example, for the ctest onnx.ort_zoo (ONNX Runtime).
TEST(OnnxZoo, WritesModelsAndExamplesForOnnxRuntime) {
  const fs::path dir = QS_ONNX_ZOO;
  fs::create_directories(dir);
  std::vector<Case> cases = model_zoo();
  cases.push_back(plain_ops_case());
  for (auto& c : cases) {
    const std::string path = (dir / (c.name + ".onnx")).string();
    graph::save_onnx(c.g, path);
    io::save_safetensors((dir / (c.name + ".example.safetensors")).string(),
                         {{"input", c.input}, {"output", c.output}});
  }
  EXPECT_EQ(cases.size(), 11u);
}

}  // namespace
}  // namespace qs
