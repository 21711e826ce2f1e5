// The curriculum's experiments: each trains and measures, then writes results.json, a
// Markdown table (results.md) and SVG figures into its output folder.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qs::apps {

// "oneDNN ISA avx512_core_bf16, 2 threads": the machine a measurement ran on.
std::string machine_summary();
// What every experiment's results.json records of its own run: "seconds", the wall time
// since `started` plus `earlier_seconds` (the training time earlier invocations spent on runs
// this one continued or read back; null when that is not known), and "machine"
// (machine_summary()); `qiusuo report --from` states both.
void stamp_run(nlohmann::json& results, std::chrono::steady_clock::time_point started, double earlier_seconds = 0);

// `qiusuo experiment pe`: one language model per positional encoding (same size, data,
// seed, steps and tokens seen), trained at one length and evaluated at 0.5x, 1x, 2x and
// 4x that length on the same held-out tokens. Beyond the trained length RoPE is measured
// as it is (extrapolating) and with NTK-aware and YaRN scaling (factor = length / trained
// length, same weights); the learned table cannot go beyond it (reported as absent).
struct PeExperimentOptions {
  bool quick = false;            // CI size: tiny models, 128 tokens, a minute or two in all
  std::string out_dir;
  std::string corpus;            // empty: the King James Bible
  std::vector<std::string> encodings;  // empty: all, nn::position_encoding_names()
  int64_t train_len = 0;         // 0: 1024 (quick: 128)
  int64_t steps = 0;             // 0: the size's default
  int64_t eval_tokens = 0;       // tokens evaluated per length (0: the size's default)
  int threads = 0;
  uint64_t seed = 0;             // the first seed; seed i of an encoding is seed + i
  int seeds = 0;                 // models per encoding, the same seeds for every encoding (0: 3; quick: 2)
};

// Returns the results.json document (also written to out_dir): per encoding the mean and
// sample sd over seeds of the perplexity at each length, every run's validation-loss history
// (every steps / 10) and its "late drop" (how much the validation loss still fell over the
// last fifth of training); "converged" when every encoding's mean late drop is under 1%.
// Writes results.md (opening with the claim's numbers and whether the runs can decide it),
// perplexity.svg and learning_curves.svg.
nlohmann::json run_pe_experiment(const PeExperimentOptions& opt);

// `qiusuo experiment quant`: the Fashion-MNIST CNN in FP32, BF16 (autocast), PTQ-INT8 and
// QAT-INT8 (test accuracy, % retained, weight and file bytes, resident memory, latency at
// batch 1 and 64), and a small KJV LM in FP32, BF16, dynamic INT8, weight-only INT8 and INT4,
// static PTQ / QAT INT8 (test perplexity, bytes, resident memory, forward latency), with the
// handbook's claims beside the measured values. Trains the float models unless given; writes
// results.json, results.md, retained.svg and speedup.svg (and the checkpoints) into out_dir.
struct QuantExperimentOptions {
  bool quick = false;   // CI size: 2048 training images, a tiny LM; a minute or two
  std::string out_dir;
  std::string cnn;      // a float FashionCNN checkpoint (empty: train one epoch)
  std::string lm;       // a float LM checkpoint (empty: train a small one)
  int threads = 0;
};
nlohmann::json run_quant_experiment(const QuantExperimentOptions& opt);
// Draws DIR/retained.svg and DIR/speedup.svg from DIR/results.json (what run_quant_experiment
// wrote), so the figures can be redrawn without re-running the experiment. Errors name the
// file and the missing row or field.
void write_quant_plots(const std::string& dir);

// `qiusuo experiment prune`: the Fashion-MNIST CNN pruned by each criterion (L1, L2, batch-
// norm scale) at each ratio and fine-tuned, beside the unpruned model fine-tuned as long
// (row "none"); parameters, FLOPs, file bytes, accuracy, measured speed-up of inference and
// training; per-layer sensitivity (L1, no fine-tuning); a KJV language model's feed-forward
// neurons pruned (perplexity, FLOPs, forward latency); Li et al. 2017's reported numbers
// beside. Writes results.json, results.md, accuracy_vs_flops.svg, speedup.svg,
// sensitivity.svg and lm_perplexity.svg (and the pruned checkpoints) into out_dir.
struct PruneExperimentOptions {
  bool quick = false;         // CI size: 2048 training images, one ratio; a minute or so
  std::string out_dir;
  std::string cnn;            // a float FashionCNN checkpoint (empty: train one, 3 epochs; quick: 1)
  std::vector<double> ratios;        // empty: 0.1, 0.3, 0.5, 0.7 (quick: 0.5)
  std::vector<std::string> methods;  // empty: l1-channel, l2-channel, bn-scale
  int finetune_epochs = 2;
  double finetune_lr = 0.05;
  // The language model: its feed-forward neurons pruned at each ratio (L1) and fine-tuned
  // for lm_finetune_steps AdamW steps, beside the unpruned model fine-tuned as long.
  std::string lm;                  // a float dense LM checkpoint (empty: train a small KJV one)
  int64_t lm_finetune_steps = 100;  // quick: 5
  int threads = 0;
};
nlohmann::json run_prune_experiment(const PruneExperimentOptions& opt);
// Redraws DIR's four plots from DIR/results.json (what run_prune_experiment wrote). Errors
// name the file and what is missing.
void write_prune_plots(const std::string& dir);

// `qiusuo experiment deepseek`: small KJV language models of DeepSeek blocks (RMSNorm, RoPE)
// that differ in attention (MHA or MLA, multi-head latent attention) and feed-forward
// (dense SwiGLU or a mixture of experts whose active width per token equals the SwiGLU's),
// trained alike: test perplexity, parameters (all and active per token), KV-cache bytes per
// token, training speed, the validation loss and the experts' load over training. Models
// (deepseek_experiment_models()): dense, mla, moe, mla-moe (balanced without an auxiliary
// loss: DeepSeek-V3's router bias), mla-moe-nobias (no balancing), mla-moe-aux (a balance
// loss, DeepSeek-V2's way). Writes results.json, results.md (opening with sentences computed
// from its table), learning_curves.svg, expert_load.svg and one checkpoint folder per run.
struct DeepseekExperimentOptions {
  bool quick = false;              // CI size: tiny models, 64 tokens, 20 steps, one seed
  std::string out_dir;
  std::string corpus;              // empty: the King James Bible
  std::vector<std::string> models; // empty: dense, mla-moe, mla-moe-nobias
  int64_t steps = 0;               // 0: 1500 of 8 sequences (quick: 20 of 4)
  int64_t seq = 0;                 // training and evaluation length; 0: 256 (quick: 64)
  int seeds = 0;                   // 0: 2 (quick: 1); seed k of every model is seed + k
  uint64_t seed = 0;
  int threads = 0;
  bool quiet = false;
};
nlohmann::json run_deepseek_experiment(const DeepseekExperimentOptions& opt);
// Writes DIR/results.md and the plots again from DIR/results.json (what
// run_deepseek_experiment wrote). Errors name the file and what is missing.
void write_deepseek_report(const std::string& dir);
std::vector<std::string> deepseek_experiment_models();

}  // namespace qs::apps
