// The figures and pages of `qiusuo attention`, drawn from an AttentionSnapshot alone (so
// decoder-only and encoder-decoder models draw alike).
//
// Static figures (write_attention_figures): per map and head a heatmap, per map a grid of
// all heads and the head average, and attention rollout; plus index.html (shows them all)
// and attention.json (tokens, shapes, files). File stems: an LM's map "blocks.<L>.attn" is
// "layer<L>"; encoder-decoder maps are "encoder_layer<L>", "decoder_layer<L>" and
// "cross_layer<L>". Rollout: "rollout" for an LM (over its causal self-attention); an
// encoder-decoder model gets "encoder_rollout" (encoder self-attention) and
// "decoder_rollout" (decoder self-attention only: the paths through cross-attention into
// the encoder are not followed, so it shows how target positions mix among themselves).
//
// Dynamic views (one self-contained HTML file each: inline CSS, JS and data, canvas
// rendering, no network): the same text across checkpoints, and a generation step by
// step. Weights travel quantised to one byte on a log scale (see quantize_log_u8).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qiusuo/apps/attention_view.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/viz/heatmap.h"

namespace qs::apps {

struct AttentionFigureOptions {
  int64_t layer = -1;  // only maps of this layer (-1: all)
  int64_t head = -1;   // only this head's heatmap (-1: all); grids and means always show all
  bool png = true, svg = true;
  viz::HeatmapStyle style;  // style.log: log10 colour scale with style.log_floor
  std::string title;        // the page's title, e.g. the checkpoint's name
};

// Writes the figures, index.html and attention.json into `dir` (created when missing) and
// returns the names written, relative to dir. Errors: a snapshot without maps, labels that
// do not match the maps' shapes, a layer or head that does not exist (naming the ones that
// do); IOError when dir cannot be created or written.
std::vector<std::string> write_attention_figures(const AttentionSnapshot& s, const std::string& dir,
                                                 const AttentionFigureOptions& opt);

// One byte per weight: 0 below `floor`, else 1 + round(254 * log10(w / floor) / log10(1 / floor))
// (capped at 255): a relative error of at most 1.8% over 1e-4..1 with the default floor, good for
// linear and log display alike. dequantize_log_u8 inverts it (0 -> 0).
uint8_t quantize_log_u8(double w, double floor = 1e-4);
double dequantize_log_u8(uint8_t q, double floor = 1e-4);

// A slider over checkpoints: frame i shows snaps[i] (labelled labels[i], e.g. "step 200").
// Maps larger than view_max tokens per side are max-pooled to at most view_max.
// Errors: no snapshots, label count mismatch, snapshots with different tokens or maps
// (names, heads, shapes).
std::string checkpoints_view_html(const std::vector<AttentionSnapshot>& snaps, const std::vector<std::string>& labels,
                                  const std::string& title, int64_t view_max = 256);

// A generation, one frame per generated token: `s` is the attention over prompt and
// continuation (all but the last generated token, which no step attends from); frame k
// (0-based) is the step that produced generated token k: rows and columns 0 .. prompt + k - 1.
// Causal masking makes those rows exactly what the model computed at that step.
struct GenerationCapture {
  AttentionSnapshot snapshot;
  int64_t prompt_tokens = 0;
  std::vector<std::string> generated;  // labels of the generated tokens, one per frame
};
// Generates max_tokens tokens after `prompt` (opt.temperature 0: greedy) and captures the
// attention. Errors: an empty prompt, prompt + max_tokens beyond the model's limit, max_tokens < 1.
GenerationCapture capture_generation(LoadedLm& lm, const std::string& prompt, const GenerateOptions& opt);
std::string generation_view_html(const GenerationCapture& g, const std::string& title, int64_t view_max = 256);

}  // namespace qs::apps
