// Optimisers against PyTorch 1.13, optimiser checkpoints, gradient clipping, schedules,
// and a small MLP trained end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "qiusuo/autograd.h"
#include "qiusuo/nn.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim.h"

using namespace qs;
using namespace qs::optim;

namespace {

using MakeOpt = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;

// The tiny problem of the PyTorch script below: loss = mean((x w^T + b - t)^2).
struct Problem {
  Tensor w, b, x, t;
  explicit Problem(DType dt) {
    w = from_vector({0.5, -0.3, 0.8, 0.1, 0.2, -0.6}, {2, 3}, dt).requires_grad_();
    b = from_vector({0.05, -0.1}, {2}, dt).requires_grad_();
    x = from_vector({1, 2, -1, 0.5, -1.5, 2}, {2, 3}, dt);
    t = from_vector({1, -1, 0.4, 0.2}, {2, 2}, dt);
  }
  void backward() { mean(square(linear(x, w, b) - t)).backward(); }
  std::vector<double> values() const {
    auto v = w.to_vector(), vb = b.to_vector();
    v.insert(v.end(), vb.begin(), vb.end());
    return v;
  }
};

std::vector<double> run(const MakeOpt& make, DType dt, int steps) {
  Problem p(dt);
  auto opt = make({p.w, p.b});
  for (int s = 0; s < steps; ++s) {
    opt->zero_grad();
    p.backward();
    opt->step();
  }
  return p.values();
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want, double rtol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], rtol * std::max(1.0, std::abs(want[i]))) << "element " << i;
}

void check_against_torch(const MakeOpt& make, const std::vector<double>& want) {
  expect_near_all(run(make, DType::f64, 3), want, 1e-12);
  expect_near_all(run(make, DType::f32, 3), want, 2e-6);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Expected values: /usr/bin/python3 with torch 1.13, float64, 3 steps of
//   w = [[0.5,-0.3,0.8],[0.1,0.2,-0.6]], b = [0.05,-0.1], x = [[1,2,-1],[0.5,-1.5,2]],
//   t = [[1,-1],[0.4,0.2]]; each step: opt.zero_grad();
//   ((F.linear(x, w, b) - t)**2).mean().backward(); opt.step(); print w.flatten(), b.

}  // namespace

// torch.optim.SGD([w, b], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
TEST(Optim, SGDNesterovMatchesTorch) {
  check_against_torch([](std::vector<Tensor> p) { return std::make_unique<SGD>(p, 0.1, 0.9, 0.0, 0.01, true); },
                      {0.6118623233280001, 0.5447704865602, 0.06709183676780003, -0.0894502175634, -0.6613980019893,
                       0.07596533385540004, 0.04335807553705003, -0.19134368441910002});
}

// torch.optim.SGD([w, b], lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)
TEST(Optim, SGDDampeningMatchesTorch) {
  check_against_torch([](std::vector<Tensor> p) { return std::make_unique<SGD>(p, 0.1, 0.9, 0.3, 0.01); },
                      {0.63833623308, 0.7561289244220001, -0.11779269134199999, -0.09383780207400001,
                       -0.8611082215229999, 0.26963884469400007, 0.03580810527550004, -0.15820390850100002});
}

// torch.optim.Adam([w, b], lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
TEST(Optim, AdamMatchesTorch) {
  check_against_torch(
      [](std::vector<Tensor> p) { return std::make_unique<Adam>(p, 0.01, std::make_pair(0.8, 0.99), 1e-6, 0.1); },
      {0.5299682692220067, -0.2700375245306638, 0.7700390407077049, 0.0700799018786828, 0.1700409128108733,
       -0.5700334700534552, 0.020297690015268998, -0.1295825481919903});
}

// torch.optim.AdamW([w, b], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
TEST(Optim, AdamWMatchesTorch) {
  check_against_torch([](std::vector<Tensor> p) { return std::make_unique<AdamW>(p, 0.01, std::make_pair(0.9, 0.999), 1e-8, 0.1); },
                      {0.5284602533800511, -0.26915091700364296, 0.7676538138981457, 0.0697716810643985,
                       0.16945222866324858, -0.5682497442237494, 0.020074917989227035, -0.12946773045190355});
}

