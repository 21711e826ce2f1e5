// Datasets and a DataLoader with seeded per-epoch shuffling, exact resume and a
// background prefetch thread.
//
//   data::TensorDataset ds(images, labels);
//   data::DataLoader loader(ds, 64, /*shuffle=*/true, /*seed=*/1);
//   for (int e = 0; e < epochs; ++e)
//     for (auto& [x, y] : loader) { ... }            // one epoch per loop
//
// Resume: save (loader.epoch(), loader.batch_index()) with the checkpoint, then
// loader.set_epoch(epoch, batch) replays exactly the remaining batches.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::data {

struct Batch {
  Tensor x;  // [B, ...features]
  Tensor y;  // [B, ...labels]
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The samples at `indices` (each in [0, size())) stacked along a new first dim.
  // Called from the prefetch thread: must not mutate shared state.
  virtual Batch get_batch(const std::vector<int64_t>& indices) const = 0;
};

// Rows of two tensors sharing their first dimension (kept as contiguous, detached
// copies or aliases). Any dtype. Errors: undefined or 0-dim tensors, first dims differ.
class TensorDataset : public Dataset {
 public:
  TensorDataset(const Tensor& features, const Tensor& labels);
  int64_t size() const override { return x_.size(0); }
  Batch get_batch(const std::vector<int64_t>& indices) const override;  // errors: index out of range
  const Tensor& features() const { return x_; }
  const Tensor& labels() const { return y_; }

 private:
  Tensor x_, y_;
};

class DataLoader {
 public:
  // batch_size >= 1. Epoch e visits the samples in order, or (shuffle) in a permutation
  // drawn from Generator(seed + e), so any epoch can be reproduced on its own.
  // drop_last drops a final short batch. prefetch builds up to 2 batches ahead on a
  // background thread; results are identical with and without it.
  DataLoader(std::shared_ptr<const Dataset> dataset, int64_t batch_size, bool shuffle = false,
             uint64_t seed = 0, bool drop_last = false, bool prefetch = true);
  DataLoader(const TensorDataset& dataset, int64_t batch_size, bool shuffle = false,
             uint64_t seed = 0, bool drop_last = false, bool prefetch = true);
  ~DataLoader();  // stops and joins the prefetch thread, even mid-epoch
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_batches() const;  // per epoch
  int64_t epoch() const { return epoch_; }              // the epoch running (or next to run)
  int64_t batch_index() const { return next_batch_; }  // index in it of the next batch

  // Makes the next batch be batch `start_batch` of epoch `epoch` (abandoning any epoch
  // in progress). Errors: epoch < 0, start_batch outside [0, num_batches()].
  void set_epoch(int64_t epoch, int64_t start_batch = 0);

  // The next batch of the current epoch (starting it if needed), or nullopt at its
  // end, after which epoch() has advanced and the next call starts the next epoch.
  // An exception thrown by the dataset (also on the prefetch thread) is re-thrown
  // here; the failed batch is retried by the next call.
  std::optional<Batch> next();

  // The sample order of epoch e (identity when not shuffling).
  std::vector<int64_t> epoch_order(int64_t e) const;

  // Data parallelism (a distributed sampler): every rank draws the same epoch order; batch
  // b is the same batch_size × world samples of it that one process with that batch size
  // would take, and this rank gets its contiguous part of them, split as evenly as
  // possible. A final global batch of fewer than `world` samples is dropped, so that no
  // rank is left without one. Call before the first batch. Errors: rank outside [0, world).
  void shard(int rank, int world);
  int world() const { return world_; }
  // Samples in global batch b, over all ranks; with its rank's own count this gives the
  // rank's share, by which a trainer scales its loss (DistributedDataParallel::finish).
  int64_t global_batch_size(int64_t b) const;

  class Iterator {
   public:
    Iterator(DataLoader* dl, std::optional<Batch> cur) : dl_(dl), cur_(std::move(cur)) {}
    Batch& operator*() { return *cur_; }
    Iterator& operator++() {
      cur_ = dl_->next();
      return *this;
    }
    bool operator!=(const Iterator& o) const { return cur_.has_value() != o.cur_.has_value(); }

   private:
    DataLoader* dl_;
    std::optional<Batch> cur_;
  };
  // Runs the rest of the current epoch (all of it when none is in progress).
  Iterator begin() { return Iterator(this, next()); }
  Iterator end() { return Iterator(this, std::nullopt); }

 private:
  struct Item {
    Batch batch;
    std::exception_ptr error;
  };
  void start_epoch();
  void stop_worker();
  void worker_loop(int64_t first);
  Batch make_batch(int64_t b) const;

  std::shared_ptr<const Dataset> dataset_;
  int64_t batch_size_;
  int rank_ = 0, world_ = 1;
  bool shuffle_, drop_last_, prefetch_;
  uint64_t seed_;
  int64_t epoch_ = 0, next_batch_ = 0;
  bool running_ = false;
  std::vector<int64_t> order_;  // of the running epoch

  // Prefetch: the worker fills queue_ (at most kQueue items) in batch order.
  static constexpr size_t kQueue = 2;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
};

}  // namespace qs::data
