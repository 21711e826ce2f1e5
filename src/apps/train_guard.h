// What every trainer checks of each step's loss (issue 19: `--lr inf` used to train to the
// end and write NaN checkpoints with exit 0).
#pragma once
#include <fmt/format.h>

#include <cmath>

#include "qiusuo/error.h"

namespace qs::apps {

// Throws when the loss of `step` is NaN or infinite, before its gradients touch the
// parameters: the checkpoints written so far stay the last good state.
inline void check_loss_finite(const char* job, double loss, int64_t step, double lr) {
  if (std::isfinite(loss)) return;
  QS_FAIL("{}: the training loss is {} at step {} (learning rate {}): the model diverged; stopped before this step "
          "changed the weights, so the checkpoints written so far are the last good ones; hint: a lower --lr, or "
          "--grad-clip where the trainer has it",
          job, loss, step, lr);
}

}  // namespace qs::apps
