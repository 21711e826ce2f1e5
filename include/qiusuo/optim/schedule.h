// Learning-rate schedules. Each is a pure function of the step (0-based count of
// optimizer steps taken) and the base learning rate, so resuming at step s gives
// exactly the rate an uninterrupted run would have: call apply(opt, s) before step s.
#pragma once
#include <memory>

#include "qiusuo/optim/optim.h"

namespace qs::optim {

class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual double lr(int64_t step, double base_lr) const = 0;
  // Sets opt's lr for `step` from its initial (constructor) lr.
  void apply(Optimizer& opt, int64_t step) const { opt.set_lr(lr(step, opt.initial_lr())); }
};

// base_lr * gamma^floor(step / step_size)   (torch StepLR)
class StepLR : public Schedule {
 public:
  explicit StepLR(int64_t step_size, double gamma = 0.1);
  double lr(int64_t step, double base_lr) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// eta_min + (base_lr - eta_min) (1 + cos(pi step / T_max)) / 2   (torch's closed form;
// past T_max it continues the cosine, as torch does)
class CosineAnnealingLR : public Schedule {
 public:
  explicit CosineAnnealingLR(int64_t T_max, double eta_min = 0.0);
  double lr(int64_t step, double base_lr) const override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// Steps 0 .. warmup_steps-1: base_lr * (step + 1) / warmup_steps (ramping up to base_lr);
// afterwards then->lr(step - warmup_steps, base_lr), or base_lr without `then`.
// Warm-up then cosine: LinearWarmup(100, std::make_shared<CosineAnnealingLR>(total - 100)).
class LinearWarmup : public Schedule {
 public:
  explicit LinearWarmup(int64_t warmup_steps, std::shared_ptr<const Schedule> then = nullptr);
  double lr(int64_t step, double base_lr) const override;

 private:
  int64_t warmup_;
  std::shared_ptr<const Schedule> then_;
};

// The trainers' schedule (`qiusuo train lm`, `train mt`): LinearWarmup over `warmup` steps, then
// CosineAnnealingLR from base_lr down to eta_min over the remaining total - warmup steps
// (eta_min is reached at step `total`, one past the last step). total <= warmup: warm-up only.
LinearWarmup warmup_cosine(int64_t warmup, int64_t total, double eta_min);

}  // namespace qs::optim
