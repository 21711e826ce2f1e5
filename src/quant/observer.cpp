// Min/max observers and the shared qparams rule (include/qiusuo/quant/observer.h).
// Range arithmetic is f32 in PyTorch's order, so the parameters agree with
// torch.ao.quantization's observers bit for bit on the same data.
#include "qiusuo/quant/observer.h"

#include <cmath>
#include <limits>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::quant {

namespace {
constexpr float kEps = 1.1920928955078125e-07f;  // torch.finfo(torch.float32).eps
constexpr float kInf = std::numeric_limits<float>::infinity();
// min / max that keep a NaN (so qparams() reports it instead of ignoring it).
float nan_min(float a, float b) { return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN() : std::min(a, b); }
float nan_max(float a, float b) { return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN() : std::max(a, b); }
}  // namespace

std::string observer_kind_name(ObserverKind k) {
  switch (k) {
    case ObserverKind::minmax: return "minmax";
    case ObserverKind::moving_average_minmax: return "moving_average_minmax";
    case ObserverKind::histogram: return "histogram";
    case ObserverKind::per_channel_minmax: return "per_channel_minmax";
    case ObserverKind::moving_average_per_channel_minmax: return "moving_average_per_channel_minmax";
  }
  return "?";
}

ObserverKind parse_observer_kind(const std::string& s) {
  for (auto k : {ObserverKind::minmax, ObserverKind::moving_average_minmax, ObserverKind::histogram,
                 ObserverKind::per_channel_minmax, ObserverKind::moving_average_per_channel_minmax})
    if (observer_kind_name(k) == s) return k;
  QS_FAIL("observer kind '{}' is not one of minmax, moving_average_minmax, histogram, per_channel_minmax, "
          "moving_average_per_channel_minmax", s);
}

Observer::Observer(std::string type_name, ObserverOptions opt, bool per_channel)
    : Module(std::move(type_name)), opt_(std::move(opt)), per_channel_(per_channel) {
  QS_CHECK(opt_.dtype == QDtype::s8 || opt_.dtype == QDtype::u8, "{}: observers produce s8 or u8 parameters, got {}",
           this->type_name(), qdtype_name(opt_.dtype));
  QS_CHECK(!per_channel_ || (opt_.channels >= 1 && opt_.axis >= 0), "{}: needs channels >= 1 and axis >= 0, got {} "
           "and {}", this->type_name(), opt_.channels, opt_.axis);
  QS_CHECK(opt_.averaging_constant > 0 && opt_.averaging_constant <= 1,
           "{}: averaging_constant must be in (0, 1], got {}", this->type_name(), opt_.averaging_constant);
  int64_t C = per_channel_ ? opt_.channels : 1;
  min_val_ = register_buffer("min_val", full({C}, kInf));
  max_val_ = register_buffer("max_val", full({C}, -kInf));
}

Tensor Observer::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  observe(x);
  return x;
}

int32_t Observer::qmin() const {
  if (opt_.dtype == QDtype::s8) return opt_.reduce_range ? -64 : -128;
  return 0;
}
int32_t Observer::qmax() const {
  if (opt_.dtype == QDtype::s8) return opt_.reduce_range ? 63 : 127;
  return opt_.reduce_range ? 127 : 255;
}

bool Observer::has_observed() const {
  float lo = min_val_.data_ptr<float>()[0], hi = max_val_.data_ptr<float>()[0];
  return !(lo == kInf && hi == -kInf);
}

std::string Observer::extra_repr() const {
  return fmt::format("dtype={}, symmetric={}, reduce_range={}{}", qdtype_name(opt_.dtype), opt_.symmetric,
                     opt_.reduce_range, per_channel_ ? fmt::format(", axis={}, channels={}", opt_.axis, opt_.channels) : "");
}

std::pair<std::vector<float>, std::vector<float>> Observer::batch_range(const Tensor& x) const {
  QS_CHECK(x.defined() && x.is_floating_point(), "{}: can only observe floating-point tensors, got {}", type_name(),
           x.defined() ? dtype_name(x.dtype()) : "undefined");
  NoGrad ng;
  Tensor t = x.detach();
  if (per_channel_) {
    QS_CHECK(opt_.axis < t.dim() && t.size(opt_.axis) == opt_.channels, "{}: expected {} channels along axis {}, got "
             "a tensor of shape {}", type_name(), opt_.channels, opt_.axis, shape_str(t.shape()));
    Shape perm = {opt_.axis};
    for (int64_t d = 0; d < t.dim(); ++d)
      if (d != opt_.axis) perm.push_back(d);
    t = t.permute(perm).reshape({opt_.channels, -1});
    return {amin(t, {1}).to(DType::f32).to_vector_as<float>(), amax(t, {1}).to(DType::f32).to_vector_as<float>()};
  }
  return {{float(amin(t).item())}, {float(amax(t).item())}};
}

void Observer::set_range(const std::vector<float>& lo, const std::vector<float>& hi) {
  float* mn = min_val_.data_ptr<float>();
  float* mx = max_val_.data_ptr<float>();
  for (size_t c = 0; c < lo.size(); ++c) mn[c] = lo[c], mx[c] = hi[c];
}

QParams Observer::qparams() const {
  std::vector<float> lo = min_val_.to_vector_as<float>(), hi = max_val_.to_vector_as<float>();
  return qparams_for(lo, hi);
}

