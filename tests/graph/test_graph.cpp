// Tracing into a static graph, the verifier and the interpreter: traced graphs reproduce
// the eager model (bit for bit on the reference kernels), and a broken graph is refused
// with an error naming the node.
#include <gtest/gtest.h>

#include <filesystem>

#include "ops/op.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/io/safetensors.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"
#include "test_util.h"

namespace qs {
namespace {

void expect_identical(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.dtype(), b.dtype());
  auto x = a.to_vector(), y = b.to_vector();
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], y[i]) << "element " << i;
}

double max_abs_diff(const Tensor& a, const Tensor& b) { return amax(abs(a - b)).item(); }

// The model's forward traced under bf16 autocast.
graph::Graph trace_bf16(nn::Module& model, const Tensor& x) {
  Autocast ac;
  return graph::trace(model, x);
}

using qs::testing::error_of;

TEST(Graph, TracedCnnReproducesTheEagerModelOnAnyInputOfItsShape) {
  Generator gen(1);
  apps::FashionCNN model(gen);
  model.eval();
  Tensor x = randn({3, 1, 28, 28}, DType::f32, &gen), x2 = randn({3, 1, 28, 28}, DType::f32, &gen);
  graph::Graph g = graph::trace(model, x);
  g.verify();
  EXPECT_TRUE(model.is_training() == false);
  ASSERT_EQ(g.inputs.size(), 1u);
  ASSERT_EQ(g.outputs.size(), 1u);
  // Every parameter and buffer the eval forward reads is a named param, nothing a constant.
  int params = 0;
  for (auto& v : g.values) {
    EXPECT_NE(v.kind, graph::ValueKind::constant) << v.name;
    params += v.kind == graph::ValueKind::param;
  }
  EXPECT_EQ(params, 3 * 2 + 3 * 4 + 2);  // conv w, b; bn w, b, mean, var; fc w, b
  EXPECT_EQ(g.param_bytes(), [&] {
    int64_t b = 0;
    for (auto& [n, t] : model.named_parameters()) b += t.numel() * 4;
    for (auto& [n, t] : model.named_buffers())
      if (n.find("num_batches") == std::string::npos) b += t.numel() * int64_t(t.element_size());
    return b;
  }());
  {
    ops::ReferenceKernels ref;
    expect_identical(graph::run(g, {x2})[0], model(x2));
  }
  Tensor eager = model(x2), traced = graph::run(g, {x2})[0];
  EXPECT_LT(max_abs_diff(traced, eager), 1e-5);
  const std::string text = g.to_text();
  EXPECT_NE(text.find("input x0: f32[3, 1, 28, 28]"), std::string::npos) << text;
  EXPECT_NE(text.find("param c1.weight: f32[32, 1, 3, 3]"), std::string::npos) << text;
  EXPECT_NE(text.find("= convolution(x0, c1.weight, c1.bias)"), std::string::npos) << text;
  EXPECT_NE(text.find("= batch_norm("), std::string::npos) << text;
}

nn::LMConfig tiny_lm(const char* block = "gpt", int64_t layers = 2) {
  nn::LMConfig c;
  c.vocab_size = 64, c.d_model = 32, c.n_layers = layers, c.n_heads = 4, c.max_seq_len = 32;
  c.block = block;
  c.attention = c.block == "deepseek" ? "mla" : "mha";
  c.ffn = "swiglu";
  return c;
}

TEST(Graph, TracedLanguageModelReproducesTheEagerModel) {
  Generator gen(2);
  for (const char* block : {"gpt", "deepseek"}) {
    nn::TransformerLM lm(tiny_lm(block), {}, gen);
    Tensor idx = randint(0, 64, {2, 16}, DType::i64, &gen), idx2 = randint(0, 64, {2, 16}, DType::i64, &gen);
    graph::Graph g = graph::trace(lm, idx);
    g.verify();
    ops::ReferenceKernels ref;
    NoGrad ng;
    expect_identical(graph::run(g, {idx2})[0], lm(idx2));
  }
}

