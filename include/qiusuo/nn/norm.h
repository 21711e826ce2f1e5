// Normalisation and regularisation layers: BatchNorm1d/2d/3d, LayerNorm, RMSNorm,
// Dropout (torch.nn names and defaults).
#pragma once
#include "qiusuo/nn/module.h"

namespace qs::nn {

// Batch normalisation over [N, C, ...] (1d: [N, C] or [N, C, L]; 2d: [N, C, H, W];
// 3d: [N, C, D, H, W]). Parameters weight = 1, bias = 0 [C] (when affine); buffers
// running_mean = 0, running_var = 1 [C] and num_batches_tracked (i64 scalar), named as
// in PyTorch so state dicts exchange with it. Training normalises with batch
// statistics and updates the running ones; eval uses the running ones.
class BatchNorm : public Module {
 public:
  BatchNorm(int spatial_dims, int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true);
  Tensor forward(const Tensor& x) override;
  // relu(forward(x)) as one fused op (batch_norm_relu): what a BatchNorm followed by a
  // ReLU computes, with one pass over the activations instead of two.
  Tensor forward_relu(const Tensor& x);
  std::string extra_repr() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  const Tensor& running_mean() const { return running_mean_; }
  const Tensor& running_var() const { return running_var_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  int spatial_dims() const { return dims_; }
  // Sync batch norm (torch's SyncBatchNorm): in a data-parallel job, training-mode
  // statistics over the global batch (every rank's samples) instead of this rank's, so
  // that N ranks train as one process with N times the batch. Composed from ops around
  // dist::all_reduce (two all-reduces per layer and step, forward and backward), slower
  // than the fused op, which still runs with one rank, in evaluation, or when off.
  void set_sync(bool on) { sync_ = on; }
  bool sync() const { return sync_; }

 private:
  Tensor normalise(const Tensor& x, bool relu);
  Tensor normalise_synced(const Tensor& x, bool relu);
  bool sync_ = false;
  int dims_;
  int64_t c_;
  double eps_, momentum_;
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};
// Turns sync on (or off) in every BatchNorm of `m`; returns how many.
int set_sync_batch_norm(Module& m, bool on = true);

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t c, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm(1, c, eps, momentum, affine) {}
};
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t c, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm(2, c, eps, momentum, affine) {}
};
class BatchNorm3d : public BatchNorm {
 public:
  explicit BatchNorm3d(int64_t c, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm(3, c, eps, momentum, affine) {}
};

// Layer normalisation over the trailing `normalized_shape` dims; weight = 1, bias = 0.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Shape shape_;
  double eps_;
  Tensor weight_, bias_;
};

// Root-mean-square normalisation (Zhang & Sennrich 2019); weight = 1.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(Shape normalized_shape, double eps = 1e-6, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const Tensor& weight() const { return weight_; }

 private:
  Shape shape_;
  double eps_;
  Tensor weight_;
};

// Zeroes elements with probability p in training (scaling the rest by 1/(1-p)); the
// identity in eval. Draws from `gen` (default: the program's generator).
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  double p_;
  Generator* gen_;
};

}  // namespace qs::nn