TEST(Optim, SkipsParametersWithoutGradient) {
  Tensor a = ones({2}).requires_grad_(), b = ones({2}).requires_grad_();
  SGD opt({a, b}, 0.5);
  sum(a * 2.0).backward();
  opt.step();
  EXPECT_EQ(a.to_vector(), (std::vector<double>{0, 0}));
  EXPECT_EQ(b.to_vector(), (std::vector<double>{1, 1}));
  EXPECT_EQ(opt.step_count(), 1);
}

// Save after 2 steps, resume a fresh optimiser on copied parameters: the 3rd step is
// bit-identical to the uninterrupted run's.
TEST(Optim, StateDictResumesExactly) {
  std::vector<MakeOpt> makers = {
      [](std::vector<Tensor> p) { return std::make_unique<SGD>(p, 0.1, 0.9, 0.0, 0.01, true); },
      [](std::vector<Tensor> p) { return std::make_unique<Adam>(p, 0.01); },
      [](std::vector<Tensor> p) { return std::make_unique<AdamW>(p, 0.01); }};
  for (auto& make : makers) {
    Problem a(DType::f32);
    auto opt_a = make({a.w, a.b});
    for (int s = 0; s < 2; ++s) {
      opt_a->zero_grad();
      a.backward();
      opt_a->step();
    }
    NamedTensors saved = opt_a->state_dict();
    Problem b(DType::f32);
    {
      NoGrad ng;
      b.w.copy_(a.w);
      b.b.copy_(a.b);
    }
    auto opt_b = make({b.w, b.b});
    opt_b->load_state_dict(saved);
    EXPECT_EQ(opt_b->step_count(), 2);
    for (auto* pr : {&a, &b}) pr->w.zero_grad(), pr->b.zero_grad();
    a.backward();
    b.backward();
    opt_a->step();
    opt_b->step();
    EXPECT_EQ(a.values(), b.values());
  }
}