// An MoE layer picks its experts by the router's values, which the op calls do not show:
// the traced graph would replay the example's routing for every input (a wrong answer, not
// an error), so it is marked, and saving or running it is refused by name (ONNX export:
// test_onnx). A dense model's graph is not marked.
TEST(Graph, ValueDependentRoutingIsMarkedAndRefused) {
  Generator gen(4);
  nn::LMConfig c = tiny_lm("deepseek");
  nn::TransformerLM dense(c, {}, gen);
  Tensor idx = randint(0, 64, {2, 16}, DType::i64, &gen);
  EXPECT_TRUE(graph::trace(dense, idx).value_dependent.empty());
  c.ffn = "moe", c.moe_n_routed = 4, c.moe_top_k = 1;
  nn::TransformerLM moe(c, {}, gen);
  graph::Graph g = graph::trace(moe, idx);
  ASSERT_EQ(g.value_dependent.size(), 1u);  // one note, however many layers route
  EXPECT_NE(g.value_dependent[0].find("MoE routing"), std::string::npos);
  EXPECT_GT(g.flops(), 0);  // what reads only the structure still may
  const std::string dir = testing::temp_dir("graph_value_dependent");
  for (const std::string& e : {error_of([&] { graph::save(g, dir + "/moe.qsg"); }),
                               error_of([&] { graph::run(g, {idx}); })})
    EXPECT_NE(e.find("chose its path by tensor values (MoE routing"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(dir + "/moe.qsg"));
}

TEST(Graph, TracingUnderAutocastRecordsItsCasts) {
  Generator gen(3);
  apps::FashionCNN model(gen);
  Tensor x = randn({2, 1, 28, 28}, DType::f32, &gen);
  graph::Graph g = trace_bf16(model, x);
  g.verify();
  int casts = 0;
  for (auto& n : g.nodes) casts += n.op == "cast";
  EXPECT_GE(casts, 4);  // at least the input and the conv weights go to bf16
  ops::ReferenceKernels ref;
  Tensor traced = graph::run(g, {x})[0];  // no autocast scope: the casts are in the graph
  Tensor eager_ref;
  {
    Autocast ac;
    nn::EvalScope ev(model);
    eager_ref = model(x);
  }
  expect_identical(traced, eager_ref);
}

TEST(Graph, TensorsTheForwardMakesBecomeConstants) {
  Tensor x = randn({4});
  graph::Graph g = graph::trace(
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{relu(in[0] + from_vector({1, -2, 3, -4}, {4}))}; },
      {x});
  g.verify();
  ASSERT_EQ(g.nodes.size(), 2u);
  EXPECT_EQ(g.nodes[0].op, "add");
  EXPECT_EQ(g.values[size_t(g.nodes[0].inputs[1])].kind, graph::ValueKind::constant);
  Tensor y = from_vector({0, 0, 0, 10}, {4});
  EXPECT_EQ(graph::run(g, {y})[0].to_vector(), (std::vector<double>{1, 0, 3, 6}));
}

TEST(Graph, RunRefusesInputsOfAnotherShapeOrDtype) {
  graph::Graph g = graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{exp(in[0])}; },
                                {randn({2, 3})});
  EXPECT_NE(error_of([&] { graph::run(g, {randn({3, 2})}); }).find("must be f32[2, 3] as traced"), std::string::npos);
  EXPECT_NE(error_of([&] { graph::run(g, {randn({2, 3}, DType::f64)}); }).find("got f64[2, 3]"), std::string::npos);
  EXPECT_NE(error_of([&] { graph::run(g, {}); }).find("takes 1 inputs, got 0"), std::string::npos);
}

class BrokenGraph : public ::testing::Test {
 protected:
  void SetUp() override {
    g = graph::trace(
        [](const std::vector<Tensor>& in) { return std::vector<Tensor>{softmax(relu(in[0]) * in[1], -1)}; },
        {randn({2, 5}), randn({2, 5})});
    g.verify();
    ASSERT_EQ(g.nodes.size(), 3u);  // relu, mul, softmax
  }
  graph::Graph g;
};

TEST_F(BrokenGraph, UnknownOp) {
  g.nodes[1].op = "mull";
  EXPECT_NE(error_of([&] { g.verify(); }).find("node 1 has unknown op 'mull'"), std::string::npos);
}

TEST_F(BrokenGraph, WrongInputCount) {
  g.nodes[0].inputs.push_back(g.inputs[1]);
  EXPECT_NE(error_of([&] { g.verify(); }).find("node 0 (relu) has 2 inputs; the op takes 1"), std::string::npos);
}

TEST_F(BrokenGraph, NodesOutOfOrderOrACycle) {
  std::swap(g.nodes[0], g.nodes[1]);
  EXPECT_NE(error_of([&] { g.verify(); }).find("node 0 (mul) reads value"), std::string::npos);
  std::swap(g.nodes[0], g.nodes[1]);
  g.nodes[0].inputs[0] = g.nodes[2].outputs[0];  // relu reads softmax's output: a cycle
  EXPECT_NE(error_of([&] { g.verify(); }).find("before it is produced"), std::string::npos);
}

TEST_F(BrokenGraph, DanglingEdge) {
  g.nodes[2].inputs[0] = 99;
  EXPECT_NE(error_of([&] { g.verify(); }).find("node 2 (softmax) refers to value 99"), std::string::npos);
}

TEST_F(BrokenGraph, DeclaredShapeDisagreesWithTheShapeRule) {
  g.values[size_t(g.nodes[1].outputs[0])].shape = {5, 2};
  EXPECT_NE(error_of([&] { g.verify(); }).find("node 1 (mul) declares output 0"), std::string::npos);
}

TEST_F(BrokenGraph, InvalidInputsForTheOp) {
  g.values[size_t(g.inputs[1])].shape = {3, 5};  // mul of [2,5] and [3,5] does not broadcast
  EXPECT_NE(error_of([&] { g.verify(); }).find("node 1 (mul) is invalid for its inputs"), std::string::npos);
}

