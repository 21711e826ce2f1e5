// `qiusuo prune` on the Fashion-MNIST CNN: the pruned checkpoint is a smaller dense
// FashionCNN that loads, fine-tunes, quantises and traces like any other.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "qiusuo/apps/cnn.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/apps/prune.h"
#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/head_mask.h"
#include "qiusuo/data/idx.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "test_util.h"

using namespace qs;

namespace {

std::string trained_cnn(const std::string& dir) {
  apps::TrainCnnOptions o;
  o.epochs = 1;
  o.batch = 64;
  o.limit_train = 512;
  o.limit_test = 256;
  o.threads = 2;
  o.quiet = true;
  o.out_dir = dir;
  return apps::train_fashion_cnn(o).checkpoint;
}

}  // namespace

TEST(PruneCnn, HalfTheChannelsMakesASmallerModelThatLoadsQuantisesAndTraces) {
  const std::string dir = qs::testing::temp_dir("prune_cnn");
  apps::PruneCnnOptions o;
  o.checkpoint = trained_cnn(dir);
  o.ratio = 0.5;
  o.finetune_epochs = 1;
  o.limit_train = 512;
  o.limit_test = 256;
  o.latency_rounds = 1;
  o.quiet = true;
  o.out = dir + "/pruned.safetensors";
  apps::PruneCnnResult r = apps::prune_cnn(o);
  EXPECT_EQ(r.after.widths, (apps::CnnWidths{16, 32, 64}));
  EXPECT_EQ(r.channels_removed, 16 + 32 + 64);
  EXPECT_EQ(r.finetune_steps, 4);  // 512 images, batch 128
  EXPECT_LT(r.after.params * 3, r.before.params);  // conv-heavy: near a quarter
  EXPECT_LT(r.after.flops * 3, r.before.flops);
  EXPECT_LT(r.after.file_bytes * 3, r.before.file_bytes);
  EXPECT_GT(r.after.infer_b64_ms, 0);
  EXPECT_GT(r.after.accuracy, 0.1);

  // It loads at its widths and gives the accuracy the job reported.
  std::string method;
  auto m = apps::load_fashion_cnn(o.out, &method);
  EXPECT_EQ(method, "fp32");
  EXPECT_EQ(m->widths(), (apps::CnnWidths{16, 32, 64}));
  data::FashionMNIST test(false, o.data_root, true);
  EXPECT_EQ(apps::evaluate_classifier(*m, apps::first_rows(test.images, 256), apps::first_rows(test.labels, 256)).first,
            r.after.accuracy);

  // The static graph of the pruned model runs as the model does.
  Tensor x = randn({4, 1, 28, 28});
  graph::Graph g = graph::trace(*m, x);
  NoGrad ng;
  EXPECT_LT(amax(abs(sub(graph::run(g, {x})[0], (*m)(x)))).item(), 1e-5);

  // Pruned, then quantised.
  apps::QuantizeCnnOptions q;
  q.checkpoint = o.out;
  q.calib_batches = 2;
  q.limit_train = 256;
  q.limit_test = 256;
  q.quiet = true;
  q.out = dir + "/pruned_int8.safetensors";
  apps::QuantizeCnnResult qr = apps::quantize_cnn(q);
  EXPECT_GT(qr.int8_accuracy, 0.1);
  auto qm = apps::load_fashion_cnn(q.out, &method);
  EXPECT_EQ(method, "ptq");
  EXPECT_EQ(qm->widths(), (apps::CnnWidths{16, 32, 64}));
}

