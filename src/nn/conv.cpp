#include "qiusuo/nn/conv.h"

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/init.h"

namespace qs::nn {

namespace {
std::string list_str(const SizeArg& a) {
  if (a.v.size() == 1) return std::to_string(a.v[0]);
  return shape_str(a.v);
}
const char* conv_type(int d) { return d == 1 ? "Conv1d" : d == 2 ? "Conv2d" : "Conv3d"; }
}  // namespace

ConvNd::ConvNd(int spatial_dims, int64_t in_channels, int64_t out_channels, SizeArg kernel_size, ConvOptions opt,
               Generator& gen)
    : Module(conv_type(spatial_dims)), dims_(spatial_dims), in_(in_channels), out_(out_channels), opt_(std::move(opt)) {
  QS_CHECK(in_ > 0 && out_ > 0, "{}: channel counts must be positive, got in={} out={}", type_name(), in_, out_);
  QS_CHECK(opt_.groups >= 1 && in_ % opt_.groups == 0 && out_ % opt_.groups == 0,
           "{}: groups={} must divide in_channels={} and out_channels={}", type_name(), opt_.groups, in_, out_);
  kernel_ = kernel_size.v;
  if (kernel_.size() == 1) kernel_.assign(size_t(dims_), kernel_[0]);
  QS_CHECK(int(kernel_.size()) == dims_, "{}: kernel_size {} needs {} values", type_name(), shape_str(kernel_), dims_);
  Shape wshape = {out_, in_ / opt_.groups};
  wshape.insert(wshape.end(), kernel_.begin(), kernel_.end());
  NoGrad ng;
  weight_ = register_parameter("weight", empty(wshape));
  init::kaiming_uniform_(weight_, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
  if (opt_.bias) {
    int64_t fan_in = init::calculate_fan_in_and_fan_out(weight_).first;
    double bound = 1.0 / std::sqrt(double(fan_in));
    bias_ = register_parameter("bias", empty({out_}));
    init::uniform_(bias_, -bound, bound, gen);
  }
}

Tensor ConvNd::forward(const Tensor& x) {
  ModuleScope scope(*this);
  switch (dims_) {
    case 1: return conv1d(x, weight_, bias_, opt_.stride, opt_.padding, opt_.dilation, opt_.groups);
    case 2: return conv2d(x, weight_, bias_, opt_.stride, opt_.padding, opt_.dilation, opt_.groups);
    default: return conv3d(x, weight_, bias_, opt_.stride, opt_.padding, opt_.dilation, opt_.groups);
  }
}

std::string ConvNd::extra_repr() const {
  std::string s = fmt::format("{}, {}, kernel_size={}, stride={}", in_, out_, shape_str(kernel_), list_str(opt_.stride));
  if (!opt_.padding.v.empty() && opt_.padding.v != std::vector<int64_t>{0}) s += ", padding=" + list_str(opt_.padding);
  if (!opt_.dilation.v.empty() && opt_.dilation.v != std::vector<int64_t>{1}) s += ", dilation=" + list_str(opt_.dilation);
  if (opt_.groups != 1) s += fmt::format(", groups={}", opt_.groups);
  if (!opt_.bias) s += ", bias=False";
  return s;
}

MaxPool::MaxPool(int spatial_dims, SizeArg kernel, SizeArg stride, SizeArg padding)
    : Module(spatial_dims == 2 ? "MaxPool2d" : "MaxPool3d"), dims_(spatial_dims), kernel_(std::move(kernel)),
      stride_(std::move(stride)), padding_(std::move(padding)) {}
Tensor MaxPool::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return dims_ == 2 ? max_pool2d(x, kernel_, stride_, padding_) : max_pool3d(x, kernel_, stride_, padding_);
}
std::string MaxPool::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}", list_str(kernel_),
                     stride_.v.empty() ? list_str(kernel_) : list_str(stride_), list_str(padding_));
}

AvgPool::AvgPool(int spatial_dims, SizeArg kernel, SizeArg stride, SizeArg padding, bool count_include_pad)
    : Module(spatial_dims == 2 ? "AvgPool2d" : "AvgPool3d"), dims_(spatial_dims), kernel_(std::move(kernel)),
      stride_(std::move(stride)), padding_(std::move(padding)), count_include_pad_(count_include_pad) {}
Tensor AvgPool::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return dims_ == 2 ? avg_pool2d(x, kernel_, stride_, padding_, count_include_pad_)
                    : avg_pool3d(x, kernel_, stride_, padding_, count_include_pad_);
}
std::string AvgPool::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}", list_str(kernel_),
                     stride_.v.empty() ? list_str(kernel_) : list_str(stride_), list_str(padding_));
}

AdaptiveAvgPool::AdaptiveAvgPool(int spatial_dims, SizeArg output_size)
    : Module(spatial_dims == 1 ? "AdaptiveAvgPool1d" : spatial_dims == 2 ? "AdaptiveAvgPool2d" : "AdaptiveAvgPool3d"),
      dims_(spatial_dims), out_(std::move(output_size)) {}
Tensor AdaptiveAvgPool::forward(const Tensor& x) {
  ModuleScope scope(*this);
  switch (dims_) {
    case 1: return adaptive_avg_pool1d(x, out_);
    case 2: return adaptive_avg_pool2d(x, out_);
    default: return adaptive_avg_pool3d(x, out_);
  }
}
std::string AdaptiveAvgPool::extra_repr() const { return "output_size=" + list_str(out_); }

}  // namespace qs::nn
