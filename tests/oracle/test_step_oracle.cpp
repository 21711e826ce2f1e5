// The step oracle: for every model family, one whole training step (forward, loss,
// backward, optimiser update) on the optimised kernels against the same step on the
// reference kernels (ops::ReferenceKernels), every gradient, parameter and buffer
// compared. Ops can each pass the harness and still be wrong together: a kernel that
// reads a buffer another kernel left in a layout it did not expect, a scratch slot two
// kernels share, a cached conversion that outlives its input. The generic harness
// (`qiusuo check`) cannot see those; this can.
//
// Tolerances: the reference accumulates in double, the optimised kernels in f32 (oneDNN,
// SIMD) with other summation orders; gradients and updated values must agree within
// atol = 2e-4 * max|ref| + 1e-7 and rtol 1e-3 per element. Under bf16 autocast the
// products read the upstream gradient rounded to bf16 (and a conv net's activations and
// their gradients are bf16 throughout, as in PyTorch), so two sides
// whose f32 values differ in the last bits can round one bf16 ulp apart (2^-8 relative),
// at every layer the gradient passes: atol 4e-3 * max|ref|, rtol 1.6e-2 there (measured:
// 3 bf16 ulps apart in one element of an LM's attention weight gradient).
//
// Discrete decisions: a max-pool window whose two largest values differ by a few ulps, a
// pre-activation within rounding of 0 at a ReLU, a tie in a top-k: each is decided by
// rounding, so differently ordered sums may decide it differently. Both sides then compute a correct (sub)gradient, but not
// the same one (measured: one max-pool window of 25,088 moved 1% of c2's weight gradient).
// So the step records every decision (integer outputs such as max-pool and top-k indices,
// the sign pattern after each ReLU) on both sides and is compared on the first of several
// data seeds where they all agree; a kernel whose decisions differ on every seed fails.
// Fake quantisation (QAT) rounds tens of values per layer that sit within rounding of a
// half step, one step either way: its activations then differ by a step in a few places,
// and the comparison takes the bf16 tolerances.
//
// After the optimiser step, a parameter may differ as much as its gradient may, times the
// update's slope (SGD: lr <= 0.1; AdamW's first step with eps = lr: at most 1), so its
// atol is taken from the larger of its own and its gradient's peak.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "decisions.h"
#include "ops/op.h"
#include "oracle_util.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/apps/ct_model.h"
#include "qiusuo/apps/detector.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/seq2seq.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/quant/convert.h"
#include "qiusuo/quant/qat.h"

using namespace qs;

