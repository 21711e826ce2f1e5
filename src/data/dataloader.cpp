#include "qiusuo/data/dataloader.h"

#include <cstring>
#include <numeric>

#include "qiusuo/dist/dist.h"

namespace qs::data {

namespace {
Tensor contiguous_detached(const Tensor& t) {
  Tensor d = t.detach();
  if (d.is_contiguous()) return d;
  Tensor c = empty(d.shape(), d.dtype());
  c.copy_(d);
  return c;
}

// Rows `idx` of a contiguous tensor, stacked: [idx.size(), t.shape()[1:]...].
Tensor gather_rows(const Tensor& t, const std::vector<int64_t>& idx) {
  Shape shape = t.shape();
  int64_t n = shape[0];
  shape[0] = int64_t(idx.size());
  Tensor out = empty(shape, t.dtype());
  size_t row = n == 0 ? 0 : size_t(t.numel() / n) * t.element_size();
  const char* src = static_cast<const char*>(t.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (size_t i = 0; i < idx.size(); ++i) {
    QS_CHECK(idx[i] >= 0 && idx[i] < n, "TensorDataset: expected an index in [0, {}), found {}", n, idx[i]);
    std::memcpy(dst + i * row, src + size_t(idx[i]) * row, row);
  }
  return out;
}
}  // namespace

TensorDataset::TensorDataset(const Tensor& features, const Tensor& labels) {
  QS_CHECK(features.defined() && labels.defined(), "TensorDataset: expected defined tensors");
  QS_CHECK(features.dim() >= 1 && labels.dim() >= 1,
           "TensorDataset: expected tensors with a sample dimension, found shapes {} and {}",
           shape_str(features.shape()), shape_str(labels.shape()));
  QS_CHECK(features.size(0) == labels.size(0),
           "TensorDataset: expected as many labels as samples, found features {} and labels {}",
           shape_str(features.shape()), shape_str(labels.shape()));
  x_ = contiguous_detached(features);
  y_ = contiguous_detached(labels);
}

Batch TensorDataset::get_batch(const std::vector<int64_t>& indices) const {
  return {gather_rows(x_, indices), gather_rows(y_, indices)};
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, int64_t batch_size, bool shuffle,
                       uint64_t seed, bool drop_last, bool prefetch)
    : dataset_(std::move(dataset)), batch_size_(batch_size), shuffle_(shuffle),
      drop_last_(drop_last), prefetch_(prefetch), seed_(seed) {
  QS_CHECK(dataset_ != nullptr, "DataLoader: expected a dataset, found null");
  QS_CHECK(batch_size >= 1, "DataLoader: expected batch_size >= 1, found {}", batch_size);
}

DataLoader::DataLoader(const TensorDataset& dataset, int64_t batch_size, bool shuffle, uint64_t seed,
                       bool drop_last, bool prefetch)
    : DataLoader(std::make_shared<TensorDataset>(dataset), batch_size, shuffle, seed, drop_last,
                 prefetch) {}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = dataset_->size(), g = batch_size_ * world_;
  if (drop_last_) return n / g;
  int64_t full = n / g, rest = n % g;
  return full + (rest >= world_ ? 1 : 0);  // a rest smaller than the world is dropped (see shard)
}

void DataLoader::shard(int rank, int world) {
  QS_CHECK(world >= 1 && rank >= 0 && rank < world, "DataLoader::shard: rank {} is not in [0, {})", rank, world);
  stop_worker();
  running_ = false;
  rank_ = rank;
  world_ = world;
}

int64_t DataLoader::global_batch_size(int64_t b) const {
  const int64_t g = batch_size_ * world_;
  return std::min<int64_t>(g, dataset_->size() - b * g);
}

std::vector<int64_t> DataLoader::epoch_order(int64_t e) const {
  std::vector<int64_t> order(size_t(dataset_->size()));
  std::iota(order.begin(), order.end(), 0);
  if (!shuffle_) return order;
  Generator g(seed_ + uint64_t(e));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[g.next_u64() % i]);  // Fisher-Yates
  return order;
}

void DataLoader::set_epoch(int64_t epoch, int64_t start_batch) {
  QS_CHECK(epoch >= 0, "DataLoader::set_epoch: expected epoch >= 0, found {}", epoch);
  QS_CHECK(start_batch >= 0 && start_batch <= num_batches(),
           "DataLoader::set_epoch: expected start_batch in [0, {}], found {}", num_batches(), start_batch);
  stop_worker();
  running_ = false;
  epoch_ = epoch;
  next_batch_ = start_batch;
}

Batch DataLoader::make_batch(int64_t b) const {
  const int64_t g = batch_size_ * world_;
  const int64_t first = b * g, m = std::min<int64_t>(g, int64_t(order_.size()) - first);
  const dist::Share mine = dist::share_of(m, rank_, world_);
  const int64_t begin = first + mine.begin, end = begin + mine.count;
  return dataset_->get_batch(std::vector<int64_t>(order_.begin() + begin, order_.begin() + end));
}

void DataLoader::start_epoch() {
  order_ = epoch_order(epoch_);
  running_ = true;
  if (prefetch_ && next_batch_ < num_batches()) worker_ = std::thread(&DataLoader::worker_loop, this, next_batch_);
}

void DataLoader::worker_loop(int64_t first) {
  int64_t last = num_batches();
  for (int64_t b = first; b < last; ++b) {
    Item item;
    try {
      item.batch = make_batch(b);
    } catch (...) {
      item.error = std::current_exception();
    }
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return stop_ || queue_.size() < kQueue; });
    if (stop_) return;
    bool failed = item.error != nullptr;
    queue_.push_back(std::move(item));
    cv_.notify_all();
    if (failed) return;
  }
}

void DataLoader::stop_worker() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lk(mu_);
  queue_.clear();
  stop_ = false;
}

std::optional<Batch> DataLoader::next() {
  if (!running_) start_epoch();
  if (next_batch_ >= num_batches()) {
    stop_worker();
    running_ = false;
    ++epoch_;
    next_batch_ = 0;
    return std::nullopt;
  }
  Item item;
  if (prefetch_) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return !queue_.empty(); });
    item = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
  } else {
    try {
      item.batch = make_batch(next_batch_);
    } catch (...) {
      item.error = std::current_exception();
    }
  }
  if (item.error) {
    stop_worker();
    running_ = false;  // the next call restarts the epoch at this batch
    std::rethrow_exception(item.error);
  }
  ++next_batch_;
  return std::move(item.batch);
}

}  // namespace qs::data
