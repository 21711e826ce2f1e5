// What every trainer checks of each step's loss (issue 19: `--lr inf` used to train to the
// end and write NaN checkpoints with exit 0), of what it resumes, and its claim on --out.
#pragma once
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>
#include <string>

#include <memory>

#include "qiusuo/dist/dist.h"
#include "qiusuo/error.h"
#include "qiusuo/io/out_dir.h"
#include "qiusuo/nn/module.h"
#include "qiusuo/nn/norm.h"

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

// A resumed checkpoint's step must lie within the run: a negative one, or one past the
// run's last step, is a damaged or foreign checkpoint (issue 19: -7 was accepted).
inline void check_resume_step(const char* job, const std::string& path, int64_t step, int64_t total) {
  if (step < 0 || step > total)
    QS_FAIL("{}: {} is at step {}, outside this run's 0..{} steps; hint: resume a checkpoint of this run, or give "
            "the run more steps",
            job, path, step, total);
}

// A checkpoint written by a data-parallel run of `saved` ranks resumes only with as many:
// the global batch, the samples each step drew and the schedule's steps depend on it.
inline void check_resume_world(const char* job, const std::string& path, int64_t saved) {
  if (saved == dist::world_size()) return;
  QS_FAIL("{}: {} was written by a run of {} rank(s), this one has {}; an exact resume needs the same number of ranks "
          "(the global batch is --batch times the ranks); hint: mpirun -np {} ...",
          job, path, saved, dist::world_size(), saved);
}

// A trainer's data-parallel set-up (docs/distributed.md), null with one rank. Every rank
// must have been started with the same command: its training settings (`config`), what it
// resumes and where it writes are compared by hash first. sync_bn: batch norms take their
// statistics over every rank's samples.
inline std::unique_ptr<dist::DistributedDataParallel> data_parallel(nn::Module& model, const nlohmann::json& config,
                                                                    const std::string& resume, const std::string& out,
                                                                    bool sync_bn = false) {
  nn::set_sync_batch_norm(model, sync_bn);
  if (!dist::active()) return nullptr;
  dist::check_same("the training settings", nlohmann::json{{"config", config}, {"resume", resume}, {"out", out}}.dump());
  return std::make_unique<dist::DistributedDataParallel>(model.named_parameters(), model.buffers());
}

// The output folder's claim (io::OutDirLock), taken by the rank that writes (null on the
// others, and without a folder): a second run on the folder fails at once, and temporary
// files that an interrupted run left there are removed (and said so on stderr).
inline std::unique_ptr<io::OutDirLock> claim_out_dir(const std::string& job, const std::string& out) {
  if (out.empty() || !dist::is_main()) return nullptr;
  auto lock = std::make_unique<io::OutDirLock>(out, job);
  if (!lock->removed().empty())
    std::cerr << fmt::format("{}: removed {} temporary file(s) an interrupted run left in {}\n", job,
                             lock->removed().size(), out);
  return lock;
}

}  // namespace qs::apps