namespace {

struct StepResult {
  Tensor loss;
  optim::NamedTensors grads, after;  // gradients; parameters and buffers after the update
  std::vector<std::vector<int64_t>> decisions;  // see Decisions
};

using ModelFactory = std::function<std::shared_ptr<nn::Module>()>;
using LossFn = std::function<Tensor(nn::Module&, uint64_t data_seed)>;
using OptFactory = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;

StepResult one_step(const ModelFactory& make, const LossFn& loss_of, const OptFactory& opt_of, uint64_t seed) {
  auto model = make();
  model->train();
  std::vector<Tensor> params;
  for (auto& [n, p] : model->named_parameters()) params.push_back(p);
  auto opt = opt_of(params);
  StepResult r;
  {
    qs::testing::Decisions d;
    r.loss = loss_of(*model, seed);
    r.loss.backward();
    r.decisions = std::move(d.taken);
  }
  for (auto& [n, p] : model->named_parameters())
    r.grads.emplace_back(n, p.grad().defined() ? p.grad().clone() : Tensor());
  opt->step();
  for (auto& [n, p] : model->named_parameters()) r.after.emplace_back(n, p.detach().clone());
  for (auto& [n, b] : model->named_buffers()) r.after.emplace_back(n, b.clone());
  return r;
}

struct Tolerance {
  double atol_of_peak = 2e-4, rtol = 1e-3;
  bool layer_scale = false;  // the atol's scale is at least the peak gradient of the parameter's module
};
constexpr Tolerance kF32{}, kBf16{4e-3, 1.6e-2, true};

// The module part of a parameter's name ("b1" of "b1.weight").
std::string module_of(const std::string& name) {
  size_t dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

double peak_of(const Tensor& t) {
  double peak = 0;
  for (double v : t.to_vector()) peak = std::max(peak, std::abs(v));
  return peak;
}

// min_peak: the atol's scale is at least this (see "After the optimiser step").
::testing::AssertionResult close_to_ref(const Tensor& a, const Tensor& ref, Tolerance tol = kF32,
                                        double min_peak = 0.0) {
  if (!a.defined() || !ref.defined())
    return a.defined() == ref.defined() ? ::testing::AssertionSuccess()
                                        : ::testing::AssertionFailure() << "defined in one run only";
  if (!is_floating(ref.dtype())) return qs::testing::all_close(a, ref, 0, 0);
  const double peak = std::max(peak_of(ref), min_peak);
  return qs::testing::all_close(a, ref, tol.atol_of_peak * peak + 1e-7, tol.rtol);
}

// Runs the step twice, optimised then reference, from the same initial model and data,
// for data seeds 0, 1, ... until both sides take the same decisions (at most 8 seeds).
void compare_step(const ModelFactory& make, const LossFn& loss_of, const OptFactory& opt_of, Tolerance tol = kF32) {
  StepResult fast, ref;
  uint64_t seed = 0;
  for (; seed < 8; ++seed) {
    fast = one_step(make, loss_of, opt_of, seed);
    ops::ReferenceKernels all_ref;
    ref = one_step(make, loss_of, opt_of, seed);
    if (fast.decisions == ref.decisions) break;
  }
  ASSERT_LT(seed, 8u) << "the optimised kernels decided differently from the reference on 8 data seeds";
  ASSERT_GT(ref.decisions.size(), 0u);
  EXPECT_TRUE(close_to_ref(fast.loss, ref.loss, tol));
  ASSERT_EQ(fast.grads.size(), ref.grads.size());
  int compared = 0;
  // Under bf16 the activations' gradients are bf16 too (as in PyTorch's autocast), and a
  // convolution's bias in front of batch norm has a gradient that is zero in exact
  // arithmetic: both sides return the rounding noise of a sum of ~10^5 bf16 values, whose
  // roundings differ in the last bit here and there (measured: 1.4e-5 against 7.6e-6, with
  // the layer's weight gradient near 1e-2). So a bf16 gradient is judged on the scale of
  // its module's largest gradient.
  auto layer_peak = [&](const std::string& name) {
    double peak = 0;
    if (tol.layer_scale)
      for (auto& [n, gr] : ref.grads)
        if (gr.defined() && module_of(n) == module_of(name)) peak = std::max(peak, peak_of(gr));
    return peak;
  };
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    SCOPED_TRACE("gradient of " + ref.grads[i].first);
    EXPECT_TRUE(close_to_ref(fast.grads[i].second, ref.grads[i].second, tol, layer_peak(ref.grads[i].first)));
    compared += ref.grads[i].second.defined();
  }
  EXPECT_GT(compared, 0);
  ASSERT_EQ(fast.after.size(), ref.after.size());
  for (size_t i = 0; i < ref.after.size(); ++i) {
    SCOPED_TRACE("after the step: " + ref.after[i].first);
    const Tensor* grad = nullptr;
    for (auto& [n, gr] : ref.grads)
      if (n == ref.after[i].first && gr.defined()) grad = &gr;
    EXPECT_TRUE(close_to_ref(fast.after[i].second, ref.after[i].second, tol,
                             std::max(grad ? peak_of(*grad) : 0.0, layer_peak(ref.after[i].first))));
  }
}

OptFactory sgd(double lr) {
  return [lr](std::vector<Tensor> p) { return std::make_unique<optim::SGD>(std::move(p), lr, 0.9, 0.0, 5e-4); };
}
// eps 1e-3: Adam's first update is lr * g / (|g| + eps), with the default 1e-8 a sign
// function of the gradient, so a gradient of 1e-10 that rounding flips would flip the
// update; with 1e-3 the update moves no more than the gradient does.
OptFactory adamw(double lr) {
  return [lr](std::vector<Tensor> p) {
    return std::make_unique<optim::AdamW>(std::move(p), lr, std::pair{0.9, 0.999}, 1e-3);
  };
}

// Re-runs every op dispatched while alive on its reference kernel, on the same inputs
// as they were at the time, and keeps the first op whose outputs disagree: where in a
// step the optimised kernels went wrong.
class ShadowReference : public ops::DispatchHook {
 public:
  ShadowReference() { ops::push_dispatch_hook(this); }
  ~ShadowReference() override { ops::pop_dispatch_hook(this); }
  void after(const ops::OpCall& call) override {
    const auto& def = ops::op_def(call.op);
    if (busy_ || (def.flags & ops::kView) || !first_.empty()) return;
    busy_ = true;
    NoGrad ng;
    ops::OpCall ref{call.op, call.in, call.attrs, {}};
    for (auto& spec : ops::run_meta(ref)) ref.out.push_back(ops::empty_output(spec));
    ops::run_kernel(ref, "ref");
    for (size_t i = 0; i < ref.out.size() && first_.empty(); ++i)
      if (auto r = close_to_ref(call.out[i], ref.out[i]); !r)
        first_ = fmt::format("{} output {} ({}): {}", def.name, i, shape_str(ref.out[i].shape()), r.message());
    ++checked_;
    busy_ = false;
  }
  const std::string& first_mismatch() const { return first_; }
  int checked() const { return checked_; }