TEST_F(BrokenGraph, ProducedTwice) {
  g.nodes[1].outputs[0] = g.nodes[0].outputs[0];
  EXPECT_NE(error_of([&] { g.verify(); }).find("node 1 (mul) writes value"), std::string::npos);
}

TEST(Graph, ParamsWithoutDataOrOfAnotherShapeAreRefused) {
  Generator gen(4);
  apps::FashionCNN model(gen);
  graph::Graph g = graph::trace(model, randn({1, 1, 28, 28}));
  int id = -1;
  for (size_t i = 0; i < g.values.size(); ++i)
    if (g.values[i].name == "c2.weight") id = int(i);
  ASSERT_GE(id, 0);
  g.data[size_t(id)] = randn({64, 32, 3, 2});
  EXPECT_NE(error_of([&] { g.verify(); }).find("param 'c2.weight' is declared f32[64, 32, 3, 3] but its data is f32[64, 32, 3, 2]"),
            std::string::npos);
  g.data[size_t(id)] = Tensor();
  EXPECT_NE(error_of([&] { g.verify(); }).find("param 'c2.weight' has no data"), std::string::npos);
}

}  // namespace
}  // namespace qs

// ---- files
namespace qs {
namespace {

using testing::read_bytes;
using testing::write_bytes;

TEST(GraphFile, SavedAndLoadedGraphsRunAlike) {
  Generator gen(5);
  apps::FashionCNN cnn(gen);
  nn::TransformerLM lm(tiny_lm("deepseek", 1), {}, gen);
  const std::string dir = testing::temp_dir("graph_file");
  struct Case {
    graph::Graph g;
    Tensor x;
  };
  std::vector<Case> cases;
  cases.push_back({graph::trace(cnn, randn({2, 1, 28, 28}, DType::f32, &gen)), randn({2, 1, 28, 28}, DType::f32, &gen)});
  cases.push_back({graph::trace(lm, randint(0, 64, {1, 12}, DType::i64, &gen)), randint(0, 64, {1, 12}, DType::i64, &gen)});
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = dir + "/model" + std::to_string(i) + ".qsg";
    graph::save(cases[i].g, path);
    graph::Graph back = graph::load(path);
    EXPECT_EQ(back.to_text(), cases[i].g.to_text());
    ops::ReferenceKernels ref;
    expect_identical(graph::run(back, {cases[i].x})[0], graph::run(cases[i].g, {cases[i].x})[0]);
  }
}

// fuzz_graph: a node that leaves out a required input (linear(x0, _, w)) reached the shape
// rule's null dereference; now a Tensor accessor on an undefined tensor is an Error, and the
// load an IOError naming the node (tests/malformed/README.md).
TEST(GraphFile, RequiredInputLeftOutIsRefused) {
  const std::string dir = testing::temp_dir("graph_malformed");
  const std::string path = dir + "/g.qsg";
  write_bytes(path, read_bytes(std::string(QS_SOURCE_DIR) + "/tests/malformed/graph_required_input_absent.qsg"));
  io::save_safetensors(path + ".safetensors", {{"w", ones({3, 4})}, {"b", zeros({3})}});
  std::string e = error_of([&] { graph::load(path); });
  EXPECT_NE(e.find("undefined tensor"), std::string::npos) << e;
  EXPECT_NE(e.find("node 0 (linear)"), std::string::npos) << e;
}

TEST(GraphFile, GoldenVersion1StillLoads) {
  const std::string path = std::string(QS_SOURCE_DIR) + "/tests/graph/golden/mlp_v1.qsg";
  graph::Graph g = graph::load(path);
  ASSERT_EQ(g.nodes.size(), 3u);
  Tensor x = from_vector({1, 2, 3, -1, 0.5, 4}, {2, 3});
  Tensor w = from_vector({0.5, -1.0, 0.25, 1.5, 0.0, -0.5, -0.75, 2.0, 1.0, 0.125, 0.375, -0.25}, {4, 3});
  Tensor b = from_vector({0.1, -0.2, 0.3, -0.4}, {4});
  ops::ReferenceKernels ref;
  expect_identical(graph::run(g, {x})[0], softmax(relu(linear(x, w, b)), 1));
}

class BadGraphFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path = testing::temp_dir("bad_graph") + "/m.qsg";
    graph::Graph g = graph::trace(
        [](const std::vector<Tensor>& in) { return std::vector<Tensor>{softmax(in[0] * from_vector({2}, {1}), 1)}; },
        {randn({2, 3})});
    graph::save(g, path);
    text = read_bytes(path);
  }
  std::string load_error() { return error_of([&] { graph::load(path); }); }
  void replace(const std::string& a, const std::string& b) {
    size_t at = text.find(a);
    ASSERT_NE(at, std::string::npos) << a << " in\n" << text;
    text.replace(at, a.size(), b);
    write_bytes(path, text);
  }
  std::string path, text;
};

