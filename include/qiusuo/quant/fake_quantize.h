// FakeQuantize: an observer plus fake quantisation, as torch.ao.quantization.FakeQuantize
// (and _LearnableFakeQuantize for LSQ with a learnable scale).
//
// forward(x):
//   observer enabled:   observe x (no gradient) and copy the observer's qparams into the
//                       scale / zero_point state (a learnable scale is overwritten too:
//                       observation initialises LSQ; disable the observer to learn it);
//   fake quant enabled: return fake_quantize(x, scale, zero_point, axis, qmin, qmax);
//                       otherwise x itself.
// With a learnable scale its gradient is scaled by 1/sqrt(numel_per_scale * qmax) (LSQ's
// grad-scale factor, through a hook), and it is clamped to >= 2^-23 before each use.
//
// State (all in state_dict, so QAT resumes exactly): "scale" [C] f32 (a parameter when
// learnable, else a buffer), "zero_point" [C] i32, "fake_quant_enabled" and
// "observer_enabled" (i64 [1]), and the observer's buffers under "activation_post_process.".
// Before any observation: scale 1, zero point 0 (as PyTorch).
#pragma once
#include <memory>

#include "qiusuo/quant/observer.h"

namespace qs::quant {

class FakeQuantize : public nn::Module {
 public:
  FakeQuantize(ObserverKind kind, ObserverOptions opt, bool learnable_scale = false);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  void enable_observer(bool on = true);
  void disable_observer() { enable_observer(false); }
  void enable_fake_quant(bool on = true);
  void disable_fake_quant() { enable_fake_quant(false); }
  bool observer_enabled() const;
  bool fake_quant_enabled() const;

  Observer& observer() const { return *observer_; }
  bool learnable_scale() const { return learnable_; }
  // The parameters fake quantisation uses now (from the state, not recomputed).
  // Errors if nothing was observed yet and the scale was never learned or set.
  QParams qparams() const;
  const Tensor& scale() const { return scale_; }
  const Tensor& zero_point() const { return zero_point_; }

 private:
  void update_from_observer();
  std::shared_ptr<Observer> observer_;
  bool learnable_;
  Tensor scale_, zero_point_, fake_quant_on_, observer_on_;
};

}  // namespace qs::quant