 private:
  bool busy_ = false;
  int checked_ = 0;
  std::string first_;
};

}  // namespace

TEST(StepOracle, ShadowFashionCnn) {
  Generator data(7);
  Tensor x = randn({8, 1, 28, 28}, DType::f32, &data), y = randint(0, 10, {8}, DType::i64, &data);
  Generator g(1);
  apps::FashionCNN m(g);
  m.train();
  ShadowReference shadow;
  cross_entropy(m(x), y).backward();
  EXPECT_EQ(shadow.first_mismatch(), "");
  EXPECT_GT(shadow.checked(), 20);
}

TEST(StepOracle, FashionCnn) {
  compare_step([] { Generator g(1); return std::make_shared<apps::FashionCNN>(g); },
               [](nn::Module& m, uint64_t seed) {
                 Generator data(100 + seed);
                 Tensor x = randn({8, 1, 28, 28}, DType::f32, &data);
                 return cross_entropy(m(x), randint(0, 10, {8}, DType::i64, &data));
               },
               sgd(0.1));
}

TEST(StepOracle, Cnn3d) {
  compare_step([] { Generator g(2); return std::make_shared<apps::CNN3D>(g); },
               [](nn::Module& m, uint64_t seed) {
                 Generator data(200 + seed);
                 Tensor x = randn({2, 1, 12, 12, 12}, DType::f32, &data);
                 return cross_entropy(m(x), randint(0, 2, {2}, DType::i64, &data));
               },
               sgd(0.05));
}

// The CT classifier with attention gates and fusion (trilinear upsampling, sigmoid gates,
// concatenations, residual blocks) under the focal loss, in f32 and bf16.
TEST(StepOracle, CtNetFusionGatesFocal) {
  for (bool bf16 : {false, true})
    compare_step([] { Generator g(3); return std::make_shared<apps::CtNet>(apps::CtNetConfig{"fusion+gates", 4, 2, 8}, g); },
                 [bf16](nn::Module& m, uint64_t seed) {
                   Generator data(300 + seed);
                   Tensor x = randn({2, 1, 8, 8, 8}, DType::f32, &data);
                   Autocast ac(bf16);
                   return focal_loss(m(x), randint(0, 2, {2}, DType::i64, &data), 2.0, {0.25});
                 },
                 adamw(1e-3), bf16 ? kBf16 : kF32);
}