TEST_F(BadGraphFile, TruncatedText) {
  write_bytes(path, text.substr(0, text.find("output")));
  EXPECT_NE(load_error().find("no outputs"), std::string::npos) << load_error();
  write_bytes(path, text.substr(0, text.find("= softmax") + 5));
  EXPECT_NE(load_error().find("m.qsg:"), std::string::npos) << load_error();
  write_bytes(path, "");
  EXPECT_NE(load_error().find("empty file"), std::string::npos) << load_error();
}

TEST_F(BadGraphFile, VersionFromTheFuture) {
  replace(fmt::format("qsgraph {}", graph::kFormatVersion), "qsgraph 7");
  EXPECT_NE(load_error().find(fmt::format("m.qsg:1: format version 7 is newer than this build reads (up to {})",
                                          graph::kFormatVersion)),
            std::string::npos)
      << load_error();
}

TEST_F(BadGraphFile, UnknownOpNamesTheNode) {
  replace("= softmax(", "= softmaxx(");
  EXPECT_NE(load_error().find("node 1 has unknown op 'softmaxx'"), std::string::npos) << load_error();
}

TEST_F(BadGraphFile, UnknownDtypeAndBadAttribute) {
  replace("input x0: f32[", "input x0: f31[");
  EXPECT_NE(load_error().find("m.qsg:2: unknown dtype 'f31'"), std::string::npos) << load_error();
  replace("input x0: f31[", "input x0: f32[");
  replace("{dim=1}", "{dim=[1}");
  EXPECT_NE(load_error().find("unbalanced"), std::string::npos) << load_error();
}

TEST_F(BadGraphFile, UndeclaredValueAndWrongOutput) {
  replace("output v1", "output v9");
  EXPECT_NE(load_error().find("value 'v9' is used but not declared"), std::string::npos) << load_error();
}

TEST_F(BadGraphFile, WeightsFileMissingOrDisagreeing) {
  std::filesystem::remove(path + ".safetensors");
  EXPECT_NE(load_error().find("m.qsg.safetensors"), std::string::npos) << load_error();
  io::save_safetensors(path + ".safetensors", {{"const0", from_vector({2, 3}, {2})}});
  EXPECT_NE(load_error().find("const 'const0' is declared f32[1] but"), std::string::npos) << load_error();
  io::save_safetensors(path + ".safetensors", {{"const0", from_vector({2}, {1})}, {"extra", from_vector({2}, {1})}});
  EXPECT_NE(load_error().find("holds 'extra', which the graph does not declare"), std::string::npos) << load_error();
  io::save_safetensors(path + ".safetensors", {{"other", from_vector({2}, {1})}});
  EXPECT_NE(load_error().find("const 'const0' is not in the weights file"), std::string::npos) << load_error();
}

TEST_F(BadGraphFile, ShapeThatTheOpCannotGive) {
  replace("v1: f32[2, 3] = softmax", "v1: f32[3, 2] = softmax");
  EXPECT_NE(load_error().find("node 1 (softmax) declares output 0"), std::string::npos) << load_error();
}

}  // namespace
}  // namespace qs

// ---- passes
#include "qiusuo/graph/passes.h"

