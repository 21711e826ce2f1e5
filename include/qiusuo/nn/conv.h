// Convolution and pooling layers (torch.nn.Conv1d/2d/3d, MaxPool2d/3d, AvgPool2d/3d,
// AdaptiveAvgPool1d/2d/3d). Inputs are NC(D)(H)W; see the functional ops in ops.h for
// the output-size formula and the errors.
#pragma once
#include "qiusuo/nn/module.h"
#include "qiusuo/ops.h"

namespace qs::nn {

struct ConvOptions {
  SizeArg stride = 1;
  SizeArg padding = 0;
  SizeArg dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// weight [out, in / groups, k...], bias [out]. Init as PyTorch: weight
// kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
// fan_in = in / groups * prod(k); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class ConvNd : public Module {
 public:
  ConvNd(int spatial_dims, int64_t in_channels, int64_t out_channels, SizeArg kernel_size, ConvOptions opt,
         Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  const ConvOptions& options() const { return opt_; }

 private:
  int dims_;
  int64_t in_, out_;
  std::vector<int64_t> kernel_;
  ConvOptions opt_;
  Tensor weight_, bias_;
};

class Conv1d : public ConvNd {
 public:
  Conv1d(int64_t in, int64_t out, SizeArg k, ConvOptions opt = {}, Generator& gen = default_generator())
      : ConvNd(1, in, out, std::move(k), std::move(opt), gen) {}
};
class Conv2d : public ConvNd {
 public:
  Conv2d(int64_t in, int64_t out, SizeArg k, ConvOptions opt = {}, Generator& gen = default_generator())
      : ConvNd(2, in, out, std::move(k), std::move(opt), gen) {}
};
class Conv3d : public ConvNd {
 public:
  Conv3d(int64_t in, int64_t out, SizeArg k, ConvOptions opt = {}, Generator& gen = default_generator())
      : ConvNd(3, in, out, std::move(k), std::move(opt), gen) {}
};

// Max / average pooling over 2 or 3 spatial dims; stride defaults to the kernel.
class MaxPool : public Module {
 public:
  MaxPool(int spatial_dims, SizeArg kernel, SizeArg stride = {}, SizeArg padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  int dims_;
  SizeArg kernel_, stride_, padding_;
};
class MaxPool2d : public MaxPool {
 public:
  explicit MaxPool2d(SizeArg k, SizeArg s = {}, SizeArg p = 0) : MaxPool(2, std::move(k), std::move(s), std::move(p)) {}
};
class MaxPool3d : public MaxPool {
 public:
  explicit MaxPool3d(SizeArg k, SizeArg s = {}, SizeArg p = 0) : MaxPool(3, std::move(k), std::move(s), std::move(p)) {}
};

class AvgPool : public Module {
 public:
  AvgPool(int spatial_dims, SizeArg kernel, SizeArg stride = {}, SizeArg padding = 0, bool count_include_pad = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  int dims_;
  SizeArg kernel_, stride_, padding_;
  bool count_include_pad_;
};
class AvgPool2d : public AvgPool {
 public:
  explicit AvgPool2d(SizeArg k, SizeArg s = {}, SizeArg p = 0) : AvgPool(2, std::move(k), std::move(s), std::move(p)) {}
};
class AvgPool3d : public AvgPool {
 public:
  explicit AvgPool3d(SizeArg k, SizeArg s = {}, SizeArg p = 0) : AvgPool(3, std::move(k), std::move(s), std::move(p)) {}
};

class AdaptiveAvgPool : public Module {
 public:
  AdaptiveAvgPool(int spatial_dims, SizeArg output_size);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  int dims_;
  SizeArg out_;
};
class AdaptiveAvgPool1d : public AdaptiveAvgPool {
 public:
  explicit AdaptiveAvgPool1d(SizeArg o) : AdaptiveAvgPool(1, std::move(o)) {}
};
class AdaptiveAvgPool2d : public AdaptiveAvgPool {
 public:
  explicit AdaptiveAvgPool2d(SizeArg o) : AdaptiveAvgPool(2, std::move(o)) {}
};
class AdaptiveAvgPool3d : public AdaptiveAvgPool {
 public:
  explicit AdaptiveAvgPool3d(SizeArg o) : AdaptiveAvgPool(3, std::move(o)) {}
};

}  // namespace qs::nn
