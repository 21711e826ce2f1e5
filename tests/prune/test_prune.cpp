// Structured pruning (include/qiusuo/prune/prune.h): channel groups from a traced forward,
// exact counts, the shrunken model against the masked one, and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "ops/op.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/activation.h"
#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"
#include "qiusuo/prune/mask.h"
#include "qiusuo/prune/prune.h"
#include "test_util.h"

namespace qs {
namespace {

using prune::Criterion;
using prune::Dependencies;
using prune::Group;
using prune::Role;

// stem conv-bn-relu; a residual block (two conv-bn, added to the stem); two branches
// concatenated and read by a conv; max pool; flatten (each channel 4 columns) into fc1;
// ReLU; fc2 to the output.
struct Widths {
  int64_t stem = 8, mid = 6, a = 4, b = 5, d = 7, hidden = 9;
};

class TinyResNet : public nn::Module {
 public:
  explicit TinyResNet(const Widths& w, Generator& g) : Module("TinyResNet") {
    nn::ConvOptions same{.padding = 1};
    register_module("stem", std::make_shared<nn::Conv2d>(3, w.stem, 3, same, g));
    register_module("stem_bn", std::make_shared<nn::BatchNorm2d>(w.stem));
    register_module("r1", std::make_shared<nn::Conv2d>(w.stem, w.mid, 3, same, g));
    register_module("r1_bn", std::make_shared<nn::BatchNorm2d>(w.mid));
    register_module("r2", std::make_shared<nn::Conv2d>(w.mid, w.stem, 3, same, g));
    register_module("r2_bn", std::make_shared<nn::BatchNorm2d>(w.stem));
    register_module("a", std::make_shared<nn::Conv2d>(w.stem, w.a, 1, nn::ConvOptions{}, g));
    register_module("b", std::make_shared<nn::Conv2d>(w.stem, w.b, 3, same, g));
    register_module("d", std::make_shared<nn::Conv2d>(w.a + w.b, w.d, 3, same, g));
    register_module("d_bn", std::make_shared<nn::BatchNorm2d>(w.d));
    register_module("fc1", std::make_shared<nn::Linear>(w.d * 4, w.hidden, true, g));
    register_module("fc2", std::make_shared<nn::Linear>(w.hidden, 5, true, g));
  }
  Tensor forward(const Tensor& x) override {
    auto m = [&](const char* n, const Tensor& t) { return child(n)->forward(t); };
    Tensor s = relu(m("stem_bn", m("stem", x)));
    Tensor r = m("r2_bn", m("r2", relu(m("r1_bn", m("r1", s)))));
    Tensor h = relu(add(s, r));
    Tensor c = cat({relu(m("a", h)), relu(m("b", h))}, 1);
    Tensor y = max_pool2d(relu(m("d_bn", m("d", c))), 2);  // [N, d, 2, 2]
    return m("fc2", relu(m("fc1", y.flatten(1))));
  }
};

// Random parameters and running statistics, so that no channel is zero by accident.
void randomise(nn::Module& m, Generator& g) {
  NoGrad ng;
  for (auto& [name, t] : m.state_dict()) {
    if (t.dtype() != DType::f32) continue;
    if (name.find("running_var") != std::string::npos) t.copy_(uniform(t.shape(), 0.5, 2.0, DType::f32, &g));
    else t.copy_(uniform(t.shape(), -1.0, 1.0, DType::f32, &g));
  }
}

const Group& group(const Dependencies& d, const std::string& name) {
  const Group* g = d.find(name);
  EXPECT_NE(g, nullptr) << name << "\n" << d.to_text();
  return *g;
}

int64_t members(const Group& g, const std::string& param, Role role) {
  int64_t n = 0;
  for (const auto& m : g.members) n += m.param == param && m.role == role;
  return n;
}

TEST(PruneDeps, ResidualConcatFlattenGroups) {
  Generator g(1);
  TinyResNet net(Widths{}, g);
  Dependencies d = prune::analyse(net, randn({2, 3, 4, 4}, DType::f32, &g));
  // The residual addition joins stem and r2 into one group; every other producer has its own.
  ASSERT_EQ(d.groups.size(), 7u) << d.to_text();
  const Group& res = group(d, "stem");
  EXPECT_EQ(res.name, "stem+r2");
  EXPECT_TRUE(res.prunable);
  EXPECT_EQ(res.size, 8);
  // Readers of the residual channels: r1, a, b (columns); batch norms stem_bn and r2_bn (4 each).
  for (const char* p : {"r1.weight", "a.weight", "b.weight"}) EXPECT_EQ(members(res, p, Role::consumer), 1) << p;
  EXPECT_EQ(members(res, "stem_bn.running_var", Role::norm), 1);
  EXPECT_EQ(members(res, "r2_bn.weight", Role::norm), 1);
  EXPECT_EQ(members(res, "r2.bias", Role::bias), 1);
  // The concatenation puts b's channels after a's in d's columns.
  const Group& gb = group(d, "b");
  bool found = false;
  for (const auto& m : gb.members)
    if (m.param == "d.weight") {
      found = true;
      EXPECT_EQ(m.offset, 4);
      EXPECT_EQ(m.dim, 1);
    }
  EXPECT_TRUE(found);
  // Flattening [N, 7, 2, 2] makes each of d's channels 4 columns of fc1.
  for (const auto& m : group(d, "d").members)
    if (m.param == "fc1.weight") {
      EXPECT_EQ(m.inner, 4);
      EXPECT_EQ(m.role, Role::consumer);
    }
  EXPECT_TRUE(group(d, "fc1").prunable);
  const Group& out = group(d, "fc2");
  EXPECT_FALSE(out.prunable);
  EXPECT_NE(out.why.find("model's output"), std::string::npos) << out.why;
}

// Pruning then removing gives the masked network's outputs, bit for bit on the reference kernels.
TEST(PruneDeps, ShrunkenEqualsMasked) {
  Generator g(2);
  TinyResNet net(Widths{}, g);
  randomise(net, g);
  net.eval();
  Tensor x = randn({3, 3, 4, 4}, DType::f32, &g);
  Dependencies d = prune::analyse(net, x);
  for (Criterion c : {Criterion::l1, Criterion::l2, Criterion::bn_scale}) {
    prune::PruneOptions opt;
    opt.criterion = c;
    opt.ratio = 0.5;
    if (c == Criterion::bn_scale) opt.ratio = 0, opt.per_layer = {{"stem", 0.5}, {"d", 0.3}};
    prune::Plan plan = prune::plan_channels(d, net, opt);
    nn::StateDict small = prune::shrink(d, plan, net.state_dict());
    auto size_of = [&](const std::string& name) {
      for (auto& [n, t] : small)
        if (n == name) return t.size(0);
      return int64_t(-1);
    };
    Widths w{size_of("stem.weight"), size_of("r1.weight"), size_of("a.weight"), size_of("b.weight"),
             size_of("d.weight"), size_of("fc1.weight")};
    if (c == Criterion::bn_scale) {
      EXPECT_EQ(w.stem, 4);
      EXPECT_EQ(w.d, 5);  // floor(0.3 * 7) = 2 removed
      EXPECT_EQ(w.mid, 6);
    } else {
      EXPECT_EQ(w.stem, 4);
      EXPECT_EQ(w.mid, 3);
      EXPECT_EQ(w.a, 2);
      EXPECT_EQ(w.b, 3);  // floor(2.5)
      EXPECT_EQ(w.d, 4);  // floor(3.5)
      EXPECT_EQ(w.hidden, 5);
    }
    TinyResNet pruned(w, g);
    pruned.load_state_dict(small);
    pruned.eval();
    EXPECT_LT(pruned.num_parameters(), net.num_parameters());

    Generator g2(2);
    TinyResNet masked(Widths{}, g2);
    masked.load_state_dict(net.state_dict());
    prune::apply_masks(d, plan, masked);
    masked.eval();
    // The training-time form: masks on the parameters only (running statistics untouched).
    Generator g3(2);
    TinyResNet plan_masked(Widths{}, g3);
    plan_masked.load_state_dict(net.state_dict());
    prune::Masks masks(plan_masked);
    prune::add_plan_masks(masks, d, plan);
    plan_masked.eval();
    NoGrad ng;
    ops::ReferenceKernels ref;
    Tensor ya = masked(x), yb = pruned(x), y0 = net(x), yc = plan_masked(x);
    const float* c3 = yc.data_ptr<float>();
    ASSERT_EQ(ya.shape(), yb.shape());
    const float *a = ya.data_ptr<float>(), *b = yb.data_ptr<float>(), *o = y0.data_ptr<float>();
    bool differs_from_unpruned = false;
    for (int64_t i = 0; i < ya.numel(); ++i) {
      EXPECT_EQ(a[i], b[i]) << prune::criterion_name(c) << " element " << i;
      EXPECT_EQ(a[i], c3[i]) << prune::criterion_name(c) << " element " << i;
      differs_from_unpruned = differs_from_unpruned || a[i] != o[i];
    }
    EXPECT_TRUE(differs_from_unpruned);  // the test would otherwise prove nothing
  }
}

TEST(PruneDeps, ExactCountsAndLowestScoresGo) {
  struct Owner : nn::Module {
    explicit Owner(Generator& g) : Module("Owner") {
      register_module("l1", std::make_shared<nn::Linear>(4, 10, true, g));
      register_module("l2", std::make_shared<nn::Linear>(10, 3, true, g));
    }
    Tensor forward(const Tensor& x) override { return child("l2")->forward(relu(child("l1")->forward(x))); }
  };
  Generator g(3);
  Owner owner(g);
  {
    // Row i of l1 has L1 norm 4 (i + 1): the lowest three rows go at ratio 0.3.
    NoGrad ng;
    for (auto& [name, t] : owner.state_dict())
      if (name == "l1.weight")
        for (int64_t i = 0; i < 10; ++i) t.narrow(0, i, 1).fill_(double(i + 1) * (i % 2 ? -1 : 1));
  }
  Dependencies d = prune::analyse(owner, randn({2, 4}, DType::f32, &g));
  prune::Plan plan = prune::plan_channels(d, owner, {Criterion::l1, 0.3, {}});
  const Group& h = group(d, "l1");
  const size_t hi = size_t(&h - d.groups.data());
  EXPECT_EQ(plan.removed[hi], (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(plan.channels_removed(), 3);
  nn::StateDict small = prune::shrink(d, plan, owner.state_dict());
  for (auto& [name, t] : small) {
    if (name == "l1.weight") {
      EXPECT_EQ(t.shape(), (Shape{7, 4}));
      EXPECT_EQ(t.narrow(0, 0, 1).narrow(1, 0, 1).item(), -4.0);  // row 3 is the first kept
    }
    if (name == "l1.bias") EXPECT_EQ(t.shape(), (Shape{7}));
    if (name == "l2.weight") EXPECT_EQ(t.shape(), (Shape{3, 7}));
    if (name == "l2.bias") EXPECT_EQ(t.shape(), (Shape{3}));
  }
}

// SwiGLU: silu(gate(x)) * up(x) joins gate and up; down reads the joined channels.
TEST(PruneDeps, GatedFeedForwardJoinsGateAndUp) {
  struct Ffn : nn::Module {
    explicit Ffn(Generator& g) : Module("Ffn") {
      register_module("gate", std::make_shared<nn::Linear>(6, 12, false, g));
      register_module("up", std::make_shared<nn::Linear>(6, 12, false, g));
      register_module("down", std::make_shared<nn::Linear>(12, 6, false, g));
    }
    Tensor forward(const Tensor& x) override {
      return add(x, child("down")->forward(mul(silu(child("gate")->forward(x)), child("up")->forward(x))));
    }
  };
  Generator g(4);
  Ffn f(g);
  Tensor x = randn({2, 3, 6}, DType::f32, &g);
  Dependencies d = prune::analyse(f, x);
  const Group& hidden = group(d, "gate");
  EXPECT_EQ(hidden.name, "gate+up");
  EXPECT_TRUE(hidden.prunable);
  EXPECT_EQ(members(hidden, "down.weight", Role::consumer), 1);
  // down's outputs are added to the input, which no group owns: kept whole.
  const Group& out = group(d, "down");
  EXPECT_FALSE(out.prunable);
  prune::Plan plan = prune::plan_channels(d, f, {Criterion::l2, 0.25, {}});
  nn::StateDict small = prune::shrink(d, plan, f.state_dict());
  for (auto& [name, t] : small) EXPECT_EQ(t.shape(), (name == "down.weight" ? Shape{6, 9} : Shape{9, 6})) << name;
}

// Ops that cannot lose channels keep their groups whole and say which op.
TEST(PruneDeps, UnsupportedOpsKeepGroupsWholeAndPlansNameThem) {
  struct SoftmaxNet : nn::Module {
    explicit SoftmaxNet(Generator& g) : Module("SoftmaxNet") {
      register_module("p", std::make_shared<nn::Linear>(8, 6, true, g));
      register_module("q", std::make_shared<nn::Linear>(6, 4, true, g));
      register_module("r", std::make_shared<nn::Linear>(8, 6, true, g));
    }
    Tensor forward(const Tensor& x) override {
      Tensor h = softmax(child("p")->forward(x), -1);
      Tensor k = layer_norm(child("r")->forward(x), {6});
      return child("q")->forward(add(h, k));
    }
  };
  Generator g(5);
  SoftmaxNet net(g);
  Dependencies d = prune::analyse(net, randn({2, 8}, DType::f32, &g));
  const Group& p = group(d, "p");
  EXPECT_FALSE(p.prunable);
  EXPECT_NE(p.why.find("softmax (node"), std::string::npos) << p.why;
  EXPECT_NE(group(d, "r").why.find("layer_norm"), std::string::npos) << group(d, "r").why;
  // A global ratio prunes nothing here, and says so only through the plan's emptiness.
  EXPECT_EQ(prune::plan_channels(d, net, {Criterion::l1, 0.5, {}}).channels_removed(), 0);
  // Naming an unprunable layer, an unknown one, or a ratio out of range is an error naming it.
  auto error_of = [&](prune::PruneOptions o) {
    try {
      prune::plan_channels(d, net, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of({Criterion::l1, 0, {{"p", 0.5}}}).find("layer p cannot be pruned: softmax"), std::string::npos);
  EXPECT_NE(error_of({Criterion::l1, 0, {{"nope", 0.5}}}).find("'nope': no such layer; the groups are p, r, q"),
            std::string::npos)
      << error_of({Criterion::l1, 0, {{"nope", 0.5}}});
  EXPECT_NE(error_of({Criterion::l1, 1.0, {}}).find("outside [0, 1)"), std::string::npos);
  EXPECT_NE(error_of({Criterion::l1, -0.1, {}}).find("outside [0, 1)"), std::string::npos);
  EXPECT_NE(error_of({Criterion::l1, 0, {{"q", 1.5}}}).find("for layer q is outside [0, 1)"), std::string::npos);
  EXPECT_THROW(prune::parse_criterion("magnitude"), Error);
}

// A global ranking takes the channels of the weakest layer first (per-entry scores), leaves
// every group one channel, and removes exactly floor(ratio * total).
TEST(PruneDeps, GlobalRankingAcrossLayers) {
  Generator g(9);
  TinyResNet net(Widths{}, g);
  randomise(net, g);
  {
    NoGrad ng;
    for (auto& [n, t] : net.named_parameters())
      if (n == "r1.weight") t.copy_(mul(t, scalar_tensor(1e-3)));
  }
  Dependencies d = prune::analyse(net, randn({1, 3, 4, 4}, DType::f32, &g));
  prune::PruneOptions opt{Criterion::l1, 0.3, {}, /*global=*/true};
  prune::Plan plan = prune::plan_channels(d, net, opt);
  EXPECT_EQ(plan.channels_removed(), 11);  // floor(0.3 * (8 + 6 + 4 + 5 + 7 + 9))
  EXPECT_EQ(plan.removed[size_t(&group(d, "r1") - d.groups.data())].size(), 5u);  // all but one
  for (size_t i = 0; i < d.groups.size(); ++i) EXPECT_LT(int64_t(plan.removed[i].size()), d.groups[i].size);
  // The shrunken model still reproduces the masked one.
  nn::StateDict small = prune::shrink(d, plan, net.state_dict());
  EXPECT_NO_THROW(prune::apply_masks(d, plan, net));
  opt.per_layer = {{"a", 0.5}};
  try {
    prune::plan_channels(d, net, opt);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exclude each other"), std::string::npos);
  }
}

TEST(PruneDeps, BnScaleNeedsABatchNorm) {
  Generator g(6);
  TinyResNet net(Widths{}, g);
  Dependencies d = prune::analyse(net, randn({1, 3, 4, 4}, DType::f32, &g));
  try {
    prune::plan_channels(d, net, {Criterion::bn_scale, 0.5, {}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("group a has no batch norm"), std::string::npos) << e.what();
  }
}

// The Fashion-MNIST CNN: three prunable groups; at half the channels its state dict fits
// FashionCNN({16, 32, 64}), whose conv weights hold about a quarter of the parameters.
TEST(PruneDeps, FashionCnnHalfWidths) {
  Generator g(7);
  apps::FashionCNN cnn(g);
  Dependencies d = prune::analyse(cnn, randn({2, 1, 28, 28}, DType::f32, &g));
  ASSERT_EQ(d.groups.size(), 4u) << d.to_text();
  for (const char* c : {"c1", "c2", "c3"}) EXPECT_TRUE(group(d, c).prunable) << c;
  EXPECT_FALSE(group(d, "fc").prunable);
  prune::Plan plan = prune::plan_channels(d, cnn, {Criterion::l1, 0.5, {}});
  nn::StateDict small = prune::shrink(d, plan, cnn.state_dict());
  apps::CnnWidths w = apps::FashionCNN::widths_of(small);
  EXPECT_EQ(w, (apps::CnnWidths{16, 32, 64}));
  apps::FashionCNN pruned(w, g);
  pruned.load_state_dict(small);
  int64_t conv_before = 0, conv_after = 0;
  for (auto& [n, t] : cnn.named_parameters())
    if (n == "c2.weight" || n == "c3.weight") conv_before += t.numel();
  for (auto& [n, t] : pruned.named_parameters())
    if (n == "c2.weight" || n == "c3.weight") conv_after += t.numel();
  EXPECT_EQ(conv_after * 4, conv_before);
  // Rounded to oneDNN's 8-channel blocks: 30% would keep 23/45/90, rounding up keeps 24/48/96.
  prune::PruneOptions r8{Criterion::l1, 0.3, {}};
  r8.round_to = 8;
  EXPECT_EQ(apps::FashionCNN::widths_of(prune::shrink(d, prune::plan_channels(d, cnn, r8), cnn.state_dict())),
            (apps::CnnWidths{24, 48, 96}));
  r8.global = true;
  EXPECT_THROW(prune::plan_channels(d, cnn, r8), Error);
}

// The language models: the feed-forward hidden neurons are prunable groups (GPT's c_fc,
// DeepSeek's gate+up), the residual stream (layer norms over it) and the attention
// projections (split into heads by a reshape) are not.
TEST(PruneDeps, TransformerFeedForwardNeuronsArePrunable) {
  for (const char* block : {"gpt", "deepseek"}) {
    nn::LMConfig cfg;
    cfg.vocab_size = 32, cfg.d_model = 16, cfg.n_layers = 2, cfg.n_heads = 2, cfg.max_seq_len = 8;
    cfg.block = block;
    cfg.pos.kind = std::string(block) == "gpt" ? nn::PositionEncoding::learned : nn::PositionEncoding::rope;
    Generator g(8);
    nn::TransformerLM lm(cfg, {}, g);
    Dependencies d = prune::analyse(lm, randint(0, 32, {2, 5}, DType::i64, &g));
    int ffn = 0;
    for (const Group& gr : d.groups) {
      const bool is_ffn = gr.name.find("c_fc") != std::string::npos || gr.name.find("gate_proj") != std::string::npos;
      EXPECT_EQ(gr.prunable, is_ffn) << block << " " << gr.name << ": " << gr.why;
      ffn += is_ffn;
    }
    EXPECT_EQ(ffn, 2) << d.to_text();
    prune::Plan plan = prune::plan_channels(d, lm, {Criterion::l1, 0.5, {}});
    nn::StateDict small = prune::shrink(d, plan, lm.state_dict());
    int64_t before = 0, after = 0;
    for (auto& [n, t] : lm.state_dict()) before += t.numel();
    for (auto& [n, t] : small) after += t.numel();
    EXPECT_LT(after, before) << block;
  }
}

// The groups built from the modules: a dense SwiGLU's is exactly the one the traced forward
// gives (the same members); on an MoE model there is one per expert, the shared experts and
// the dense layer, whichever experts an example would route to; head groups cover every
// parameter row of a head (MHA with GQA: a key/value group; MLA: one head) and nothing else.
TEST(PruneModules, SwigluAndHeadGroupsFromTheModules) {
  nn::LMConfig cfg;
  cfg.vocab_size = 32, cfg.d_model = 16, cfg.n_layers = 2, cfg.n_heads = 4, cfg.n_kv_heads = 2, cfg.max_seq_len = 8;
  cfg.block = "deepseek";
  Generator g(8);
  nn::TransformerLM lm(cfg, {}, g);
  Dependencies traced = prune::analyse(lm, randint(0, 32, {2, 5}, DType::i64, &g));
  Dependencies built = prune::swiglu_groups(lm);
  ASSERT_EQ(built.groups.size(), 2u);
  auto same = [](const prune::Member& a, const prune::Member& b) {
    return a.param == b.param && a.dim == b.dim && a.role == b.role && a.group_start == b.group_start &&
           a.length == b.length && a.offset == b.offset && a.inner == b.inner;
  };
  for (const Group& b : built.groups) {
    const Group* t = traced.find(b.name);
    ASSERT_TRUE(t) << b.name << "\n" << traced.to_text();
    EXPECT_TRUE(t->prunable);
    EXPECT_EQ(t->size, b.size);
    ASSERT_EQ(t->members.size(), b.members.size()) << b.name;
    for (const prune::Member& m : b.members)
      EXPECT_TRUE(std::any_of(t->members.begin(), t->members.end(), [&](const prune::Member& x) { return same(x, m); }))
          << m.param;
  }
  // Heads: 2 key/value groups of 2 query heads (head dim 4) per layer.
  Dependencies heads = prune::head_groups(lm);
  ASSERT_EQ(heads.groups.size(), 2u);
  EXPECT_EQ(heads.groups[0].size, 2);
  prune::Plan plan;
  plan.removed = {{1}, {}};
  nn::StateDict small = prune::shrink(heads, plan, lm.state_dict());
  for (auto& [n, t] : small) {
    if (n == "blocks.0.attn.in_proj.weight") EXPECT_EQ(t.shape(), (Shape{(2 + 1 + 1) * 4, 16}));
    if (n == "blocks.0.attn.out_proj.weight") EXPECT_EQ(t.shape(), (Shape{16, 2 * 4}));
    if (n == "blocks.1.attn.in_proj.weight") EXPECT_EQ(t.shape(), (Shape{(4 + 2 + 2) * 4, 16}));
  }

  cfg.ffn = "moe", cfg.moe_n_routed = 3, cfg.moe_n_shared = 1, cfg.moe_top_k = 1, cfg.moe_first_dense = 1;
  cfg.attention = "mla", cfg.n_kv_heads = 0, cfg.kv_lora_rank = 8, cfg.qk_rope_head_dim = 2;
  nn::TransformerLM moe(cfg, {}, g);
  // A trace of the MoE model shows only the experts its example routed to: analyse refuses.
  const std::string e = qs::testing::error_of([&] { prune::analyse(moe, randint(0, 32, {1, 4}, DType::i64, &g)); });
  EXPECT_NE(e.find("MoE routing"), std::string::npos) << e;
  EXPECT_NE(e.find("swiglu_groups"), std::string::npos) << e;
  Dependencies f = prune::swiglu_groups(moe);
  ASSERT_EQ(f.groups.size(), 1u + 3u + 1u) << f.to_text();
  EXPECT_EQ(f.groups[1].name, "blocks.1.mlp.experts.0.gate_proj+blocks.1.mlp.experts.0.up_proj");
  Dependencies h = prune::head_groups(moe);
  ASSERT_EQ(h.groups.size(), 2u);
  EXPECT_EQ(h.groups[0].size, 4);
  plan.removed = {{0, 3}, {}};
  for (auto& [n, t] : prune::shrink(h, plan, moe.state_dict())) {
    // d_nope = d_v = 16 / 4, d_rope 2: q rows 6 per head, kv_b rows 8, o_proj columns 4.
    if (n == "blocks.0.attn.q_proj.weight") EXPECT_EQ(t.shape(), (Shape{2 * 6, 16}));
    if (n == "blocks.0.attn.kv_b_proj.weight") EXPECT_EQ(t.shape(), (Shape{2 * 8, 8}));
    if (n == "blocks.0.attn.o_proj.weight") EXPECT_EQ(t.shape(), (Shape{16, 2 * 4}));
    if (n == "blocks.0.attn.kv_a_proj_with_mqa.weight") EXPECT_EQ(t.shape(), (Shape{8 + 2, 16}));
  }
}

// Half of every prunable group of make(g)'s model pruned two ways: rebuilt at the new widths
// (net) and zeroed in place in a copy (masked); x is the example, made after the weights.
struct RebuiltAndMasked {
  std::shared_ptr<nn::Sequential> net, masked;
  Tensor x;
  int64_t removed = 0;
  std::string groups;
};
template <class Make>
RebuiltAndMasked rebuilt_and_masked(const Make& make, uint64_t seed, const std::function<Tensor(Generator&)>& input) {
  Generator g(seed), g2(seed);
  RebuiltAndMasked r;
  r.net = make(g);
  randomise(*r.net, g);
  r.net->eval();
  r.x = input(g);
  Dependencies d = prune::analyse(*r.net, r.x);
  prune::Plan plan = prune::plan_channels(d, *r.net, {Criterion::l1, 0.5, {}});
  nn::StateDict small = prune::shrink(d, plan, r.net->state_dict());
  r.masked = make(g2);
  r.masked->load_state_dict(r.net->state_dict());
  prune::apply_masks(d, plan, *r.masked);
  r.masked->eval();
  prune::rebuild(*r.net, small, r.x);
  r.removed = plan.channels_removed(), r.groups = d.to_text();
  return r;
}

// A Sequential (children reached through child()) is rebuilt in place at the pruned widths,
// including a depthwise convolution, and computes what the masked model computes.
TEST(PruneRebuild, SequentialInPlaceEqualsMasked) {
  auto make = [](Generator& g) {
    nn::ConvOptions same{.padding = 1};
    nn::ConvOptions dw{.padding = 1, .groups = 12};
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv2d>(3, 12, 3, same, g), std::make_shared<nn::BatchNorm2d>(12),
        std::make_shared<nn::ReLU>(), std::make_shared<nn::Conv2d>(12, 12, 3, dw, g),
        std::make_shared<nn::Conv2d>(12, 10, 1, nn::ConvOptions{}, g), std::make_shared<nn::BatchNorm2d>(10),
        std::make_shared<nn::ReLU>(), std::make_shared<nn::AdaptiveAvgPool2d>(1), std::make_shared<nn::Flatten>(),
        std::make_shared<nn::Linear>(10, 4, true, g)});
  };
  auto [net, masked, x, removed, groups] =
      rebuilt_and_masked(make, 11, [](Generator& g) { return randn({2, 3, 6, 6}, DType::f32, &g); });
  EXPECT_EQ(net->state_dict()[0].second.size(0), 6);  // the first conv: 12 -> 6
  int64_t dw_groups = 0;
  for (auto& [n, m] : net->named_modules())
    if (auto* c = dynamic_cast<nn::ConvNd*>(m.get()); c && c->options().groups > 1) dw_groups = c->options().groups;
  EXPECT_EQ(dw_groups, 6);
  NoGrad ng;
  ops::ReferenceKernels ref;
  EXPECT_EQ(amax(abs(sub((*net)(x), (*masked)(x)))).item(), 0.0);
}

// Conv1d and Conv3d output channels (with their batch norms) prune and rebuild as Conv2d's:
// the smaller model computes what the masked one computes.
TEST(PruneRebuild, Conv1dAndConv3dEqualMasked) {
  for (int rank : {1, 3}) {
    SCOPED_TRACE(rank);
    auto make = [rank](Generator& g) {
      std::vector<std::shared_ptr<nn::Module>> l;
      nn::ConvOptions same{.padding = 1};
      if (rank == 1) {
        l = {std::make_shared<nn::Conv1d>(3, 8, 3, same, g), std::make_shared<nn::BatchNorm1d>(8),
             std::make_shared<nn::ReLU>(), std::make_shared<nn::Conv1d>(8, 6, 3, same, g),
             std::make_shared<nn::ReLU>(), std::make_shared<nn::AdaptiveAvgPool1d>(1)};
      } else {
        l = {std::make_shared<nn::Conv3d>(1, 8, 3, same, g), std::make_shared<nn::BatchNorm3d>(8),
             std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool3d>(2),
             std::make_shared<nn::Conv3d>(8, 6, 3, same, g), std::make_shared<nn::ReLU>(),
             std::make_shared<nn::AdaptiveAvgPool3d>(1)};
      }
      l.push_back(std::make_shared<nn::Flatten>());
      l.push_back(std::make_shared<nn::Linear>(6, 2, true, g));
      auto seq = std::make_shared<nn::Sequential>();
      for (size_t i = 0; i < l.size(); ++i) seq->push_back(l[i]);
      return seq;
    };
    auto [net, masked, x, removed, groups] = rebuilt_and_masked(make, 21, [rank](Generator& g) {
      return rank == 1 ? randn({2, 3, 10}, DType::f32, &g) : randn({2, 1, 6, 6, 6}, DType::f32, &g);
    });
    EXPECT_EQ(removed, 4 + 3) << groups;
    EXPECT_EQ(net->state_dict()[0].second.shape()[0], 4);
    EXPECT_EQ(net->state_dict()[0].second.dim(), rank + 2);
    NoGrad ng;
    ops::ReferenceKernels ref;
    EXPECT_EQ(amax(abs(sub((*net)(x), (*masked)(x)))).item(), 0.0);
  }
}

// A parent that calls its children through typed pointers (CNN3D) would keep running the old
// layers: rebuild says so instead of returning a model that ignores the new weights.
TEST(PruneRebuild, TypedPointerParentsAreRefused) {
  Generator g(12);
  apps::CNN3D net(g);
  Tensor x = randn({1, 1, 8, 8, 8}, DType::f32, &g);
  Dependencies d = prune::analyse(net, x);
  nn::StateDict small = prune::shrink(d, prune::plan_channels(d, net, {Criterion::l1, 0.5, {}}), net.state_dict());
  try {
    prune::rebuild(net, small, x);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("through its own pointer"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qs