namespace qs {
namespace {

int count_op(const graph::Graph& g, const std::string& op) {
  int n = 0;
  for (auto& node : g.nodes) n += node.op == op;
  return n;
}

// Running statistics and affine parameters far from their initial values, so folding them
// into the convolutions changes real numbers.
void randomise_batch_norms(nn::Module& m, Generator& gen) {
  NoGrad ng;
  for (auto& [name, t] : m.named_buffers()) {
    if (name.find("running_mean") != std::string::npos) t.copy_(randn(t.shape(), t.dtype(), &gen) * 0.3);
    if (name.find("running_var") != std::string::npos) t.copy_(rand(t.shape(), t.dtype(), &gen) + 0.5);
  }
  for (auto& [name, t] : m.named_parameters())
    if (name[0] == 'b' && name.find(".weight") != std::string::npos) t.copy_(rand(t.shape(), t.dtype(), &gen) + 0.5);
}

TEST(GraphPasses, BatchNormsFoldIntoConvolutionsWithinRounding) {
  Generator gen(6);
  apps::FashionCNN model(gen);
  randomise_batch_norms(model, gen);
  Tensor x = randn({4, 1, 28, 28}, DType::f32, &gen);
  graph::Graph g = graph::trace(model, x), opt = g;
  graph::PassReport r = graph::optimize(opt);
  EXPECT_EQ(r.batch_norms_folded, 3) << r.to_string();
  EXPECT_EQ(count_op(opt, "batch_norm"), 0);
  EXPECT_EQ(count_op(opt, "relu"), 0);  // the batch norms' fused ReLUs: now the convolutions'
  EXPECT_EQ(r.activations_fused, 3) << r.to_string();
  for (const graph::Node& n : opt.nodes)
    if (n.op == "convolution") EXPECT_EQ(n.attrs.s("activation"), "relu");
  for (auto& v : opt.values) EXPECT_EQ(v.name.find("running"), std::string::npos) << v.name << " should be gone";
  EXPECT_LT(r.data_bytes_after, r.data_bytes_before);
  ops::ReferenceKernels ref;
  Tensor want = graph::run(g, {x})[0], got = graph::run(opt, {x})[0];
  double peak = 0;
  for (double v : want.to_vector()) peak = std::max(peak, std::abs(v));
  EXPECT_LT(max_abs_diff(got, want), 1e-5 * (1 + peak));
  EXPECT_GT(max_abs_diff(got, want), 0.0);  // it really computed something else
}

TEST(GraphPasses, AutocastWeightCastsFoldIntoBf16Weights) {
  Generator gen(7);
  apps::FashionCNN model(gen);
  Tensor x = randn({2, 1, 28, 28}, DType::f32, &gen);
  graph::Graph g = trace_bf16(model, x);
  graph::Graph opt = g;
  graph::PassReport r = graph::optimize(opt);
  EXPECT_EQ(count_op(opt, "cast"), count_op(g, "cast") - r.constants_folded) << r.to_string();
  EXPECT_GE(r.constants_folded, 4);  // c1..c3 and fc weights at least
  int bf16_constants = 0;
  for (auto& v : opt.values) bf16_constants += v.kind == graph::ValueKind::constant && v.dtype == DType::bf16;
  EXPECT_GE(bf16_constants, 4);
  ops::ReferenceKernels ref;
  expect_identical(graph::run(opt, {x})[0], graph::run(g, {x})[0]);  // the same casts, run earlier
}

TEST(GraphPasses, CommonSubexpressionsDeadCodeAndConstants) {
  Tensor x = randn({5});
  graph::Graph g = graph::trace(
      [](const std::vector<Tensor>& in) {
        Tensor unused = sin(in[0]);
        Tensor c = exp(from_vector({0.5, 1, 2, 3, 4}, {5}));  // constant work
        return std::vector<Tensor>{exp(in[0]) + exp(in[0]) + c};
      },
      {x});
  ASSERT_EQ(g.nodes.size(), 6u);  // sin, exp(const), exp, exp, add, add
  graph::Graph opt = g;
  graph::PassReport r = graph::optimize(opt);
  EXPECT_EQ(r.subexpressions_merged, 1) << r.to_string();
  EXPECT_EQ(r.constants_folded, 1) << r.to_string();
  EXPECT_EQ(r.nodes_removed, 1) << r.to_string();  // sin
  EXPECT_EQ(opt.nodes.size(), 3u) << opt.to_text();  // exp, add, add
  ops::ReferenceKernels ref;
  expect_identical(graph::run(opt, {x})[0], graph::run(g, {x})[0]);
}

std::vector<std::string> ops_of(const graph::Graph& g) {
  std::vector<std::string> v;
  for (const graph::Node& n : g.nodes) v.push_back(n.op);
  return v;
}

// A model written with the plain ops (not nn::Linear) gets the fused linear row.
TEST(GraphPasses, MatmulBiasAndGeluBecomeOneLinear) {
  Generator gen(31);
  Tensor w = randn({8, 6}, DType::f32, &gen), b = randn({6}, DType::f32, &gen), w2 = randn({6, 5}, DType::f32, &gen);
  Tensor x = randn({3, 4, 8}, DType::f32, &gen);
  auto fn = [&](const std::vector<Tensor>& in) {
    Tensor h = gelu(b + matmul(in[0], w));  // the bias on either side
    return std::vector<Tensor>{matmul(h, w2)};
  };
  graph::Graph g = graph::trace(fn, {x}, {{"w", w}, {"b", b}, {"w2", w2}});
  EXPECT_EQ(ops_of(g), (std::vector<std::string>{"matmul", "add", "gelu", "matmul"}));
  graph::Graph opt = g;
  graph::PassReport r = graph::optimize(opt);
  EXPECT_EQ(r.linears_fused, 2) << r.to_string();  // matmul + add, the bare matmul
  EXPECT_EQ(r.activations_fused, 1) << r.to_string();  // the gelu
  ASSERT_EQ(ops_of(opt), (std::vector<std::string>{"linear", "linear"})) << opt.to_text();
  EXPECT_EQ(opt.nodes[0].attrs.s("activation"), "gelu");
  Tensor x2 = randn({3, 4, 8}, DType::f32, &gen);
  NoGrad ng;
  EXPECT_LT(max_abs_diff(graph::run(opt, {x2})[0], fn({x2})[0]), 1e-5);
  // A matmul by a computed tensor is no linear.
  graph::Graph h = graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{matmul(in[0], in[1])}; },
                                {randn({2, 3}), randn({3, 4})});
  EXPECT_EQ(graph::fuse_linear(h), 0);
}

