#include "qiusuo/nn/norm.h"

#include "qiusuo/autograd.h"
#include "qiusuo/dist/dist.h"
#include "qiusuo/ops.h"

namespace qs::nn {

namespace {
const char* bn_type(int d) { return d == 1 ? "BatchNorm1d" : d == 2 ? "BatchNorm2d" : "BatchNorm3d"; }
}  // namespace

BatchNorm::BatchNorm(int spatial_dims, int64_t num_features, double eps, double momentum, bool affine)
    : Module(bn_type(spatial_dims)), dims_(spatial_dims), c_(num_features), eps_(eps), momentum_(momentum) {
  QS_CHECK(c_ > 0, "{}: num_features must be positive, got {}", type_name(), c_);
  if (affine) {
    weight_ = register_parameter("weight", ones({c_}));
    bias_ = register_parameter("bias", zeros({c_}));
  }
  running_mean_ = register_buffer("running_mean", zeros({c_}));
  running_var_ = register_buffer("running_var", ones({c_}));
  num_batches_tracked_ = register_buffer("num_batches_tracked", zeros({}, DType::i64));
}

Tensor BatchNorm::forward(const Tensor& x) { return normalise(x, false); }
Tensor BatchNorm::forward_relu(const Tensor& x) { return normalise(x, true); }

Tensor BatchNorm::normalise(const Tensor& x, bool relu) {
  ModuleScope scope(*this);
  int64_t want = dims_ + 2;
  QS_CHECK(x.dim() == want || (dims_ == 1 && x.dim() == 2), "{}: expected a {}-D input [N, C, ...], got shape {}",
           type_name(), want, shape_str(x.shape()));
  QS_CHECK(x.size(1) == c_, "{}: expected {} channels, got {} (input shape {})", type_name(), c_, x.size(1),
           shape_str(x.shape()));
  if (is_training()) {
    NoGrad ng;
    num_batches_tracked_.fill_(num_batches_tracked_.item() + 1);
  }
  if (sync_ && is_training() && dist::active()) return normalise_synced(x, relu);
  return (relu ? batch_norm_relu : batch_norm)(x, running_mean_, running_var_, weight_, bias_, is_training(),
                                               momentum_, eps_);
}

// The global batch's statistics, two-pass as the fused op computes them: the mean from
// the ranks' sums and counts, then the biased variance from the ranks' sums of squared
// deviations from it. Gradients flow through both all-reduces (their backward is an
// all-reduce of the gradients), which gives each rank its part of the global gradient.
Tensor BatchNorm::normalise_synced(const Tensor& x, bool relu) {
  const Tensor xf = x.dtype() == DType::f32 ? x : x.to(DType::f32);
  std::vector<int64_t> dims{0};
  Shape per_channel(size_t(xf.dim()), 1);
  per_channel[1] = c_;
  for (int64_t d = 2; d < xf.dim(); ++d) dims.push_back(d);
  const double local = double(xf.numel() / c_);
  const double count = dist::all_reduce_sum(local);
  const Tensor mean = div(dist::all_reduce(sum(xf, dims)), scalar_tensor(count));
  const Tensor centred = sub(xf, mean.reshape(per_channel));
  const Tensor var = div(dist::all_reduce(sum(mul(centred, centred), dims)), scalar_tensor(count));
  Tensor scale = rsqrt(add(var, scalar_tensor(eps_)));
  if (weight_.defined()) scale = mul(scale, weight_);
  Tensor y = mul(centred, scale.reshape(per_channel));
  if (bias_.defined()) y = add(y, bias_.reshape(per_channel));
  if (relu) y = qs::relu(y);
  {
    NoGrad ng;
    const double m = momentum_, unbias = count > 1 ? count / (count - 1) : 1.0;
    running_mean_.copy_(add(mul(running_mean_, scalar_tensor(1 - m)), mul(mean.detach(), scalar_tensor(m))));
    running_var_.copy_(add(mul(running_var_, scalar_tensor(1 - m)), mul(var.detach(), scalar_tensor(m * unbias))));
  }
  return y;
}

int set_sync_batch_norm(Module& m, bool on) {
  int n = 0;
  if (auto* bn = dynamic_cast<BatchNorm*>(&m)) bn->set_sync(on), ++n;
  for (auto& [name, child] : m.named_modules())
    if (auto* bn = dynamic_cast<BatchNorm*>(child.get())) bn->set_sync(on), ++n;
  return n;
}

std::string BatchNorm::extra_repr() const {
  return fmt::format("{}, eps={:g}, momentum={:g}, affine={}", c_, eps_, momentum_, weight_.defined() ? "True" : "False");
}

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine, bool bias)
    : Module("LayerNorm"), shape_(std::move(normalized_shape)), eps_(eps) {
  if (elementwise_affine) {
    weight_ = register_parameter("weight", ones(shape_));
    if (bias) bias_ = register_parameter("bias", zeros(shape_));
  }
}
Tensor LayerNorm::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return layer_norm(x, shape_, weight_, bias_, eps_);
}
std::string LayerNorm::extra_repr() const {
  return fmt::format("{}, eps={:g}, elementwise_affine={}", shape_str(shape_), eps_, weight_.defined() ? "True" : "False");
}

RMSNorm::RMSNorm(Shape normalized_shape, double eps, bool elementwise_affine)
    : Module("RMSNorm"), shape_(std::move(normalized_shape)), eps_(eps) {
  if (elementwise_affine) weight_ = register_parameter("weight", ones(shape_));
}
Tensor RMSNorm::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return rms_norm(x, shape_, weight_, eps_);
}
std::string RMSNorm::extra_repr() const { return fmt::format("{}, eps={:g}", shape_str(shape_), eps_); }

Dropout::Dropout(double p, Generator* gen) : Module("Dropout"), p_(p), gen_(gen) {
  QS_CHECK(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got {}", p);
}
Tensor Dropout::forward(const Tensor& x) {
  ModuleScope scope(*this);
  return dropout(x, p_, is_training(), gen_);
}
std::string Dropout::extra_repr() const { return fmt::format("p={:g}", p_); }

}  // namespace qs::nn
