// Observers: modules that watch tensors go by (calibration, or QAT's forward passes) and
// turn the observed range into quantisation parameters, as torch.ao.quantization's
// MinMaxObserver, MovingAverageMinMaxObserver, HistogramObserver,
// PerChannelMinMaxObserver and MovingAveragePerChannelMinMaxObserver.
//
// Contract
// - forward(x) observes x (under NoGrad: nothing is recorded) and returns x itself.
// - The state lives in buffers (min_val, max_val [C] f32; the histogram observer also
//   histogram [bins]), so it is saved in state_dict() and a loaded model resumes.
//   Before the first observation min_val = +inf and max_val = -inf.
// - qparams() is PyTorch's _calculate_qparams: zero is always inside the range
//   (min' = min(min, 0), max' = max(max, 0)); then
//     symmetric: scale = max(-min', max') / ((qmax - qmin) / 2), zero point 0 for s8,
//                (qmin + qmax + 1) / 2 for u8 (128 on the full range);
//     affine:    scale = (max' - min') / (qmax - qmin), zp = clamp(qmin - round(min' / scale), qmin, qmax);
//   scale floored at eps = 2^-23 (torch.finfo(float32).eps), all in f32 arithmetic.
//   Ranges: s8 [-128, 127], u8 [0, 255]; reduce_range halves them (s8 [-64, 63], u8
//   [0, 127]) and sets QParams::quant_min/quant_max.
// - Errors (qs::Error): qparams() before any observation ("no data observed"), when a
//   per-tensor observer saw only zeros (an empty range), or when it saw NaN or inf;
//   observe() of a non-floating tensor, or a per-channel observer given a tensor whose
//   size along its axis differs from its channel count.
#pragma once
#include <memory>
#include <string>

#include "qiusuo/nn/module.h"
#include "qiusuo/quant/qparams.h"

namespace qs::quant {

enum class ObserverKind { minmax, moving_average_minmax, histogram, per_channel_minmax, moving_average_per_channel_minmax };
std::string observer_kind_name(ObserverKind k);        // "minmax", "moving_average_minmax", ...
ObserverKind parse_observer_kind(const std::string&);  // errors name the valid kinds

struct ObserverOptions {
  QDtype dtype = QDtype::u8;  // s8 or u8
  bool symmetric = false;
  bool reduce_range = false;
  int64_t axis = 0;                  // per-channel observers: the channel dim of observed tensors
  int64_t channels = 1;              // per-channel observers: the size along axis
  double averaging_constant = 0.01;  // moving averages: min += c * (batch_min - min)
  int64_t bins = 2048;               // histogram
  std::string method = "mse";        // histogram: "mse" (PyTorch's _non_linear_param_search) | "percentile"
  double percentile = 99.99;         // histogram, method "percentile": keep this % of the mass
};

class Observer : public nn::Module {
 public:
  Tensor forward(const Tensor& x) override;
  virtual void observe(const Tensor& x) = 0;
  virtual QParams qparams() const;
  bool has_observed() const;  // at least one observation
  bool per_channel() const { return per_channel_; }
  const ObserverOptions& options() const { return opt_; }
  int32_t qmin() const;
  int32_t qmax() const;
  const Tensor& min_val() const { return min_val_; }
  const Tensor& max_val() const { return max_val_; }
  std::string extra_repr() const override;

 protected:
  Observer(std::string type_name, ObserverOptions opt, bool per_channel);
  // Batch minima and maxima of x: [1], or [C] per channel along options().axis.
  std::pair<std::vector<float>, std::vector<float>> batch_range(const Tensor& x) const;
  void set_range(const std::vector<float>& lo, const std::vector<float>& hi);
  // PyTorch's _calculate_qparams for explicit ranges (one entry per channel).
  QParams qparams_for(std::vector<float> lo, std::vector<float> hi) const;

  ObserverOptions opt_;
  bool per_channel_;
  Tensor min_val_, max_val_;
};

// Running minimum and maximum over everything observed.
class MinMaxObserver : public Observer {
 public:
  explicit MinMaxObserver(ObserverOptions opt = {});
  void observe(const Tensor& x) override;
};

// The first batch's range, then an exponential moving average of batch ranges.
class MovingAverageMinMaxObserver : public Observer {
 public:
  explicit MovingAverageMinMaxObserver(ObserverOptions opt = {});
  void observe(const Tensor& x) override;
};

// Per-channel running minimum and maximum (channels = size along axis).
class PerChannelMinMaxObserver : public Observer {
 public:
  explicit PerChannelMinMaxObserver(ObserverOptions opt);
  void observe(const Tensor& x) override;
};

class MovingAveragePerChannelMinMaxObserver : public Observer {
 public:
  explicit MovingAveragePerChannelMinMaxObserver(ObserverOptions opt);
  void observe(const Tensor& x) override;
};

// A histogram of `bins` equal bins over [min_val, max_val]. When a batch falls outside
// the range, the range grows to cover it and the old counts are re-binned into the new
// bins (each old bin's count spread over the new bins it overlaps, in proportion).
// qparams() first chooses a clipping range from the histogram: "mse" minimises the
// estimated L2 quantisation error by PyTorch's greedy search (_non_linear_param_search,
// 2^bits destination bins); "percentile" keeps the central `percentile` % of the mass.
class HistogramObserver : public Observer {
 public:
  explicit HistogramObserver(ObserverOptions opt = {});
  void observe(const Tensor& x) override;
  QParams qparams() const override;
  const Tensor& histogram() const { return histogram_; }
  // The clipping range qparams() uses, before zero is included.
  std::pair<float, float> clipping_range() const;

 private:
  std::pair<float, float> mse_range() const;
  std::pair<float, float> percentile_range() const;
  double quantization_error(const std::vector<double>& h, int64_t start_bin, int64_t end_bin) const;
  Tensor histogram_;
};

std::shared_ptr<Observer> make_observer(ObserverKind kind, ObserverOptions opt);

}  // namespace qs::quant
