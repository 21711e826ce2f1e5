// Learning-rate schedules as closed-form functions of the step.
#include "qiusuo/optim/schedule.h"

#include <cmath>
#include <numbers>

namespace qs::optim {

StepLR::StepLR(int64_t step_size, double gamma) : step_size_(step_size), gamma_(gamma) {
  QS_CHECK(step_size > 0, "StepLR: step_size must be positive, got {}", step_size);
}
double StepLR::lr(int64_t step, double base_lr) const {
  QS_CHECK(step >= 0, "StepLR: step must be >= 0, got {}", step);
  return base_lr * std::pow(gamma_, double(step / step_size_));
}

CosineAnnealingLR::CosineAnnealingLR(int64_t T_max, double eta_min) : t_max_(T_max), eta_min_(eta_min) {
  QS_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be positive, got {}", T_max);
}
double CosineAnnealingLR::lr(int64_t step, double base_lr) const {
  QS_CHECK(step >= 0, "CosineAnnealingLR: step must be >= 0, got {}", step);
  return eta_min_ + (base_lr - eta_min_) * (1 + std::cos(std::numbers::pi * double(step) / double(t_max_))) / 2;
}

LinearWarmup::LinearWarmup(int64_t warmup_steps, std::shared_ptr<const Schedule> then)
    : warmup_(warmup_steps), then_(std::move(then)) {
  QS_CHECK(warmup_steps >= 0, "LinearWarmup: warmup_steps must be >= 0, got {}", warmup_steps);
}
double LinearWarmup::lr(int64_t step, double base_lr) const {
  QS_CHECK(step >= 0, "LinearWarmup: step must be >= 0, got {}", step);
  if (step < warmup_) return base_lr * double(step + 1) / double(warmup_);
  return then_ ? then_->lr(step - warmup_, base_lr) : base_lr;
}

LinearWarmup warmup_cosine(int64_t warmup, int64_t total, double eta_min) {
  if (total <= warmup) return LinearWarmup(warmup);
  return LinearWarmup(warmup, std::make_shared<CosineAnnealingLR>(total - warmup, eta_min));
}

}  // namespace qs::optim