// Attention written as its formula becomes the fused row: no [n, m] scores in memory.
TEST(GraphPasses, ExplicitAttentionBecomesTheFusedRow) {
  Generator gen(32);
  const int64_t n = 6;
  std::vector<double> causal(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) causal[size_t(i * n + j)] = -std::numeric_limits<double>::infinity();
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    auto fn = [&](const std::vector<Tensor>& in) {
      Tensor s = matmul(in[0], in[1].permute({0, 1, 3, 2}));
      if (variant == 0) s = s * 0.35 + from_vector(causal, {n, n});  // causal, scaled
      if (variant == 1) s = s / 2.0;                                 // plain, divided
      if (variant == 2) s = s * 0.35 + randn({n, n}, DType::f32, &gen);  // an arbitrary bias: not attention
      Tensor o = matmul(softmax(s, -1), in[2]);
      return std::vector<Tensor>{o.permute({0, 2, 1, 3}).reshape({2, n, 32})};
    };
    std::vector<Tensor> qkv = {randn({2, 4, n, 8}, DType::f32, &gen), randn({2, 4, n, 8}, DType::f32, &gen),
                               randn({2, 4, n, 8}, DType::f32, &gen)};
    graph::Graph g = graph::trace(fn, qkv);
    graph::Graph opt = g;
    graph::PassReport r = graph::optimize(opt);
    std::vector<std::string> ops = ops_of(opt);
    const bool fused = std::find(ops.begin(), ops.end(), "attention") != ops.end();
    EXPECT_EQ(fused, variant != 2) << opt.to_text();
    EXPECT_EQ(r.attentions_fused, variant != 2 ? 1 : 0) << r.to_string();
    if (fused) {
      EXPECT_EQ(std::find(ops.begin(), ops.end(), "softmax"), ops.end()) << opt.to_text();
      const graph::Node& a = opt.nodes[size_t(std::find(ops.begin(), ops.end(), "attention") - ops.begin())];
      EXPECT_EQ(a.attrs.b("causal"), variant == 0);
      EXPECT_FLOAT_EQ(float(a.attrs.f("scale")), variant == 0 ? 0.35f : 0.5f);  // the f32 constant
    }
    std::vector<Tensor> other = {randn({2, 4, n, 8}, DType::f32, &gen), randn({2, 4, n, 8}, DType::f32, &gen),
                                 randn({2, 4, n, 8}, DType::f32, &gen)};
    EXPECT_LT(max_abs_diff(graph::run(opt, other)[0], graph::run(g, other)[0]), 1e-5);
  }
}

TEST(GraphPasses, OptimisedLanguageModelMatchesWithinRounding) {
  Generator gen(8);
  nn::TransformerLM lm(tiny_lm(), {}, gen);
  Tensor idx = randint(0, 64, {2, 16}, DType::i64, &gen);
  graph::Graph g = graph::trace(lm, idx), opt = g;
  graph::PassReport r = graph::optimize(opt);
  EXPECT_LE(opt.nodes.size(), g.nodes.size()) << r.to_string();
  ops::ReferenceKernels ref;
  EXPECT_LT(max_abs_diff(graph::run(opt, {idx})[0], graph::run(g, {idx})[0]), 1e-5);
}

TEST(GraphPasses, PeakIntermediateBytesFollowLiveness) {
  graph::Graph g = graph::trace(
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{cos(sin(exp(in[0])))}; }, {randn({1000})});
  // exp and sin alive together (8000 bytes), then sin and cos; exp is released after sin.
  EXPECT_EQ(graph::peak_intermediate_bytes(g), 8000);
  // A view keeps its input's buffer alive: exp's 4000 bytes stay while the view is read,
  // so sin of the view runs with 8000 bytes live, and nothing is counted twice.
  graph::Graph v = graph::trace(
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{sin(exp(in[0]).reshape({10, 100}))}; },
      {randn({1000})});
  ASSERT_EQ(v.nodes.size(), 3u);  // exp, view, sin
  EXPECT_EQ(graph::peak_intermediate_bytes(v), 8000);
}

}  // namespace
}  // namespace qs