QParams Observer::qparams_for(std::vector<float> lo, std::vector<float> hi) const {
  QS_CHECK(has_observed(), "{}: no data observed, so there is no range to quantise; hint: run calibration batches "
           "(or QAT steps) through the model before asking for qparams", type_name());
  const int32_t qlo = qmin(), qhi = qmax();
  QParams qp;
  qp.dtype = opt_.dtype;
  qp.axis = per_channel_ ? opt_.axis : -1;
  if (opt_.reduce_range) qp.quant_min = qlo, qp.quant_max = qhi;
  for (size_t c = 0; c < lo.size(); ++c) {
    QS_CHECK(std::isfinite(lo[c]) && std::isfinite(hi[c]) && lo[c] <= hi[c], "{}: the observed range of channel {} is "
             "[{}, {}]; hint: the observed data held NaN or inf", type_name(), c, lo[c], hi[c]);
    const float min_neg = std::min(lo[c], 0.0f), max_pos = std::max(hi[c], 0.0f);
    QS_CHECK(per_channel_ || max_pos > min_neg, "{}: every observed value was 0, so the range is empty; hint: "
             "calibrate on real data (an all-constant or empty calibration set has no range)", type_name());
    float scale;
    int32_t zp;
    if (opt_.symmetric) {
      scale = std::max(std::max(-min_neg, max_pos) / (float(qhi - qlo) / 2.0f), kEps);
      zp = opt_.dtype == QDtype::s8 ? 0 : (qlo + qhi + 1) / 2;
    } else {
      scale = std::max((max_pos - min_neg) / float(qhi - qlo), kEps);
      zp = std::clamp(qlo - int32_t(std::nearbyint(min_neg / scale)), qlo, qhi);
    }
    qp.scale.push_back(scale);
    qp.zero_point.push_back(zp);
  }
  qp.validate();
  return qp;
}

MinMaxObserver::MinMaxObserver(ObserverOptions opt) : Observer("MinMaxObserver", std::move(opt), false) {}

void MinMaxObserver::observe(const Tensor& x) {
  if (x.defined() && x.numel() == 0) return;
  auto [lo, hi] = batch_range(x);
  std::vector<float> mn = min_val_.to_vector_as<float>(), mx = max_val_.to_vector_as<float>();
  set_range({nan_min(mn[0], lo[0])}, {nan_max(mx[0], hi[0])});
}

// min += c * (batch_min - min) in f32, as PyTorch (the first batch sets the range).
static void moving_average(Observer& o, std::vector<float>& mn, std::vector<float>& mx, const std::vector<float>& lo,
                           const std::vector<float>& hi, double c) {
  const float k = float(c);
  bool first = !o.has_observed();
  for (size_t i = 0; i < mn.size(); ++i) {
    mn[i] = first ? lo[i] : mn[i] + k * (lo[i] - mn[i]);
    mx[i] = first ? hi[i] : mx[i] + k * (hi[i] - mx[i]);
  }
}

MovingAverageMinMaxObserver::MovingAverageMinMaxObserver(ObserverOptions opt)
    : Observer("MovingAverageMinMaxObserver", std::move(opt), false) {}

void MovingAverageMinMaxObserver::observe(const Tensor& x) {
  if (x.defined() && x.numel() == 0) return;
  auto [lo, hi] = batch_range(x);
  std::vector<float> mn = min_val_.to_vector_as<float>(), mx = max_val_.to_vector_as<float>();
  moving_average(*this, mn, mx, lo, hi, opt_.averaging_constant);
  set_range(mn, mx);
}

PerChannelMinMaxObserver::PerChannelMinMaxObserver(ObserverOptions opt)
    : Observer("PerChannelMinMaxObserver", std::move(opt), true) {}

void PerChannelMinMaxObserver::observe(const Tensor& x) {
  if (x.defined() && x.numel() == 0) return;
  auto [lo, hi] = batch_range(x);
  std::vector<float> mn = min_val_.to_vector_as<float>(), mx = max_val_.to_vector_as<float>();
  for (size_t c = 0; c < mn.size(); ++c) mn[c] = nan_min(mn[c], lo[c]), mx[c] = nan_max(mx[c], hi[c]);
  set_range(mn, mx);
}

MovingAveragePerChannelMinMaxObserver::MovingAveragePerChannelMinMaxObserver(ObserverOptions opt)
    : Observer("MovingAveragePerChannelMinMaxObserver", std::move(opt), true) {}

void MovingAveragePerChannelMinMaxObserver::observe(const Tensor& x) {
  if (x.defined() && x.numel() == 0) return;
  auto [lo, hi] = batch_range(x);
  std::vector<float> mn = min_val_.to_vector_as<float>(), mx = max_val_.to_vector_as<float>();
  moving_average(*this, mn, mx, lo, hi, opt_.averaging_constant);
  set_range(mn, mx);
}

std::shared_ptr<Observer> make_observer(ObserverKind kind, ObserverOptions opt) {
  switch (kind) {
    case ObserverKind::minmax: return std::make_shared<MinMaxObserver>(opt);
    case ObserverKind::moving_average_minmax: return std::make_shared<MovingAverageMinMaxObserver>(opt);
    case ObserverKind::histogram: return std::make_shared<HistogramObserver>(opt);
    case ObserverKind::per_channel_minmax: return std::make_shared<PerChannelMinMaxObserver>(opt);
    case ObserverKind::moving_average_per_channel_minmax:
      return std::make_shared<MovingAveragePerChannelMinMaxObserver>(opt);
  }
  QS_FAIL("make_observer: unknown observer kind");
}

}  // namespace qs::quant
