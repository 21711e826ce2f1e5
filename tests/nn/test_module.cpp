// nn::Module: naming, state dicts, modes, printing, initialisation statistics, and the
// index/concat ops the layers are built on.
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/nn.h"
#include "qiusuo/ops.h"

using namespace qs;
using namespace qs::nn;

namespace {

// A module with a child container, a parameter and a buffer of its own.
class Net : public Module {
 public:
  explicit Net(Generator& gen) : Module("Net") {
    features = register_module("features", std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
                                               std::make_shared<Linear>(3, 4, true, gen), std::make_shared<ReLU>()}));
    head = register_module("head", std::make_shared<Linear>(4, 2, false, gen));
    scale = register_parameter("scale", ones({2}));
    running = register_buffer("running", zeros({2}));
  }
  Tensor forward(const Tensor& x) override { return head->forward(features->forward(x)) * scale; }
  std::shared_ptr<Sequential> features;
  std::shared_ptr<Linear> head;
  Tensor scale, running;
};

std::vector<std::string> keys(const NamedTensors& v) {
  std::vector<std::string> k;
  for (auto& kv : v) k.push_back(kv.first);
  return k;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}
double std_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

}  // namespace

TEST(Module, DottedNamesAndCounts) {
  Generator gen(1);
  Net net(gen);
  EXPECT_EQ(keys(net.named_parameters()),
            (std::vector<std::string>{"scale", "features.0.weight", "features.0.bias", "head.weight"}));
  EXPECT_EQ(keys(net.named_buffers()), (std::vector<std::string>{"running"}));
  EXPECT_EQ(keys(net.state_dict()),
            (std::vector<std::string>{"scale", "running", "features.0.weight", "features.0.bias", "head.weight"}));
  EXPECT_EQ(net.named_children().size(), 2u);
  std::vector<std::string> mods;
  for (auto& [n, m] : net.named_modules()) mods.push_back(n + ":" + m->type_name());
  EXPECT_EQ(mods, (std::vector<std::string>{"features:Sequential", "features.0:Linear", "features.1:ReLU", "head:Linear"}));
  EXPECT_NE(error_of([&] { (*net.features)[2]; }).find("index 2 is out of range for 2 modules"), std::string::npos);
  EXPECT_NE(error_of([&] { net.child("tail"); }).find("no child module named 'tail'"), std::string::npos);
  EXPECT_EQ(net.num_parameters(), 2 + 12 + 4 + 8);
  for (auto& p : net.parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_FALSE(net.running.requires_grad());
  EXPECT_NE(error_of([&] { net.register_parameter("scale", ones({1})); }).find("already registered"), std::string::npos);
  EXPECT_NE(error_of([&] { net.register_buffer("a.b", ones({1})); }).find("contain no '.'"), std::string::npos);
}

TEST(Module, TrainEvalPropagates) {
  Generator gen(1);
  Net net(gen);
  EXPECT_TRUE(net.is_training());
  net.eval();
  EXPECT_FALSE(net.is_training());
  EXPECT_FALSE(net.features->is_training());
  EXPECT_FALSE((*net.features)[1]->is_training());
  EXPECT_FALSE(net.head->is_training());
  net.train();
  EXPECT_TRUE((*net.features)[0]->is_training());
}

TEST(Module, EvalScopeRestoresTheModeAlsoOnAnError) {
  Generator gen(1);
  Net net(gen);
  {
    EvalScope scope(net);
    EXPECT_FALSE(net.is_training());
    EXPECT_FALSE(net.head->is_training());
  }
  EXPECT_TRUE(net.is_training());
  EXPECT_TRUE(net.head->is_training());
  try {
    EvalScope scope(net);
    net(ones({5, 4}));  // wrong feature count: the forward throws inside the scope
    ADD_FAILURE() << "the forward should have thrown";
  } catch (const std::exception&) {
  }
  EXPECT_TRUE(net.is_training());
  net.eval();
  { EvalScope scope(net); }
  EXPECT_FALSE(net.is_training());  // a model that was in eval mode stays there
}

TEST(Module, ZeroGradDropsGradients) {
  Generator gen(1);
  Net net(gen);
  sum(net(ones({5, 3}))).backward();
  for (auto& p : net.parameters()) EXPECT_TRUE(p.grad().defined());
  net.zero_grad();
  for (auto& p : net.parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Module, StateDictRoundTripCopiesInPlace) {
  Generator g1(1), g2(2);
  Net a(g1), b(g2);
  NoGrad ng;
  a.running.fill_(0.5);
  Tensor x = uniform({4, 3}, -1, 1);
  Tensor handle = b.head->weight();
  EXPECT_NE(a(x).to_vector(), b(x).to_vector());
  LoadResult r = b.load_state_dict(a.state_dict());
  EXPECT_TRUE(r.missing_keys.empty() && r.unexpected_keys.empty());
  EXPECT_EQ(a(x).to_vector(), b(x).to_vector());
  EXPECT_EQ(b.running.to_vector(), (std::vector<double>{0.5, 0.5}));
  EXPECT_TRUE(handle.same(b.head->weight()));  // same tensor object: optimisers keep it
  EXPECT_EQ(handle.to_vector(), a.head->weight().to_vector());
  // The state dict aliases the live tensors.
  StateDict sd = b.state_dict();
  EXPECT_EQ(sd[4].second.storage(), b.head->weight().storage());
}

TEST(Module, LoadStateDictReportsEveryProblem) {
  Generator g1(1);
  Net net(g1);
  StateDict sd = net.state_dict();
  sd.erase(sd.begin() + 3);                              // features.0.bias missing
  sd[2].second = zeros({3, 4});                          // features.0.weight: shape [4, 3] expected
  sd[0].second = ones({2}, DType::f64);                  // scale: dtype f32 expected
  sd.emplace_back("head.bias", zeros({2}));              // unexpected
  Tensor before = net.scale.clone();
  std::string msg = error_of([&] { net.load_state_dict(sd); });
  EXPECT_NE(msg.find("4 problem(s)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing key 'features.0.bias' (expected f32 [4])"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected key 'head.bias' (f32 [2])"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape mismatch for 'features.0.weight': expected [4, 3], found [3, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dtype mismatch for 'scale': expected f32, found f64"), std::string::npos) << msg;
  EXPECT_EQ(net.scale.to_vector(), before.to_vector());  // nothing loaded

  // Non-strict: missing and unexpected keys are returned, the rest is loaded.
  StateDict partial = {{"running", full({2}, 3.0)}, {"extra", zeros({1})}};
  LoadResult r = net.load_state_dict(partial, false);
  EXPECT_EQ(r.unexpected_keys, (std::vector<std::string>{"extra"}));
  EXPECT_EQ(r.missing_keys.size(), 4u);
  EXPECT_EQ(net.running.to_vector(), (std::vector<double>{3, 3}));
  // Shape mismatches are errors even when not strict.
  EXPECT_NE(error_of([&] { net.load_state_dict({{"running", zeros({3})}}, false); }).find("shape mismatch for 'running'"),
            std::string::npos);
}

TEST(Module, PrintsTreeLikePyTorch) {
  Generator gen(1);
  Net net(gen);
  EXPECT_EQ(net.to_string(),
            "Net(\n"
            "  (features): Sequential(\n"
            "    (0): Linear(in_features=3, out_features=4, bias=True)\n"
            "    (1): ReLU()\n"
            "  )\n"
            "  (head): Linear(in_features=4, out_features=2, bias=False)\n"
            ")");
  EXPECT_EQ(GELU("tanh").to_string(), "GELU(approximate='tanh')");
  EXPECT_EQ(Embedding(10, 3, 0).to_string(), "Embedding(10, 3, padding_idx=0)");
  EXPECT_EQ(Flatten().to_string(), "Flatten(start_dim=1, end_dim=-1)");
}

TEST(Module, ActivationsAndFlatten) {
  Tensor x = from_vector({-1, 0.5, 2, -3, 0, 1}, {1, 2, 3});
  EXPECT_EQ(ReLU()(x).to_vector(), relu(x).to_vector());
  EXPECT_EQ(GELU()(x).to_vector(), gelu(x).to_vector());
  EXPECT_EQ(SiLU()(x).to_vector(), silu(x).to_vector());
  EXPECT_EQ(Tanh()(x).to_vector(), tanh(x).to_vector());
  EXPECT_EQ(Sigmoid()(x).to_vector(), sigmoid(x).to_vector());
  EXPECT_TRUE(Identity()(x).same(x));
  EXPECT_EQ(Flatten()(x).shape(), (Shape{1, 6}));
  EXPECT_EQ(Flatten(0, 1)(x).shape(), (Shape{2, 3}));
}

TEST(Init, LinearIsUniformWithFanInBound) {
  Generator gen(7);
  Linear lin(100, 100, true, gen);
  auto w = lin.weight().to_vector();
  double bound = 0.1;  // 1 / sqrt(fan_in)
  for (double v : w) ASSERT_LE(std::abs(v), bound);
  EXPECT_NEAR(mean_of(w), 0.0, 0.003);
  EXPECT_NEAR(std_of(w), bound / std::sqrt(3.0), 0.002);
  for (double v : lin.bias().to_vector()) ASSERT_LE(std::abs(v), bound);
}

TEST(Init, EmbeddingIsStandardNormalWithZeroPaddingRow) {
  Generator gen(7);
  Embedding emb(200, 50, 3, gen);
  Tensor w = emb.weight();
  auto v = w.to_vector();
  EXPECT_NEAR(mean_of(v), 0.0, 0.03);
  EXPECT_NEAR(std_of(v), 1.0, 0.03);
  EXPECT_EQ(w.select(0, 3).to_vector(), std::vector<double>(50, 0.0));
}

TEST(Init, KaimingXavierStatistics) {
  Generator gen(3);
  Tensor w = empty({100, 100});
  init::kaiming_normal_(w, 0.0, "fan_in", "relu", gen);
  EXPECT_NEAR(std_of(w.to_vector()), std::sqrt(2.0) / 10.0, 0.004);
  init::kaiming_uniform_(w, 0.0, "fan_out", "relu", gen);
  EXPECT_NEAR(std_of(w.to_vector()), std::sqrt(2.0) / 10.0, 0.004);
  Tensor c = empty({50, 4, 5, 10});  // fan_in 200, fan_out 2500
  init::xavier_uniform_(c, 1.0, gen);
  double xstd = std::sqrt(2.0 / 2700.0);
  EXPECT_NEAR(std_of(c.to_vector()), xstd, 0.03 * xstd);
  init::xavier_normal_(c, 2.0, gen);
  EXPECT_NEAR(std_of(c.to_vector()), 2 * xstd, 0.06 * xstd);
  Tensor n = empty({10000}, DType::f64);
  init::normal_(n, 3.0, 0.5, gen);
  EXPECT_NEAR(mean_of(n.to_vector()), 3.0, 0.015);
  EXPECT_NEAR(std_of(n.to_vector()), 0.5, 0.015);
  init::uniform_(n, 2.0, 4.0, gen);
  EXPECT_NEAR(mean_of(n.to_vector()), 3.0, 0.02);
}

TEST(Init, FanInFanOut) {
  using init::calculate_fan_in_and_fan_out;
  EXPECT_EQ(calculate_fan_in_and_fan_out(empty({4, 3})), std::make_pair(int64_t(3), int64_t(4)));
  EXPECT_EQ(calculate_fan_in_and_fan_out(empty({8, 2, 5})), std::make_pair(int64_t(10), int64_t(40)));
  EXPECT_EQ(calculate_fan_in_and_fan_out(empty({8, 2, 3, 3})), std::make_pair(int64_t(18), int64_t(72)));
  EXPECT_EQ(calculate_fan_in_and_fan_out(empty({8, 2, 3, 3, 3})), std::make_pair(int64_t(54), int64_t(216)));
  EXPECT_NE(error_of([] { calculate_fan_in_and_fan_out(empty({5})); }).find("at least 2 dims"), std::string::npos);
  EXPECT_NE(error_of([] { init::calculate_gain("swish"); }).find("unknown nonlinearity 'swish'"), std::string::npos);
}

TEST(Embedding, PaddingRowGetsNoGradientAndRangeIsChecked) {
  Generator gen(5);
  Embedding emb(6, 3, 2, gen);
  Tensor idx = from_vector({2, 0, 2, 5, 0}, {5}, DType::i64);
  Tensor y = emb(idx.view({1, 5}));
  EXPECT_EQ(y.shape(), (Shape{1, 5, 3}));
  sum(y * 2.0).backward();
  auto g = emb.weight().grad().to_vector();
  std::vector<double> want = {4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2};
  EXPECT_EQ(g, want);
  std::string msg = error_of([&] { emb(from_vector({1, 6}, {2}, DType::i64)); });
  EXPECT_NE(msg.find("index 6 (element 1 of the indices) is out of range for a table of V = 6"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { emb(from_vector({1}, {1}, DType::i32)); }).find("indices must be i64"), std::string::npos);
}

TEST(IndexOps, GatherScatterIndexSelectValues) {
  Tensor x = arange(0, 6).view({2, 3});
  Tensor idx = from_vector({2, 0, 1, 1}, {2, 2}, DType::i64);
  EXPECT_EQ(gather(x, 1, idx).to_vector(), (std::vector<double>{2, 0, 4, 4}));
  Tensor s = scatter_add(zeros({2, 3}), -1, idx, ones({2, 2}));
  EXPECT_EQ(s.to_vector(), (std::vector<double>{1, 0, 1, 0, 2, 0}));
  EXPECT_EQ(index_select(x, 0, from_vector({1, 1, 0}, {3}, DType::i64)).to_vector(),
            (std::vector<double>{3, 4, 5, 3, 4, 5, 0, 1, 2}));
  std::string msg = error_of([&] { gather(x, 1, from_vector({3}, {1, 1}, DType::i64)); });
  EXPECT_NE(msg.find("gather: index 3 (element 0 of the indices) is out of range for a dim of size 3"), std::string::npos)
      << msg;
  msg = error_of([&] { scatter_add(zeros({2, 3}), 1, idx, ones({2, 1})); });
  EXPECT_NE(msg.find("scatter_add: index size 2 at dim 1 exceeds the size 1 of src"), std::string::npos) << msg;
  msg = error_of([&] { index_select(x, 0, idx); });
  EXPECT_NE(msg.find("index_select: index must be 1-d, got shape [2, 2]"), std::string::npos) << msg;
  msg = error_of([&] { gather(x, 2, idx); });
  EXPECT_NE(msg.find("gather: dim 2 out of range for a tensor of rank 2"), std::string::npos) << msg;
  // An expanded row index is checked one column at a time; the error still names the
  // position in the full index (row 1, column 0).
  Tensor rows = from_vector({0, 5, 1}, {3, 1}, DType::i64).expand({3, 3});
  msg = error_of([&] { scatter_add(zeros({4, 3}), 0, rows, ones({3, 3})); });
  EXPECT_NE(msg.find("index 5 (element 3 of the indices) is out of range for a dim of size 4"), std::string::npos) << msg;
  EXPECT_EQ(scatter_add(zeros({4, 3}), 0, from_vector({3, 0, 3}, {3, 1}, DType::i64).expand({3, 3}), ones({3, 3})).to_vector(),
            (std::vector<double>{1, 1, 1, 0, 0, 0, 0, 0, 0, 2, 2, 2}));
}

TEST(IndexOps, CatStackSplitChunk) {
  Tensor a = arange(0, 6).view({2, 3}), b = arange(6, 8).view({2, 1});
  EXPECT_EQ(cat({a, b}, -1).to_vector(), (std::vector<double>{0, 1, 2, 6, 3, 4, 5, 7}));
  EXPECT_NE(error_of([&] { cat({a, b}, 0); }).find("tensor 1 has shape [2, 1]"), std::string::npos);
  Tensor s = stack({a, a * 2.0}, 1);
  EXPECT_EQ(s.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(s.select(1, 1).to_vector(), (a * 2.0).to_vector());
  auto parts = split(arange(0, 7), 3);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].to_vector(), (std::vector<double>{6}));
  auto sized = split(a, std::vector<int64_t>{1, 2}, 1);
  EXPECT_EQ(sized[1].to_vector(), (std::vector<double>{1, 2, 4, 5}));
  auto ch = chunk(arange(0, 10), 4);  // torch: sizes 3, 3, 3, 1
  ASSERT_EQ(ch.size(), 4u);
  EXPECT_EQ(ch[3].numel(), 1);
  // Gradients flow through cat/split.
  Tensor p = ones({3}).requires_grad_(), q = ones({2}).requires_grad_();
  Tensor y = cat({p * 2.0, q * 3.0});
  auto halves = split(y, std::vector<int64_t>{4, 1});
  sum(halves[0]).backward();
  EXPECT_EQ(p.grad().to_vector(), (std::vector<double>{2, 2, 2}));
  EXPECT_EQ(q.grad().to_vector(), (std::vector<double>{3, 0}));
}