// Two steps of an iterative schedule: step 1 keeps sqrt(1/2) of each layer, step 2 lands
// where one shot at 0.5 does; each step is fine-tuned and reported.
TEST(PruneCnn, IterativeScheduleLandsWhereOneShotDoes) {
  const std::string dir = qs::testing::temp_dir("prune_cnn_iterative");
  apps::PruneCnnOptions o;
  o.checkpoint = trained_cnn(dir);
  o.ratio = 0.5;
  o.iterations = 2;
  o.finetune_epochs = 1;
  o.limit_train = 256;
  o.limit_test = 256;
  o.latency_rounds = 0;
  o.quiet = true;
  o.out = dir + "/pruned.safetensors";
  apps::PruneCnnResult r = apps::prune_cnn(o);
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0].widths, (apps::CnnWidths{23, 45, 91}));  // round(size * 0.5^(1/2))
  EXPECT_EQ(r.steps[1].widths, (apps::CnnWidths{16, 32, 64}));
  EXPECT_GT(r.steps[0].params, r.steps[1].params);
  EXPECT_EQ(r.steps[0].finetune_steps, 2);
  EXPECT_EQ(r.finetune_steps, 4);
  EXPECT_EQ(r.channels_removed, 112);
  EXPECT_EQ(r.after.accuracy, r.steps[1].accuracy);
  EXPECT_EQ(apps::load_fashion_cnn(o.out)->widths(), (apps::CnnWidths{16, 32, 64}));
  o.per_layer = {{"c1", 0.5}};
  EXPECT_NE(qs::testing::error_of([&] { apps::prune_cnn(o); }).find("--iterations with --per-layer"),
            std::string::npos);
}

// Network slimming's penalty: sum |gamma| over the batch norms, and training with it leaves
// smaller scales than training without.
TEST(PruneCnn, SlimmingPenaltyShrinksBatchNormScales) {
  Generator g(0);
  apps::FashionCNN fresh(g);
  EXPECT_EQ(apps::bn_scale_l1(fresh).item(), 32 + 64 + 128);  // gammas start at 1
  auto mean_gamma = [](const nn::Module& m) {
    double s = 0, n = 0;
    for (auto& [name, t] : m.named_parameters())
      if (name[0] == 'b' && name.find(".weight") != std::string::npos) s += sum(abs(t)).item(), n += double(t.numel());
    return s / n;
  };
  double gamma[2];
  for (int with = 0; with < 2; ++with) {
    apps::TrainCnnOptions o;
    o.epochs = 1, o.batch = 64, o.limit_train = 512, o.limit_test = 64, o.threads = 2, o.quiet = true;
    o.bn_l1 = with ? 1e-2 : 0.0;
    gamma[with] = mean_gamma(*apps::train_fashion_cnn(o).model);
  }
  EXPECT_LT(gamma[1], gamma[0] - 0.01) << gamma[0] << " " << gamma[1];
}

