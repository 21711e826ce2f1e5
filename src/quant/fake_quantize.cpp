// FakeQuantize (include/qiusuo/quant/fake_quantize.h).
#include "qiusuo/quant/fake_quantize.h"

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/fake_quant.h"

namespace qs::quant {

namespace {
constexpr double kMinScale = 1.1920928955078125e-07;
}

FakeQuantize::FakeQuantize(ObserverKind kind, ObserverOptions opt, bool learnable_scale)
    : Module("FakeQuantize"), learnable_(learnable_scale) {
  observer_ = register_module("activation_post_process", make_observer(kind, opt));
  int64_t C = observer_->per_channel() ? opt.channels : 1;
  if (learnable_)
    scale_ = register_parameter("scale", ones({C}));
  else
    scale_ = register_buffer("scale", ones({C}));
  zero_point_ = register_buffer("zero_point", zeros({C}, DType::i32));
  fake_quant_on_ = register_buffer("fake_quant_enabled", ones({1}, DType::i64));
  observer_on_ = register_buffer("observer_enabled", ones({1}, DType::i64));
}

std::string FakeQuantize::extra_repr() const {
  return fmt::format("fake_quant_enabled={}, observer_enabled={}, learnable_scale={}, quant_min={}, quant_max={}",
                     fake_quant_enabled(), observer_enabled(), learnable_, observer_->qmin(), observer_->qmax());
}

void FakeQuantize::enable_observer(bool on) { observer_on_.fill_(on ? 1 : 0); }
void FakeQuantize::enable_fake_quant(bool on) { fake_quant_on_.fill_(on ? 1 : 0); }
bool FakeQuantize::observer_enabled() const { return observer_on_.item() != 0; }
bool FakeQuantize::fake_quant_enabled() const { return fake_quant_on_.item() != 0; }

// A range that is still empty (only zeros seen, e.g. a dead ReLU on the first batch)
// keeps the previous parameters instead of failing the training step.
void FakeQuantize::update_from_observer() {
  if (!observer_->has_observed()) return;
  std::vector<float> lo = observer_->min_val().to_vector_as<float>(), hi = observer_->max_val().to_vector_as<float>();
  if (!observer_->per_channel() && std::min(lo[0], 0.0f) == std::max(hi[0], 0.0f)) return;
  QParams qp = observer_->qparams();
  NoGrad ng;
  int64_t C = int64_t(qp.scale.size());
  Tensor(scale_).copy_(from_vector(std::vector<double>(qp.scale.begin(), qp.scale.end()), {C}));
  Tensor(zero_point_).copy_(from_vector(std::vector<double>(qp.zero_point.begin(), qp.zero_point.end()), {C}, DType::i32));
}

Tensor FakeQuantize::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  if (observer_enabled()) {
    observer_->observe(x);
    update_from_observer();
  }
  if (!fake_quant_enabled()) return x;
  const ObserverOptions& o = observer_->options();
  int64_t axis = observer_->per_channel() ? o.axis : -1;
  Tensor s = scale_;
  if (learnable_) {
    {
      NoGrad ng;  // PyTorch clamps the learned scale in place before use
      Tensor(scale_).copy_(clamp(scale_.detach(), kMinScale, std::nullopt));
    }
    int64_t per_scale = x.numel() / std::max<int64_t>(1, scale_.numel());
    double factor = 1.0 / std::sqrt(double(per_scale) * double(observer_->qmax()));
    s = scale_.view(scale_.shape());
    if (s.requires_grad()) s.register_hook([factor](const Tensor& g) { return g * factor; });
  }
  return fake_quantize(x, s, zero_point_, axis, observer_->qmin(), observer_->qmax());
}

QParams FakeQuantize::qparams() const {
  QS_CHECK(observer_->has_observed() || learnable_, "FakeQuantize: no data observed, so its parameters are the "
           "placeholders (scale 1, zero point 0); hint: run calibration batches or QAT steps first");
  QParams qp;
  qp.dtype = observer_->options().dtype;
  qp.axis = observer_->per_channel() ? observer_->options().axis : -1;
  if (observer_->options().reduce_range) qp.quant_min = observer_->qmin(), qp.quant_max = observer_->qmax();
  for (double v : scale_.to_vector()) qp.scale.push_back(float(v));
  for (double v : zero_point_.to_vector()) qp.zero_point.push_back(int32_t(v));
  qp.validate();
  return qp;
}

}  // namespace qs::quant
