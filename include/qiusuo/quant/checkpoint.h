// Quantised checkpoints: a converted (or dynamically / weight-only quantised) model in one
// qiusuo checkpoint file (include/qiusuo/io/checkpoint.h, safetensors underneath).
//
// Layout: tensors "model.<name>" = the quantised model's state_dict (i8 / packed-s4 u8
// weights, f32 scales and biases, activation scale / zero point / range buffers, the
// float layers left); the header's "config" is the float model's config plus
//   "quantized": {"method": "ptq" | "qat" | "dynamic" | "weight-int8" | "weight-int4",
//                 "layers": {"<dotted name>": {"type": ..., qparams ...}, ...}}
// (quant::quantized_layers), so the activation parameters are readable in the header and
// load_quantized_checkpoint rebuilds the right module tree from the file alone. Saving is
// atomic.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "qiusuo/io/checkpoint.h"
#include "qiusuo/nn/module.h"

namespace qs::quant {

// Writes `model` (already quantised) with config = float_config + the "quantized" section.
void save_quantized_checkpoint(const std::string& path, const nn::Module& model, nlohmann::json float_config,
                               const std::string& method, const nlohmann::json& extra = nullptr);

// True when the checkpoint's config has a "quantized" section.
bool is_quantized_checkpoint(const io::Checkpoint& ck);

// `model` is the float model built from ck.config (same architecture); its layers are
// replaced by the shells the header describes and the tensors loaded (strict), then
// every quantised layer's parameters are checked against the header. Leaves eval mode.
// Errors (qs::Error, starting with `path`): no "quantized" section, a layer the model
// lacks or a malformed description (naming the layer and field), missing / unexpected /
// mis-shaped tensors (naming them), activation parameters that are invalid or differ
// from the header, weight scales that are not finite and positive (naming the tensor).
void load_quantized_checkpoint(const std::string& path, const io::Checkpoint& ck, nn::Module& model);

}  // namespace qs::quant