// ---- a dynamic batch
namespace qs {
namespace {

TEST(GraphDynamicBatch, TracedAtOneBatchRunsAtAnyAndSavesAsN) {
  Generator gen(9);
  apps::FashionCNN cnn(gen);
  nn::TransformerLM lm(tiny_lm("deepseek"), {}, gen);
  graph::TraceOptions dyn;
  dyn.dynamic_batch = true;
  struct Case {
    graph::Graph g;
    std::function<Tensor(int64_t)> input;
    nn::Module* model;
  };
  std::vector<Case> cases;
  cases.push_back({graph::trace(cnn, randn({2, 1, 28, 28}, DType::f32, &gen), dyn),
                   [&](int64_t b) { return randn({b, 1, 28, 28}, DType::f32, &gen); }, &cnn});
  cases.push_back({graph::trace(lm, randint(0, 64, {2, 16}, DType::i64, &gen), dyn),
                   [&](int64_t b) { return randint(0, 64, {b, 16}, DType::i64, &gen); }, &lm});
  const std::string dir = testing::temp_dir("graph_dynamic");
  for (size_t i = 0; i < cases.size(); ++i) {
    graph::Graph& g = cases[i].g;
    g.verify();
    EXPECT_TRUE(graph::has_symbols(g.values[size_t(g.inputs[0])].shape));
    const std::string path = dir + "/m" + std::to_string(i) + ".qsg";
    graph::save(g, path);
    EXPECT_NE(read_bytes(path).find("input x0: " + std::string(i == 0 ? "f32[N, 1, 28, 28]" : "i64[N, 16]")),
              std::string::npos)
        << read_bytes(path);
    graph::Graph back = graph::load(path);
    graph::optimize(back);
    for (int64_t b : {1, 3, 5}) {
      Tensor x = cases[i].input(b);
      NoGrad ng;
      nn::EvalScope ev(*cases[i].model);
      ops::ReferenceKernels ref;
      expect_identical(graph::run(g, {x})[0], cases[i].model->forward(x));
      EXPECT_LT(max_abs_diff(graph::run(back, {x})[0], cases[i].model->forward(x)), 1e-4);
    }
  }
}

TEST(GraphDynamicBatch, WhatCannotFollowTheBatchIsNamed) {
  graph::TraceOptions dyn;
  dyn.dynamic_batch = true;
  // A tensor made from the batch size is data of the example's size.
  std::string e = error_of([&] {
    graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] * ones({in[0].size(0), 1})}; },
                 {randn({4, 3})}, {}, dyn);
  });
  EXPECT_NE(e.find("const 'const0' has shape [4, 1] at batch 4 and [5, 1] at batch 5"), std::string::npos) << e;
  // A size that changes with the batch but is not the batch.
  e = error_of([&] {
    graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0].reshape({in[0].size(0) * 3})}; },
                 {randn({4, 3})}, {}, dyn);
  });
  EXPECT_NE(e.find("is 12 at batch 4 and 15 at batch 5"), std::string::npos) << e;
  // Inputs whose first dims differ are not one batch.
  e = error_of([&] {
    graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] + sum(in[1])}; },
                 {randn({4, 3}), randn({2, 3})}, {}, dyn);
  });
  EXPECT_NE(e.find("input 1 is [2, 3]"), std::string::npos) << e;
}

TEST(GraphDynamicBatch, InputsMustAgreeOnTheBatch) {
  graph::TraceOptions dyn;
  dyn.dynamic_batch = true;
  graph::Graph g = graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] * in[1]}; },
                                {randn({2, 3}), randn({2, 3})}, {}, dyn);
  EXPECT_EQ(graph::run(g, {randn({7, 3}), randn({7, 3})})[0].shape(), (Shape{7, 3}));
  std::string e = error_of([&] { graph::run(g, {randn({7, 3}), randn({6, 3})}); });
  EXPECT_NE(e.find("input 1 ('x1') must be f32[7, 3] (batch 7 from the first input), got f32[6, 3]"), std::string::npos)
      << e;
}

TEST(GraphDynamicBatch, AVersion1FileCannotHoldN) {
  const std::string path = testing::temp_dir("graph_v1n") + "/m.qsg";
  graph::Graph g = graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{exp(in[0])}; },
                                {randn({2, 3})}, {}, graph::TraceOptions{true});
  graph::save(g, path);
  std::string text = read_bytes(path);
  text.replace(0, text.find('\n'), "qsgraph 1");
  write_bytes(path, text);
  std::string e = error_of([&] { graph::load(path); });
  EXPECT_NE(e.find("'x0' has a dynamic batch dimension (N), which format version 1 does not have"), std::string::npos)
      << e;
}

// ---- a dynamic sequence length

TEST(GraphDynamicSeq, LanguageModelsTracedAtOneLengthRunAtAnyUpToMaxSeq) {
  Generator gen(21);
  for (const char* block : {"gpt", "deepseek"}) {
    SCOPED_TRACE(block);
    nn::TransformerLM lm(tiny_lm(block), {}, gen);  // max_seq_len 32
    graph::TraceOptions dyn;
    dyn.dynamic_batch = true;
    dyn.dynamic_seq = true;
    dyn.max_seq = 32;
    graph::Graph g = graph::trace(lm, randint(0, 64, {2, 8}, DType::i64, &gen), dyn);
    g.verify();
    EXPECT_EQ(g.max_seq, 32);
    EXPECT_EQ(g.values[size_t(g.inputs[0])].shape, (Shape{graph::kBatch, graph::kSeq}));
    const std::string path = testing::temp_dir("graph_dynamic_seq") + "/" + block + ".qsg";
    graph::save(g, path);
    const std::string text = read_bytes(path);
    EXPECT_EQ(text.rfind("qsgraph 3\nmax_seq 32\ninput x0: i64[N, S]\n", 0), 0u) << text.substr(0, 80);
    graph::Graph back = graph::load(path);
    graph::optimize(back);
    for (auto [b, n] : {std::pair<int64_t, int64_t>{1, 1}, {2, 5}, {3, 9}, {1, 20}, {2, 32}}) {
      Tensor idx = randint(0, 64, {b, n}, DType::i64, &gen);
      NoGrad ng;
      nn::EvalScope ev(lm);
      ops::ReferenceKernels ref;
      expect_identical(graph::run(g, {idx})[0], lm(idx));
      expect_identical(graph::run(back, {idx})[0], lm(idx));
    }
    std::string e = error_of([&] { graph::run(g, {randint(0, 64, {1, 33}, DType::i64, &gen)}); });
    EXPECT_NE(e.find("a sequence of 33 is outside what the graph serves (1 to 32, its max_seq)"), std::string::npos) << e;
  }
}

