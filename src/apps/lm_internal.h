// Pieces the LM jobs share (src/apps/lm_*.cpp): checkpoint identity, the tokenizer
// stored in a checkpoint, and the hooks a training step runs for MoE layers.
#pragma once
#include <memory>
#include <string>

#include "qiusuo/io/checkpoint.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/text/tokenizer.h"

namespace qs::apps {

inline constexpr const char* kLmCheckpointKind = "qiusuo-lm";

// Errors naming the file when `ck` is not an LM checkpoint (saying what it is instead).
void check_lm_checkpoint(const io::Checkpoint& ck, const std::string& path);
// The tokenizer stored in an LM checkpoint.
std::unique_ptr<text::Tokenizer> tokenizer_of(const io::Checkpoint& ck, const std::string& path);
// loss plus the auxiliary balance losses of the model's MoE layers (when enabled).
Tensor add_aux_losses(nn::TransformerLM& model, const Tensor& loss);
// After the optimiser step: MoE router bias updates (auxiliary-loss-free balancing).
void after_step(nn::TransformerLM& model);
// "expert load: layer 0 max/mean 1.31 cv 0.22, ..." since the last call (then reset); "" without MoE.
std::string expert_load_summary(nn::TransformerLM& model);

}  // namespace qs::apps
