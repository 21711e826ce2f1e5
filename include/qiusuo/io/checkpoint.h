// Training checkpoints: model and optimiser tensors, step, RNG state, config and any
// extra JSON, in ONE safetensors file (so any safetensors reader can inspect it).
//
// Layout: tensors "model.<name>" and "optim.<name>"; __metadata__ holds
//   "format": "qiusuo-checkpoint-v1", "step": "<int>", "rng_state": "[u64, ...]",
//   "config": "<json>", "extra": "<json>"   (all JSON text, as safetensors wants strings).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "qiusuo/io/safetensors.h"

namespace qs::io {

constexpr const char* kCheckpointFormat = "qiusuo-checkpoint-v1";

struct Checkpoint {
  std::vector<std::pair<std::string, Tensor>> model;
  std::vector<std::pair<std::string, Tensor>> optimizer;
  int64_t step = 0;
  std::vector<uint64_t> rng_state;  // e.g. Generator::state()
  nlohmann::json config;            // null when unset
  nlohmann::json extra;             // null when unset
};

// Refuses (Error naming the file) a config whose model would hold at least `at_least_bytes`
// of parameters when the checkpoint's model tensors hold far fewer: a lying config must not
// size a model before its tensors are compared with it (a 258 KB file saying n_layers
// 100000 would otherwise allocate gigabytes first).
void check_config_fits(const std::string& path, const Checkpoint& ckpt, double at_least_bytes);

// Atomic (see save_safetensors): an interrupted save leaves the previous file intact.
// Errors (qs::IOError): as save_safetensors (duplicate names within model or optimizer).
void save_checkpoint(const std::string& path, const Checkpoint& ckpt);

// A trainer's periodic save: `ckpt` as DIR/NAME (created if absent), then DIR/last.safetensors
// refreshed with the same bytes (copied, not serialised again, then renamed into place), so
// neither file is ever partial. Returns DIR/NAME.
// Errors (qs::IOError): as save_checkpoint; the folder cannot be made; the copy or rename fails.
std::string save_checkpoint_and_last(const std::string& dir, const std::string& name, const Checkpoint& ckpt);

// Errors (qs::IOError): anything load_safetensors rejects; a file without
// "format": "qiusuo-checkpoint-v1" (e.g. a plain safetensors file, with a hint);
// missing or malformed step / rng_state / config / extra; a tensor whose name has
// neither the "model." nor the "optim." prefix.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace qs::io