// The spatiotemporal defect detector: a ResNet over two frames, the feature pyramid
// (nearest upsampling, additions), a Transformer over time at every location, the FCOS
// head and its loss (focal, GIoU through minimum/maximum, centre-ness BCE).
TEST(StepOracle, SpatiotemporalDetector) {
  compare_step([] {
                 Generator g(4);
                 apps::DetectorConfig c;
                 c.model = "spatiotemporal";
                 c.width = 4, c.channels = 8, c.heads = 2, c.frames = 2;
                 return std::make_shared<apps::Detector>(c, g);
               },
               [](nn::Module& m, uint64_t seed) {
                 Generator data(500 + seed);
                 Tensor x = randn({1, 2, 1, 32, 32}, DType::f32, &data);
                 auto maps = static_cast<apps::Detector&>(m).maps(x);
                 const Tensor boxes = from_vector({3, 4, 20, 18, 12, 10, 30, 31}, {2, 4});
                 const Tensor labels = from_vector({1, 4}, {2}, DType::i64);
                 return apps::detector_loss(maps, apps::fcos_targets({boxes}, {labels}, maps)).total;
               },
               adamw(1e-3));
}

// bf16 mixed precision (autocast): convolutions and linears on bf16 operands with f32
// results, forward and both backward products; natively where the CPU has bf16 dot
// products, widened to f32 elsewhere; the reference computes from the same bf16 values.
TEST(StepOracle, FashionCnnBf16) {
  compare_step([] { Generator g(1); return std::make_shared<apps::FashionCNN>(g); },
               [](nn::Module& m, uint64_t seed) {
                 Generator data(700 + seed);
                 Tensor x = randn({8, 1, 28, 28}, DType::f32, &data);
                 Autocast ac(true);
                 return cross_entropy(m(x), randint(0, 10, {8}, DType::i64, &data));
               },
               sgd(0.1), kBf16);
}

TEST(StepOracle, Cnn3dBf16) {
  compare_step([] { Generator g(2); return std::make_shared<apps::CNN3D>(g); },
               [](nn::Module& m, uint64_t seed) {
                 Generator data(800 + seed);
                 Tensor x = randn({2, 1, 12, 12, 12}, DType::f32, &data);
                 Autocast ac(true);
                 return cross_entropy(m(x), randint(0, 2, {2}, DType::i64, &data));
               },
               sgd(0.05), kBf16);
}

// The small language models of the LM steps: d_model 64, 2 layers, 4 heads, 32 tokens.
nn::LMConfig small_lm(const std::string& block = "gpt", const std::string& attention = "mha",
                      const std::string& ffn = "swiglu") {
  nn::LMConfig cfg;
  cfg.d_model = 64;
  cfg.n_layers = 2;
  cfg.n_heads = 4;
  cfg.max_seq_len = 32;
  cfg.block = block;
  cfg.attention = attention;
  cfg.ffn = ffn;
  return cfg;
}
ModelFactory lm_factory(const nn::LMConfig& cfg, uint64_t init_seed) {
  return [cfg, init_seed] {
    Generator g(init_seed);
    return std::make_shared<nn::TransformerLM>(cfg, nn::FfnFactory{}, g);
  };
}
// Next-token loss on 2 windows of 32 random bytes drawn from Generator(data_base + seed),
// under bf16 autocast when asked.
LossFn lm_loss(uint64_t data_base, bool bf16 = false) {
  return [data_base, bf16](nn::Module& m, uint64_t seed) {
    Generator data(data_base + seed);
    Tensor idx = randint(0, 256, {2, 33}, DType::i64, &data);
    Tensor in = idx.narrow(1, 0, 32).contiguous(), tgt = idx.narrow(1, 1, 32).contiguous();
    Autocast ac(bf16);
    return cross_entropy(m(in).reshape({-1, 256}), tgt.reshape({-1}));
  };
}

