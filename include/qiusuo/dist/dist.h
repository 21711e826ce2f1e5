// Data-parallel training on MPI: the process group, a few collectives, and
// DistributedDataParallel, which averages gradients across ranks in buckets that are
// all-reduced while backward is still running.
//
//   mpirun -np 2 qiusuo train lm ...       // every trainer; nothing else changes
//
//   dist::init();                          // main() does this; single process without a launcher
//   dist::DistributedDataParallel ddp(model.named_parameters(), model.buffers());
//   for (...) {
//     opt.zero_grad();
//     loss.backward();                     // buckets all-reduce as their gradients arrive
//     ddp.finish();                        // waits; every .grad is now the mean over ranks
//     opt.step();
//   }
//
// Started by `mpirun` (Open MPI's OMPI_COMM_WORLD_* variables, or a PMI launcher's), init()
// loads MPI from the plugin libqiusuo_mpi.so; without a launcher qiusuo is one process of
// one and never touches MPI. Collectives run on one communication thread in the order they
// were asked for, which must be the same on every rank: every rank runs the same graph (a
// collective inside forward or backward, as sync batch norm's, meets the gradient buckets
// in the same order everywhere). Every wait has a deadline
// (QS_DIST_TIMEOUT seconds, 300 by default): a rank that stopped answering ends the whole
// job with a message naming what was awaited, never a hang.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::dist {

// What the environment says about how this process was started.
struct Launch {
  bool by_launcher = false;  // an MPI launcher's variables are set
  int rank = 0, size = 1;
  int local_size = 1;        // ranks on this machine
  std::string source;        // which variables said so ("OMPI_COMM_WORLD_SIZE", ...)
};
Launch detect_launch();

// Under a launcher: loads MPI, starts the communication thread and checks that MPI agrees
// with the launcher about rank and size; unless --threads says otherwise, the cores are
// shared among this machine's ranks. Without one: nothing. Idempotent. Errors: MPI cannot
// be loaded or initialised (message names the plugin and the loader's reason).
void init();
// These four read the launcher's variables only (no MPI is loaded for them).
int rank();
int world_size();
bool active();   // more than one rank
bool is_main();  // rank 0: the one that logs and writes files
std::string mpi_library();  // the MPI library's version text, empty without MPI

// At the end of a run: MPI_Finalize (a collective: every rank must get here). Idempotent.
void finalize();
// Ends every rank of the job with `code` (MPI_Abort); single process: std::exit(code).
[[noreturn]] void abort_job(int code);

// ---- collectives: blocking, with the deadline; identity with one rank
double all_reduce_sum(double v);
void all_reduce_sum(std::vector<double>& v);
void all_reduce_max(std::vector<int64_t>& v);
// Rank `root`'s bytes of each tensor (contiguous, same shape and dtype on every rank).
void broadcast(const std::vector<Tensor>& tensors, int root = 0);
std::vector<uint64_t> all_gather(uint64_t v);
// In place, over a contiguous f32 or f64 tensor; not recorded by autograd.
void all_reduce_sum_inplace(const Tensor& t);
// The sum of x over the ranks, as an op (all_reduce in the op table): differentiable, its
// gradient the sum of the ranks' gradients. What sync batch norm is composed from.
Tensor all_reduce(const Tensor& x);
void barrier();
// Every rank must hold the same `value` (hashed and gathered): otherwise an error naming
// `what` and the ranks that differ from rank 0.
void check_same(const std::string& what, const std::string& value);

// ---- data parallelism
// Rank `r` of `world`'s contiguous part of m samples: [m r / world, m (r + 1) / world), as
// even as integers allow. DataLoader::shard and the trainers that sample their own
// batches split a global batch with it.
struct Share {
  int64_t begin = 0, count = 0;
};
inline Share share_of(int64_t m, int r, int world) {
  const int64_t b = m * r / world, e = m * (r + 1) / world;
  return {b, e - b};
}

struct DdpOptions {
  int64_t bucket_bytes = int64_t(25) << 20;  // PyTorch's default; QS_DDP_BUCKET_MB overrides
};

// One step's timeline, for the overlap measurement: milliseconds since the step's first
// gradient arrived.
struct BucketTrace {
  int64_t bytes = 0;
  double launched_ms = 0;   // queued for all-reduce
  double started_ms = 0;    // the communication thread began it
  double done_ms = 0;       // finished on this rank
};
struct StepTrace {
  std::vector<BucketTrace> buckets;
  double backward_end_ms = 0;  // finish() was called
  double finish_end_ms = 0;    // finish() returned
};

class DistributedDataParallel {
 public:
  // Broadcasts rank 0's parameters and buffers, so every rank starts from the same model,
  // and registers a gradient hook on each parameter (f32 only). Parameters are bucketed in
  // the reverse of their order (roughly the order backward produces them); after the first
  // step, buckets are rebuilt in the order rank 0 saw gradients arrive.
  DistributedDataParallel(const std::vector<std::pair<std::string, Tensor>>& named_parameters,
                          const std::vector<Tensor>& buffers = {}, DdpOptions options = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  // Waits for every bucket; each parameter's .grad becomes the mean of the ranks'
  // gradients (undefined only where no rank had one). Call after backward, before the
  // optimiser. With one rank it does nothing. When a global batch does not split evenly,
  // scale each rank's loss by its share (local count × world size / global count) before
  // backward: the mean is then the global batch's, also through sync batch norm, whose
  // gradients cross ranks.
  void finish();

  // While alive, backward accumulates gradients locally (gradient accumulation); the
  // backward after it ends synchronises the sum.
  class NoSync {
   public:
    explicit NoSync(DistributedDataParallel& d);
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& d_;
    bool prev_;
  };

  int num_buckets() const;
  const StepTrace& last_trace() const;

  struct Reducer;

 private:
  std::shared_ptr<Reducer> r_;
};

}  // namespace qs::dist