TEST(GraphDynamicSeq, WhatCannotFollowTheLengthIsNamed) {
  graph::TraceOptions dyn;
  dyn.dynamic_seq = true;
  dyn.max_seq = 16;
  // A table made for the length itself (not sliced from a longer one) is data of one length.
  std::string e = error_of([&] {
    graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] * ones({1, in[0].size(1)})}; },
                 {randn({2, 4})}, {}, dyn);
  });
  EXPECT_NE(e.find("has shape [1, 4] at length 4 and [1, 5] at length 5"), std::string::npos) << e;
  // The example must leave room for the second trace.
  e = error_of([&] {
    graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{exp(in[0])}; }, {randn({2, 16})}, {},
                 dyn);
  });
  EXPECT_NE(e.find("must be shorter than max_seq (16)"), std::string::npos) << e;
  // S in a file needs its bound.
  const std::string path = testing::temp_dir("graph_seq_nomax") + "/m.qsg";
  graph::Graph g = graph::trace([](const std::vector<Tensor>& in) { return std::vector<Tensor>{exp(in[0])}; },
                                {randn({2, 4})}, {}, dyn);
  graph::save(g, path);
  std::string text = read_bytes(path);
  text.erase(text.find("max_seq 16\n"), 11);
  write_bytes(path, text);
  e = error_of([&] { graph::load(path); });
  EXPECT_NE(e.find("has a dynamic sequence length (S), but the file has no 'max_seq' line"), std::string::npos) << e;
  text.replace(0, text.find('\n'), "qsgraph 2");
  write_bytes(path, text);
  e = error_of([&] { graph::load(path); });
  EXPECT_NE(e.find("(format version 2 has neither)"), std::string::npos) << e;
}

}  // namespace
}  // namespace qs

// ---- hostile files
namespace qs {
namespace {

// Thousands of damaged copies of a saved graph (bytes changed, lines dropped or repeated,
// numbers replaced by extreme ones, cut short): each loads and verifies or is refused
// with an Error; none crashes, hangs or allocates by a lying size (the debug-asan build
// runs this too).
TEST(GraphFile, DamagedFilesAreRefusedNeverCrash) {
  Generator gen(11);
  apps::FashionCNN cnn(gen);
  const std::string dir = testing::temp_dir("graph_fuzz"), path = dir + "/m.qsg";
  graph::save(graph::trace(cnn, randn({2, 1, 28, 28}, DType::f32, &gen), graph::TraceOptions{true}), path);
  const std::string good = read_bytes(path);
  const std::vector<std::string> numbers = {"0", "-1", "N", "3", "99999999999999999999", "9223372036854775807",
                                            "4294967296", "281474976710656", "1e308", "nan"};
  Generator r(12);
  auto pick = [&](size_t n) { return size_t(r.next_u64() % std::max<size_t>(n, 1)); };
  int refused = 0, loaded = 0;
  for (int k = 0; k < 1500; ++k) {
    std::string t = good;
    for (int m = 0, edits = 1 + int(pick(3)); m < edits; ++m) {
      switch (pick(5)) {
        case 0: t[pick(t.size())] = char(32 + pick(95)); break;                       // a byte
        case 1: t.resize(pick(t.size())); break;                                       // cut short
        case 2: {                                                                      // a number
          size_t at = t.find_first_of("0123456789", pick(t.size()));
          if (at == std::string::npos) break;
          size_t end = t.find_first_not_of("0123456789", at);
          t.replace(at, end == std::string::npos ? std::string::npos : end - at, numbers[pick(numbers.size())]);
          break;
        }
        case 3: {                                                                      // a line dropped
          size_t a = t.find('\n', pick(t.size()));
          size_t b = a == std::string::npos ? a : t.find('\n', a + 1);
          if (b != std::string::npos) t.erase(a, b - a);
          break;
        }
        default: {                                                                     // a line repeated
          size_t a = t.find('\n', pick(t.size()));
          size_t b = a == std::string::npos ? a : t.find('\n', a + 1);
          if (b != std::string::npos) t.insert(b, t.substr(a, b - a));
        }
      }
    }
    write_bytes(path, t);
    try {
      graph::load(path);
      ++loaded;
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 1000);  // nearly every damaged file is refused; a few damages are harmless
  EXPECT_EQ(refused + loaded, 1500);
}

}  // namespace
}  // namespace qs
