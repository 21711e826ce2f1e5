// Tracing into a static graph, the verifier and the interpreter: traced graphs reproduce
// the eager model (bit for bit on the reference kernels), and a broken graph is refused
// with an error naming the node.
#include <gtest/gtest.h>

#include "ops/op.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

void expect_identical(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.dtype(), b.dtype());
  auto x = a.to_vector(), y = b.to_vector();
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], y[i]) << "element " << i;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector(), y = b.to_vector();
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

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

TEST(Graph, TracedLanguageModelReproducesTheEagerModel) {
  Generator gen(2);
  nn::LMConfig c;
  c.vocab_size = 64, c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.max_seq_len = 32;
  for (const char* block : {"gpt", "deepseek"}) {
    c.block = block;
    c.attention = c.block == "deepseek" ? "mla" : "mha";
    c.ffn = "swiglu";
    nn::TransformerLM lm(c, {}, gen);
    Tensor idx = randint(0, 64, {2, 16}, DType::i64, &gen), idx2 = randint(0, 64, {2, 16}, DType::i64, &gen);
    graph::Graph g = graph::trace(lm, idx);
    g.verify();
    ops::ReferenceKernels ref;
    NoGrad ng;
    expect_identical(graph::run(g, {idx2})[0], lm(idx2));
  }
}

TEST(Graph, TracingUnderAutocastRecordsItsCasts) {
  Generator gen(3);
  apps::FashionCNN model(gen);
  Tensor x = randn({2, 1, 28, 28}, DType::f32, &gen);
  graph::Graph g;
  {
    Autocast ac;
    g = graph::trace(model, x);
  }
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