TEST(StepOracle, LanguageModels) {
  for (std::string block : {"gpt", "deepseek"}) {
    SCOPED_TRACE(block);
    compare_step(lm_factory(small_lm(block, block == "deepseek" ? "mla" : "mha"), 3), lm_loss(300), adamw(1e-3));
  }
}

TEST(StepOracle, LanguageModelBf16) { compare_step(lm_factory(small_lm(), 3), lm_loss(900, true), adamw(1e-3), kBf16); }

TEST(StepOracle, MoeLanguageModel) {
  compare_step(lm_factory(small_lm("deepseek", "mha", "moe"), 4), lm_loss(400), adamw(1e-3));
}

TEST(StepOracle, TranslationModel) {
  nn::Seq2SeqConfig cfg;
  cfg.src_vocab = cfg.tgt_vocab = 40;
  cfg.d_model = 32;
  cfg.n_heads = 4;
  cfg.enc_layers = cfg.dec_layers = 2;
  cfg.max_len = 16;
  compare_step([cfg] { Generator g(5); return std::make_shared<nn::Seq2SeqTransformer>(cfg, g); },
               [](nn::Module& m, uint64_t seed) {
                 Generator data(500 + seed);
                 Tensor src = randint(1, 40, {3, 11}, DType::i64, &data), tgt = randint(1, 40, {3, 10}, DType::i64, &data);
                 Tensor tin = tgt.narrow(1, 0, 9).contiguous(), tout = tgt.narrow(1, 1, 9).contiguous();
                 auto& s2s = dynamic_cast<nn::Seq2SeqTransformer&>(m);
                 return cross_entropy(s2s.forward(src, tin).reshape({-1, 40}), tout.reshape({-1}));
               },
               adamw(1e-3));
}

// Quantisation-aware training: fake-quantised convolutions with folded batch norm.
TEST(StepOracle, QatCnn) {
  compare_step(
      [] {
        Generator g(6);
        auto m = std::make_shared<apps::FashionCNN>(g);
        m->train();
        quant::PrepareOptions po;
        po.fuse = apps::FashionCNN::fuse_groups();
        quant::prepare_qat(*m, quant::QConfig::default_qat(), po);
        return m;
      },
      [](nn::Module& m, uint64_t seed) {
        Generator data(600 + seed);
        Tensor x = randn({4, 1, 28, 28}, DType::f32, &data);
        return cross_entropy(m(x), randint(0, 10, {4}, DType::i64, &data));
      },
      sgd(0.05), kBf16);
}

// The converted INT8 CNN has no training step; its inference must be bit for bit the
// reference's (the quantised rows are kExact), chained activations included.
TEST(StepOracle, Int8CnnInference) {
  Generator data(12);
  Tensor x = randn({4, 1, 28, 28}, DType::f32, &data);
  auto build = [&] {
    Generator g(6);
    auto m = std::make_shared<apps::FashionCNN>(g);
    quant::PrepareOptions po;
    po.fuse = apps::FashionCNN::fuse_groups();
    m->eval();
    quant::prepare(*m, quant::QConfig::default_ptq(), po);
    quant::calibrate(*m, {randn({16, 1, 28, 28}, DType::f32, &g)});
    quant::convert(*m, x);
    return m;
  };
  NoGrad ng;
  Tensor fast = (*build())(x);
  Tensor ref;
  {
    ops::ReferenceKernels all_ref;
    ref = (*build())(x);
  }
  EXPECT_TRUE(qs::testing::all_close(fast, ref, 0, 0));
}

