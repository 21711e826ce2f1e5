// `qiusuo prune`: structured pruning of a trained Fashion-MNIST CNN (and of a language
// model's feed-forward neurons, below) (prune/prune.h does
// the work on any traced model): channel groups, L1 / L2 / batch-norm-scale criteria, a
// physically smaller FashionCNN, optional fine-tuning, and a report of parameters, FLOPs,
// file bytes, accuracy and measured latency before and after (docs/prune.md).
#pragma once
#include <map>
#include <string>

#include "qiusuo/apps/cnn.h"

namespace qs::apps {

struct PruneCnnOptions {
  std::string checkpoint;               // a float FashionCNN checkpoint (`qiusuo train cnn`)
  std::string method = "l1-channel";    // l1-channel | l2-channel | bn-scale
  double ratio = 0.5;                   // fraction of each convolution's channels removed, in [0, 1)
  std::map<std::string, double> per_layer;  // overrides by layer name ("c1", "c2", "c3")
  bool global = false;                  // rank all layers' channels together (prune::PruneOptions::global)
  int64_t round_to = 1;                 // kept channels rounded up to a multiple (prune::PruneOptions::round_to)
  int finetune_epochs = 0;              // SGD epochs after each pruning step (cosine from finetune_lr)
  // Prune in this many steps, each followed by the fine-tuning: step k of K keeps
  // size * (1 - ratio)^(k/K) channels of each layer (the last step lands exactly where one
  // shot would), so the network adapts between cuts.
  int iterations = 1;
  double finetune_lr = 0.05;
  int64_t batch = 128;                  // fine-tuning batch
  uint64_t seed = 0;
  std::string data_root = "/usr/share/datasets/fashion-mnist";
  int64_t limit_train = 0, limit_test = 0;  // first N images only (0: all)
  int latency_rounds = 5;               // alternating rounds of the latency measurement (0: none)
  std::string out;                      // the pruned checkpoint (required)
  bool quiet = false;
};

// One model's measures. Latency: median over the rounds of the mean per call, inference on
// 64 images (cnn_infer_b64_fp32's shape) and one SGD step on 128 (cnn_train_b128's).
struct PruneCnnStats {
  CnnWidths widths;
  int64_t params = 0, flops = 0, file_bytes = 0;  // flops of one image; file_bytes model-only
  double accuracy = 0;
  double infer_b64_ms = 0, train_b128_ms = 0;
};

// {"widths", "params", "flops", "file_bytes", "accuracy", "infer_b64_ms", "train_b128_ms"}:
// the report's and the experiment's JSON of one model.
nlohmann::json to_json(const PruneCnnStats& s);

// One step of an iterative schedule.
struct PruneCnnStep {
  CnnWidths widths;
  int64_t params = 0, flops = 0, finetune_steps = 0;
  double pruned_accuracy = 0, accuracy = 0;  // right after the cut; after its fine-tuning
};

struct PruneCnnResult {
  PruneCnnStats before, after;        // after: the pruned model (fine-tuned if asked)
  std::vector<PruneCnnStep> steps;    // one per iteration
  double pruned_accuracy = 0;         // right after the first cut, before fine-tuning
  double infer_speedup = 0, train_speedup = 0;  // medians of the per-round ratios before / after
  std::string groups;                 // prune::Dependencies::to_text() of the model
  int64_t channels_removed = 0, finetune_steps = 0;
  double seconds = 0;
};

// Errors: a checkpoint that is not a float FashionCNN, an unknown method, bad ratios or
// per-layer names (prune::plan_channels' errors, naming the layer), no --out.
PruneCnnResult prune_cnn(const PruneCnnOptions& opt);

// `qiusuo prune LM_CKPT --method ffn|heads`: the feed-forward hidden neurons of a language
// model (GPT's c_fc, DeepSeek's SwiGLU gate+up; in an MoE layer the neurons of every routed
// expert and of the shared experts), the same ratio in every block (the config has one
// ffn_hidden and one moe_d_expert), scored by L1 or L2 of their producer rows; or attention
// heads. Optionally fine-tuned with AdamW on training windows (with the MoE balancing as in
// training). The checkpoint keeps the tokenizer and the training config, with config.model
// at the new sizes.
struct PruneLmOptions {
  std::string checkpoint;            // a float LM checkpoint (`qiusuo train lm`)
  // "ffn": feed-forward neurons (criterion below). "heads": attention heads by measured
  // importance (Michel et al. 2019: the rise of the loss on training windows when the head,
  // or a grouped-query group's heads, is masked), the same count in every layer. MHA keeps
  // its head dim with fewer heads (LMConfig::head_dim); MLA removes a head's query rows,
  // its W_UK / W_UV rows and its o_proj columns, keeping the shared latent and RoPE key
  // (qk_nope_head_dim and v_head_dim written out).
  std::string method = "ffn";
  int64_t importance_batches = 4;    // heads: training batches the importance is measured on
  std::string criterion = "l1-channel";  // ffn: l1-channel | l2-channel
  double ratio = 0.5;
  int64_t finetune_steps = 0;        // AdamW steps on training windows after pruning
  double finetune_lr = 3e-4;
  int64_t batch = 8;                 // fine-tuning windows per step
  int64_t eval_windows = 50;         // test windows for the perplexities (0: the whole split)
  uint64_t seed = 0;
  int latency_rounds = 5;            // alternating rounds of the forward latency (0: none)
  std::string out;
  bool quiet = false;
};

struct PruneLmStats {
  int64_t ffn_hidden = 0, n_heads = 0, n_kv_heads = 0;
  int64_t params = 0, flops = 0, file_bytes = 0;  // flops of one window of max_seq_len tokens
  double perplexity = 0;
  double fwd_ms = 0;  // forward of one window, batch 1
};

// {"ffn_hidden", "params", "flops", "file_bytes", "perplexity", "fwd_ms"}.
nlohmann::json to_json(const PruneLmStats& s);

struct PruneLmResult {
  PruneLmStats before, after;
  double pruned_perplexity = 0;  // before fine-tuning
  double speedup = 0;            // median of the per-round ratios
  std::string groups;
  int64_t channels_removed = 0, finetune_steps = 0;  // heads: the heads removed (query heads)
  // heads: the measured importance of each layer's heads or groups ("blocks.0.attn": [...]).
  std::map<std::string, std::vector<double>> importance;
  // What went, per group with a removal: heads (or key/value groups) by attention layer
  // ("blocks.0.attn": [1, 3]), neurons by feed-forward ("blocks.0.mlp.gate_proj+blocks.0.mlp.up_proj").
  std::map<std::string, std::vector<int64_t>> removed;
  double seconds = 0;
};

// Errors: not a float LM checkpoint, ALiBi attention (heads: its slopes depend on the head
// count), a criterion other than l1/l2, a bad ratio or one that leaves a layer or an expert no
// neuron or head group, no --out.
PruneLmResult prune_lm(const PruneLmOptions& opt);

}  // namespace qs::apps
