// QConfig: how prepare / prepare_qat quantise each layer (torch.ao.quantization.QConfig
// and QConfigMapping): activation and weight settings, with per-module-type and
// per-name overrides and skips.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qiusuo/quant/observer.h"

namespace qs::quant {

// Settings of one FakeQuantize (an observer, plus fake quantisation in QAT).
struct FakeQuantConfig {
  ObserverKind observer = ObserverKind::moving_average_minmax;
  QDtype dtype = QDtype::u8;
  bool symmetric = false;
  bool reduce_range = false;
  bool learnable_scale = false;      // LSQ
  double averaging_constant = 0.01;  // moving-average observers
  int64_t bins = 2048;               // histogram observer
  std::string method = "mse";        // histogram: "mse" | "percentile"
  double percentile = 99.99;
  // The ObserverOptions for a tensor with `channels` channels along `axis` (used only by
  // per-channel observers).
  ObserverOptions observer_options(int64_t axis = 0, int64_t channels = 1) const;
};

// What one layer gets: activation settings (its input and output) and weight settings.
struct LayerQConfig {
  FakeQuantConfig activation;
  // Default: per-channel (axis 0: output channels) symmetric s8, the layout the INT8
  // kernels take.
  FakeQuantConfig weight{ObserverKind::moving_average_per_channel_minmax, QDtype::s8, true};
};

struct QConfig {
  LayerQConfig global;
  // Overrides, most specific first: by dotted module name (the name after fusion, e.g.
  // "c1"), then by module type name ("Linear", "Conv2d"; fused layers match the type of
  // their convolution or linear layer).
  std::vector<std::pair<std::string, LayerQConfig>> by_name;
  std::vector<std::pair<std::string, LayerQConfig>> by_type;
  // Layers left in float: exact dotted names, or a prefix ending in '.' for a subtree.
  std::vector<std::string> skip_names;
  std::vector<std::string> skip_types;
  // A module with parameters that cannot be quantised (e.g. an Embedding, a BatchNorm
  // with no convolution before it) is an error naming it, unless this is true, when it
  // stays in float.
  bool skip_unsupported = false;

  // The settings for module `name` of type `type`; nullopt when it is skipped.
  std::optional<LayerQConfig> for_module(const std::string& name, const std::string& type) const;

  // QAT: moving-average min/max activations (u8 affine, reduce_range as PyTorch's fbgemm
  // default, for INT8 kernels without VNNI), moving-average per-channel s8 weights.
  static QConfig default_qat();
  // PTQ: histogram activations (MSE range search), per-channel min/max s8 weights.
  static QConfig default_ptq();
};

}  // namespace qs::quant
