// Pieces the LM jobs share (src/apps/lm_*.cpp): checkpoint identity, the tokenizer
// stored in a checkpoint, and the hooks a training step runs for MoE layers.
#pragma once
#include <memory>
#include <string>

#include "qiusuo/apps/lm.h"
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
// The routed experts' load while training: record(step) before each validation takes the
// MoE layers' counts since the previous record (the training forwards) as one point;
// discard() after it drops what the validation forwards counted.
class ExpertLoadLog {
 public:
  explicit ExpertLoadLog(nn::TransformerLM& model);
  ExpertLoadPoint record(int64_t step);
  void discard();
  // "expert load: layer 0 max/mean 1.31 cv 0.22, ..." over every recorded step (of the
  // runs before a resume too); "" without MoE layers.
  std::string summary() const;
  // The counts not yet recorded and the run's sums, for a checkpoint; restore() puts them
  // back (errors naming `path` when they do not fit the model's MoE layers).
  nlohmann::json state() const;
  void restore(const nlohmann::json& state, const std::string& path);

 private:
  std::vector<nn::MoE*> layers_;
  std::vector<std::vector<int64_t>> run_counts_;  // per layer, the sum of the recorded counts
};

}  // namespace qs::apps