TEST(Optim, LoadStateDictChecks) {
  Problem p(DType::f32);
  Adam opt({p.w, p.b});
  p.backward();
  opt.step();
  NamedTensors sd = opt.state_dict();
  std::vector<std::string> names;
  for (auto& kv : sd) names.push_back(kv.first);
  EXPECT_EQ(names, (std::vector<std::string>{"step", "lr", "step.0", "step.1", "exp_avg.0", "exp_avg.1", "exp_avg_sq.0",
                                             "exp_avg_sq.1"}));
  NamedTensors bad = sd;
  bad.erase(bad.begin());                          // no "step"
  bad[3].second = zeros({3, 2});                   // exp_avg.0 has the wrong shape
  bad.emplace_back("exp_avg.7", zeros({2}));       // no parameter 7
  bad.emplace_back("momentum_buffer.0", zeros({2, 3}));
  std::string msg = error_of([&] { opt.load_state_dict(bad); });
  EXPECT_NE(msg.find("4 problem(s)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing key 'step'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'exp_avg.0': expected f32 [2, 3], found f32 [3, 2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected key 'exp_avg.7' (expected step, lr or <step|exp_avg|exp_avg_sq>.<0..1>)"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected key 'momentum_buffer.0'"), std::string::npos) << msg;

  // A parameter with some of its buffers, and a stepped state with none (issue 19).
  NamedTensors partial;
  for (auto& kv : sd)
    if (kv.first != "exp_avg_sq.1") partial.push_back(kv);
  msg = error_of([&] { opt.load_state_dict(partial); });
  EXPECT_NE(msg.find("parameter 1 has step.1, exp_avg.1 but not exp_avg_sq.1"), std::string::npos) << msg;
  NamedTensors bare = {sd[0], sd[1]};  // step 1 and lr only
  msg = error_of([&] { opt.load_state_dict(bare); });
  EXPECT_NE(msg.find("'step' is 1 but no parameter has its buffers"), std::string::npos) << msg;
  NamedTensors one_param;  // a parameter that never had a gradient keeps no buffers: accepted
  for (auto& kv : sd)
    if (kv.first.size() < 2 || kv.first.substr(kv.first.size() - 2) != ".1") one_param.push_back(kv);
  EXPECT_NO_THROW(opt.load_state_dict(one_param));
  SGD plain({p.w, p.b}, 0.1);  // no momentum: no buffers, a stepped state without any is whole
  p.backward();
  plain.step();
  EXPECT_NO_THROW(plain.load_state_dict(plain.state_dict()));
}

// torch.nn.utils.clip_grad_norm_([g1, g2], 6.5) with grads [3, -4] and [[12]] (float64):
// returns 13.0, grads become [1.4999998846153937, -1.9999998461538582], [[5.999999538461575]].
TEST(Optim, ClipGradNormMatchesTorch) {
  Tensor a = zeros({2}, DType::f64).requires_grad_(), b = zeros({1, 1}, DType::f64).requires_grad_(),
         c = zeros({3}).requires_grad_();
  a.set_grad(from_vector({3, -4}, {2}, DType::f64));
  b.set_grad(from_vector({12}, {1, 1}, DType::f64));
  EXPECT_DOUBLE_EQ(clip_grad_norm_({a, b, c}, 6.5), 13.0);
  EXPECT_NEAR(a.grad().to_vector()[0], 1.4999998846153937, 1e-15);
  EXPECT_NEAR(a.grad().to_vector()[1], -1.9999998461538582, 1e-15);
  EXPECT_NEAR(b.grad().to_vector()[0], 5.999999538461575, 1e-15);
  // Below max_norm: the norm of the clipped grads is returned and nothing changes.
  double clipped = std::sqrt(1.4999998846153937 * 1.4999998846153937 + 1.9999998461538582 * 1.9999998461538582 +
                             5.999999538461575 * 5.999999538461575);
  EXPECT_NEAR(clip_grad_norm_({a, b}, 100.0), clipped, 1e-12);
  EXPECT_NEAR(b.grad().to_vector()[0], 5.999999538461575, 1e-15);
  EXPECT_NEAR(clip_grad_norm_({a, b}, 100.0, INFINITY), 6.0, 1e-6);
  // A gradient shared by two parameters is scaled once.
  Tensor p = ones({2}).requires_grad_(), q = ones({2}).requires_grad_();
  sum((p + q) * 4.0).backward();
  clip_grad_norm_({p, q}, 1.0);
  EXPECT_NEAR(p.grad().to_vector()[0], 0.5, 1e-6);
  EXPECT_NEAR(q.grad().to_vector()[0], 0.5, 1e-6);
}

TEST(Schedule, ClosedForms) {
  StepLR step(3, 0.5);
  EXPECT_DOUBLE_EQ(step.lr(0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(step.lr(2, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(step.lr(3, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(step.lr(7, 1.0), 0.25);
  CosineAnnealingLR cos(10, 0.1);
  EXPECT_DOUBLE_EQ(cos.lr(0, 1.0), 1.0);
  EXPECT_NEAR(cos.lr(5, 1.0), 0.55, 1e-12);
  EXPECT_NEAR(cos.lr(10, 1.0), 0.1, 1e-12);
  // torch: CosineAnnealingLR(opt(lr=1), T_max=10, eta_min=0.1), lr after 3 scheduler steps
  // = 0.1 + 0.9 * (1 + cos(0.3 pi)) / 2 = 0.8145033635316129
  EXPECT_NEAR(cos.lr(3, 1.0), 0.8145033635316129, 1e-12);
}

TEST(Schedule, WarmupThenCosineAndResume) {
  LinearWarmup sched(4, std::make_shared<CosineAnnealingLR>(8));
  EXPECT_DOUBLE_EQ(sched.lr(0, 2.0), 0.5);
  EXPECT_DOUBLE_EQ(sched.lr(3, 2.0), 2.0);
  EXPECT_DOUBLE_EQ(sched.lr(4, 2.0), 2.0);
  EXPECT_NEAR(sched.lr(8, 2.0), 1.0, 1e-12);
  EXPECT_NEAR(sched.lr(12, 2.0), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(LinearWarmup(2).lr(5, 3.0), 3.0);
  // apply() scales the optimiser's initial lr, so a resumed run sets the same rate.
  Tensor w = ones({1}).requires_grad_();
  SGD opt({w}, 2.0);
  sched.apply(opt, 6);
  double lr6 = opt.lr();
  sched.apply(opt, 1);
  sched.apply(opt, 6);
  EXPECT_DOUBLE_EQ(opt.lr(), lr6);
  EXPECT_DOUBLE_EQ(opt.initial_lr(), 2.0);
}

// warmup_cosine against the lr_at each trainer had before (apps/lm_train.cpp and
// apps/mt_train.cpp, the same formula): every step of the default runs of `train lm`
// (1000 steps, warmup 100, lr 1e-3, min_lr_ratio 0.1) and `train mt` (4000, 400, 2e-3,
// 0.05), and of two short ones. The closed forms round the cosine's argument differently
// (torch's pi step / T against pi (step / T)): up to 1.5e-15 relative apart (about 7 double
// ulps, in a quarter of the steps) and equal once rounded to f32.
TEST(Schedule, WarmupCosineIsTheTrainersOldSchedule) {
  struct Run {
    int64_t steps, warmup;
    double lr, min_ratio;
  };
  for (Run r : {Run{1000, 100, 1e-3, 0.1}, Run{4000, 400, 2e-3, 0.05}, Run{8, 1, 3e-3, 0.1}, Run{5, 5, 1e-3, 0.1}}) {
    auto old_lr_at = [&](int64_t step) {
      if (step < r.warmup) return r.lr * double(step + 1) / double(r.warmup);
      double t = r.steps > r.warmup ? double(step - r.warmup) / double(r.steps - r.warmup) : 1.0;
      double lo = r.lr * r.min_ratio;
      return lo + 0.5 * (r.lr - lo) * (1.0 + std::cos(M_PI * std::min(1.0, t)));
    };
    LinearWarmup sched = warmup_cosine(r.warmup, r.steps, r.lr * r.min_ratio);
    for (int64_t step = 0; step < r.steps; ++step) {
      EXPECT_NEAR(sched.lr(step, r.lr) / old_lr_at(step), 1.0, 2e-15) << r.steps << " steps, step " << step;
      EXPECT_EQ(float(sched.lr(step, r.lr)), float(old_lr_at(step))) << r.steps << " steps, step " << step;
    }
  }
}

// Linear-ReLU-Linear learns XOR with AdamW and mse = mean(square(y - t)).
TEST(Optim, MLPLearnsXor) {
  Generator gen(42);
  nn::Sequential mlp({std::make_shared<nn::Linear>(2, 16, true, gen), std::make_shared<nn::ReLU>(),
                      std::make_shared<nn::Linear>(16, 1, true, gen)});
  Tensor x = from_vector({0, 0, 0, 1, 1, 0, 1, 1}, {4, 2});
  Tensor t = from_vector({0, 1, 1, 0}, {4, 1});
  AdamW opt(mlp.parameters(), 0.05, {0.9, 0.999}, 1e-8, 1e-4);
  double first = 0, loss_v = 0;
  for (int s = 0; s < 300; ++s) {
    opt.zero_grad();
    Tensor loss = mean(square(mlp(x) - t));
    if (s == 0) first = loss.item();
    loss_v = loss.item();
    loss.backward();
    opt.step();
  }
  EXPECT_GT(first, 0.1);
  EXPECT_LT(loss_v, 1e-3) << "first loss " << first;
  NoGrad ng;
  auto y = mlp(x).to_vector();
  EXPECT_LT(y[0], 0.2);
  EXPECT_GT(y[1], 0.8);
  EXPECT_GT(y[2], 0.8);
  EXPECT_LT(y[3], 0.2);
}