TEST(PruneCnn, BadInputIsAClearError) {
  const std::string dir = qs::testing::temp_dir("prune_cnn_errors");
  apps::PruneCnnOptions o;
  o.checkpoint = trained_cnn(dir);
  o.out = dir + "/p.safetensors";
  o.latency_rounds = 0;
  o.limit_test = 64;
  o.ratio = 1.0;
  EXPECT_NE(qs::testing::error_of([&] { apps::prune_cnn(o); }).find("outside [0, 1)"), std::string::npos);
  o.ratio = 0.5;
  o.per_layer = {{"fc", 0.5}};
  EXPECT_NE(qs::testing::error_of([&] { apps::prune_cnn(o); }).find("layer fc cannot be pruned: its channels are the model's output"),
            std::string::npos)
      << qs::testing::error_of([&] { apps::prune_cnn(o); });
  o.per_layer = {};
  o.method = "random";
  EXPECT_NE(qs::testing::error_of([&] { apps::prune_cnn(o); }).find("unknown method 'random'"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(o.out));  // nothing written on an error
}

// A language model's feed-forward neurons: the pruned checkpoint loads (with its tokenizer)
// at the new ffn_hidden, for both block types.
TEST(PruneLm, FeedForwardNeuronsOfEachBlockType) {
  for (const char* block : {"gpt", "deepseek"}) {
    SCOPED_TRACE(block);
    const std::string dir = qs::testing::temp_dir(std::string("prune_lm_") + block);
    std::string text;
    for (int i = 0; i < 300; ++i) text += "In the beginning " + std::to_string(i % 17) + " the word was.\n";
    qs::testing::write_bytes(dir + "/corpus.txt", text);
    apps::TrainLmOptions t;
    t.model.d_model = 32, t.model.n_layers = 2, t.model.n_heads = 4, t.model.block = block;
    t.corpus = dir + "/corpus.txt";
    t.batch = 4, t.seq = 32, t.steps = 6, t.eval_every = 0, t.eval_windows = 2, t.quiet = true;
    t.out_dir = dir;
    const std::string ckpt = apps::train_lm(t).checkpoint;

    apps::PruneLmOptions o;
    o.checkpoint = ckpt;
    o.ratio = 0.25;
    o.finetune_steps = 2;
    o.eval_windows = 2;
    o.latency_rounds = 1;
    o.quiet = true;
    o.out = dir + "/pruned.safetensors";
    apps::PruneLmResult r = apps::prune_lm(o);
    const int64_t hidden = std::string(block) == "gpt" ? 128 : 88;  // 4 C; 8/3 C rounded up to 8
    EXPECT_EQ(r.before.ffn_hidden, hidden);
    EXPECT_EQ(r.after.ffn_hidden, hidden - hidden / 4);
    EXPECT_EQ(r.channels_removed, 2 * (hidden / 4));
    EXPECT_LT(r.after.params, r.before.params);
    EXPECT_LT(r.after.flops, r.before.flops);
    EXPECT_LT(r.after.file_bytes, r.before.file_bytes);
    EXPECT_EQ(r.finetune_steps, 2);
    EXPECT_TRUE(std::isfinite(r.after.perplexity));
    apps::LoadedLm lm = apps::load_lm(o.out);
    EXPECT_EQ(lm.model->config().ffn_hidden, hidden - hidden / 4);
    EXPECT_EQ(lm.model->num_parameters(), r.after.params);
    EXPECT_FALSE(apps::generate_text(lm, "In the", {.max_tokens = 4}).empty());
  }
}

// Attention heads: the pruned model (fewer heads, the same head dim) computes what the
// unpruned model computes with the removed heads masked, bit for bit on the reference
// kernels; for plain MHA, grouped-query attention (whole key/value groups go), T5's per-head
// biases, and MLA (with and without the low-rank query, with RoPE and T5).
TEST(PruneLm, HeadsPrunedEqualHeadsMasked) {
  struct Case {
    const char* block;
    int64_t kv;
    nn::PositionEncoding pos;
    const char* attention = "mha";
    int64_t q_lora_rank = 0;
  };
  for (const Case& c : {Case{"gpt", 0, nn::PositionEncoding::learned}, Case{"deepseek", 2, nn::PositionEncoding::rope},
                        Case{"gpt", 0, nn::PositionEncoding::t5},
                        Case{"deepseek", 0, nn::PositionEncoding::rope, "mla"},
                        Case{"deepseek", 0, nn::PositionEncoding::t5, "mla", 16}}) {
    const std::string what = fmt::format("{}_{}_kv{}_{}_q{}", c.block, c.attention, c.kv,
                                         nn::position_encoding_name(c.pos), c.q_lora_rank);
    SCOPED_TRACE(what);
    const std::string dir = qs::testing::temp_dir("prune_heads_" + what);
    std::string text;
    for (int i = 0; i < 300; ++i) text += "And God said, let there be " + std::to_string(i % 13) + " lights.\n";
    qs::testing::write_bytes(dir + "/corpus.txt", text);
    apps::TrainLmOptions t;
    t.model.d_model = 32, t.model.n_layers = 2, t.model.n_heads = 4, t.model.block = c.block;
    t.model.n_kv_heads = c.kv, t.model.pos.kind = c.pos, t.model.attention = c.attention;
    t.model.q_lora_rank = c.q_lora_rank;
    t.corpus = dir + "/corpus.txt";
    t.batch = 4, t.seq = 32, t.steps = 6, t.eval_every = 0, t.eval_windows = 2, t.quiet = true;
    t.out_dir = dir;
    const std::string ckpt = apps::train_lm(t).checkpoint;
    apps::PruneLmOptions o;
    o.checkpoint = ckpt, o.method = "heads", o.ratio = 0.5, o.eval_windows = 2, o.latency_rounds = 0;
    o.importance_batches = 2, o.quiet = true, o.out = dir + "/heads.safetensors";
    apps::PruneLmResult r = apps::prune_lm(o);
    const int64_t groups = c.kv ? c.kv : 4, rep = 4 / groups;
    EXPECT_EQ(r.after.n_heads, 4 - (groups / 2) * rep);
    EXPECT_EQ(r.after.n_kv_heads, groups - groups / 2);
    EXPECT_EQ(r.channels_removed, 2 * (groups / 2) * rep);
    EXPECT_LT(r.after.params, r.before.params);
    EXPECT_LT(r.after.flops, r.before.flops);
    ASSERT_EQ(r.importance.size(), 2u);
    ASSERT_EQ(r.removed.size(), 2u);

    apps::LoadedLm full = apps::load_lm(ckpt), pruned = apps::load_lm(o.out);
    const nn::LMConfig& pc = pruned.model->config();
    if (std::string(c.attention) == "mla") {
      EXPECT_EQ(pc.qk_nope_head_dim, 8);
      EXPECT_EQ(pc.v_head_dim, 8);
    } else {
      EXPECT_EQ(pc.head_dim, 8);
    }
    // Mask in the full model the groups the job removed, which are the lowest importance of
    // each layer.
    std::vector<std::unique_ptr<nn::HeadMask>> masks;
    for (auto& [name, mod] : full.model->named_modules()) {
      auto* a = dynamic_cast<nn::AttentionLayer*>(mod.get());
      if (!a) continue;
      const std::vector<double>& imp = r.importance.at(name);
      const std::vector<int64_t>& gone = r.removed.at(name);
      ASSERT_EQ(int64_t(gone.size()), groups / 2);
      std::vector<double> keep(4, 1.0);
      for (int64_t j = 0; j < groups; ++j) {
        const bool removed = std::count(gone.begin(), gone.end(), j) > 0;
        for (int64_t k : gone) EXPECT_LE(imp[size_t(k)], removed ? imp[size_t(k)] : imp[size_t(j)]);
        if (removed)
          for (int64_t q = j * rep; q < (j + 1) * rep; ++q) keep[size_t(q)] = 0.0;
      }
      masks.push_back(std::make_unique<nn::HeadMask>(*a, keep));
    }
    ASSERT_EQ(masks.size(), 2u);
    Generator g(3);
    Tensor x = randint(0, full.model->config().vocab_size, {2, 16}, DType::i64, &g);
    NoGrad ng;
    ops::ReferenceKernels ref;
    Tensor ya = (*full.model)(x), yb = (*pruned.model)(x);
    ASSERT_EQ(ya.shape(), yb.shape());
    EXPECT_EQ(amax(abs(sub(ya, yb))).item(), 0.0);
  }
}

// An MoE language model's feed-forward neurons: every routed expert and the shared experts
// lose the same share, the dense first layer its own; the pruned model equals the unpruned
// one with those neurons zeroed (bit for bit on the reference kernels: the routing does not
// change), and each expert lost its lowest-L1 neurons. Fine-tuning runs the MoE balancing.
TEST(PruneLm, MoeExpertNeuronsPrunedEqualMasked) {
  const std::string dir = qs::testing::temp_dir("prune_lm_moe");
  std::string text;
  for (int i = 0; i < 300; ++i) text += "In the beginning " + std::to_string(i % 17) + " the word was.\n";
  qs::testing::write_bytes(dir + "/corpus.txt", text);
  apps::TrainLmOptions t;
  t.model.d_model = 32, t.model.n_layers = 2, t.model.n_heads = 4, t.model.block = "deepseek";
  t.model.ffn = "moe", t.model.moe_n_routed = 4, t.model.moe_n_shared = 1, t.model.moe_top_k = 2;
  t.model.moe_first_dense = 1;
  t.corpus = dir + "/corpus.txt";
  t.batch = 4, t.seq = 32, t.steps = 6, t.eval_every = 0, t.eval_windows = 2, t.quiet = true;
  t.out_dir = dir;
  const std::string ckpt = apps::train_lm(t).checkpoint;
  apps::PruneLmOptions o;
  o.checkpoint = ckpt, o.ratio = 0.25, o.eval_windows = 2, o.latency_rounds = 1, o.quiet = true;
  o.out = dir + "/pruned.safetensors";
  apps::PruneLmResult r = apps::prune_lm(o);
  // Dense SwiGLU 88 (8/3 C rounded up to 8) loses 22; experts 32 (88 / (top_k + shared),
  // rounded up to 8) lose 8 each, the shared expert 8.
  EXPECT_EQ(r.channels_removed, 22 + 4 * 8 + 8);
  EXPECT_EQ(r.removed.size(), 6u);
  EXPECT_LT(r.after.params, r.before.params);
  EXPECT_LT(r.after.flops, r.before.flops);
  apps::LoadedLm full = apps::load_lm(ckpt), pruned = apps::load_lm(o.out);
  EXPECT_EQ(pruned.model->config().ffn_hidden, 66);
  EXPECT_EQ(pruned.model->config().moe_d_expert, 24);
  EXPECT_EQ(pruned.model->num_parameters(), r.after.params);

  {  // the masked model
    NoGrad ng;
    int swiglus = 0;
    for (auto& [name, mod] : full.model->named_modules()) {
      auto* f = dynamic_cast<nn::SwiGLU*>(mod.get());
      if (!f) continue;
      ++swiglus;
      const std::vector<int64_t>& gone = r.removed.at(name + ".gate_proj+" + name + ".up_proj");
      const Tensor gw = f->gate_proj()->weight(), uw = f->up_proj()->weight(), dw = f->down_proj()->weight();
      const Tensor l1 = add(sum(abs(gw), {1}), sum(abs(uw), {1}));
      const int64_t width = gw.size(0);
      EXPECT_EQ(int64_t(gone.size()), width / 4) << name;
      double worst_gone = -1, best_kept = 1e30;
      for (int64_t j = 0; j < width; ++j) {
        const double v = l1.narrow(0, j, 1).item();
        if (std::count(gone.begin(), gone.end(), j)) worst_gone = std::max(worst_gone, v);
        else best_kept = std::min(best_kept, v);
      }
      EXPECT_LE(worst_gone, best_kept) << name;
      for (int64_t j : gone) {
        gw.narrow(0, j, 1).zero_(), uw.narrow(0, j, 1).zero_();
        dw.narrow(1, j, 1).zero_();
      }
    }
    EXPECT_EQ(swiglus, 6);
    Generator g(3);
    Tensor x = randint(0, full.model->config().vocab_size, {2, 16}, DType::i64, &g);
    ops::ReferenceKernels ref;
    Tensor ya = (*full.model)(x), yb = (*pruned.model)(x);
    ASSERT_EQ(ya.shape(), yb.shape());
    EXPECT_EQ(amax(abs(sub(ya, yb))).item(), 0.0);
  }
  o.finetune_steps = 2, o.latency_rounds = 0, o.out = dir + "/tuned.safetensors";
  EXPECT_TRUE(std::isfinite(apps::prune_lm(o).after.perplexity));
}

TEST(PruneLm, MethodsThatDoNotApplyAreClearErrors) {
  const std::string dir = qs::testing::temp_dir("prune_lm_errors");
  apps::PruneLmOptions o;
  o.checkpoint = trained_cnn(dir);
  o.out = dir + "/p.safetensors";
  EXPECT_NE(qs::testing::error_of([&] { apps::prune_lm(o); }).find("a FashionCNN checkpoint"), std::string::npos);
  o.criterion = "bn-scale";
  EXPECT_NE(qs::testing::error_of([&] { apps::prune_lm(o); }).find("no batch norms"), std::string::npos);
  // ALiBi's slopes depend on the number of heads: its heads are not pruned.
  std::string text;
  for (int i = 0; i < 200; ++i) text += "Let there be light " + std::to_string(i % 7) + ".\n";
  qs::testing::write_bytes(dir + "/corpus.txt", text);
  apps::TrainLmOptions t;
  t.model.d_model = 32, t.model.n_layers = 1, t.model.n_heads = 4, t.model.pos.kind = nn::PositionEncoding::alibi;
  t.corpus = dir + "/corpus.txt", t.batch = 2, t.seq = 16, t.steps = 1, t.eval_every = 0, t.eval_windows = 1;
  t.quiet = true, t.out_dir = dir + "/alibi";
  apps::PruneLmOptions h;
  h.checkpoint = apps::train_lm(t).checkpoint, h.method = "heads", h.out = dir + "/h.safetensors";
  EXPECT_NE(qs::testing::error_of([&] { apps::prune_lm(h); }).find("uses ALiBi"), std::string::npos);
  h.method = "neurons";
  EXPECT_NE(qs::testing::error_of([&] { apps::prune_lm(h); }).find("unknown language-model method 'neurons'"),
            std::string::npos);
}
