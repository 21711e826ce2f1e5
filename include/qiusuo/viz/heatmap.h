// Heatmaps of attention: one matrix with token labels on both axes (rows: queries,
// columns: keys), a title and a colour bar with ticks, on a linear or log10 scale; the
// same figure as PNG (viz::Image) and as SVG text. Small multiples of all heads of a layer
// share one colour bar. Helpers turn captured weights into matrices: one head, the head
// average and attention rollout (Abnar & Zuidema 2020).
//
// Long inputs: the matrix's largest side is capped (HeatmapStyle::max_matrix_px, 2048 px by
// default). Up to that many tokens every token gets a cell of at least 1 px; beyond it the
// matrix is max-pooled (each drawn cell is the largest weight of its block of tokens, so a
// sharp peak, the thing one looks for, survives; mean pooling would dilute it). Labels thin
// out to every k-th token once cells are smaller than a line of text; the axis title says k.
// SVG draws each cell as a <rect> up to svg_rect_limit (128) cells per side, larger matrices
// as one embedded PNG <image> (a data URI), which keeps a 1024-token SVG near the PNG's size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qiusuo/tensor.h"
#include "qiusuo/viz/image.h"

namespace qs::viz {

// Row-major values.
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> v;
  float at(int64_t r, int64_t c) const { return v[size_t(r * cols + c)]; }
};

// Value -> colour (viridis). Linear: [lo, hi] -> [0, 1]. Log: log10 of max(v, lo) between
// log10(lo) (the floor) and log10(hi); values at or below the floor take the bottom colour.
struct ColorScale {
  bool log = false;
  double lo = 0, hi = 1;
  // Linear: [0, the largest value] (1 when all are <= 0). Log: [floor, max(largest, 10 floor)].
  // Errors: log with floor <= 0.
  static ColorScale fit(const std::vector<const Matrix*>& ms, bool log, double floor = 1e-4);
  double position(double v) const;  // in [0, 1]; NaN -> 0
  Rgb color(double v) const { return viridis(position(v)); }
  struct Tick {
    double value, position;
    std::string label;  // log: "≤1e-4" at the floor, then decades ("1e-3", "0.01", "0.1", "1")
  };
  std::vector<Tick> ticks() const;
};

struct HeatmapStyle {
  bool log = false;
  double log_floor = 1e-4;
  int font_px = 12;
  int cell_px = 18;          // cell size while the matrix fits in max_matrix_px
  int max_matrix_px = 2048;  // the matrix's largest side (16..3584: with labels and colour bar a
                             // figure stays within about 4096 px)
  int grid_panel_px = 220;   // each head's matrix in a grid
  int svg_rect_limit = 128;  // cells per side drawn as <rect>; above: an embedded PNG
  int label_chars = 14;      // longer labels are cut with "…"
};

struct Heatmap {
  std::string title;
  Matrix m;
  std::vector<std::string> row_labels, col_labels;  // m.rows and m.cols entries (or empty: no labels)
  std::string row_axis = "query", col_axis = "key";
};

// Errors: an empty matrix, label counts that do not match, a style outside its ranges.
Image heatmap_png(const Heatmap& h, const HeatmapStyle& style = {});
std::string heatmap_svg(const Heatmap& h, const HeatmapStyle& style = {});
// All panels (e.g. every head of a layer) in a near-square grid, each titled, without
// token labels, one colour scale fitted to all of them. Errors: no panels, an empty matrix.
Image heatmap_grid_png(const std::vector<Heatmap>& panels, const std::string& title, const HeatmapStyle& style = {});
std::string heatmap_grid_svg(const std::vector<Heatmap>& panels, const std::string& title,
                             const HeatmapStyle& style = {});

// Each output cell is the maximum of a block of ceil(rows / max_rows) x ceil(cols / max_cols)
// input cells (the input itself when it fits).
Matrix max_pool(const Matrix& m, int64_t max_rows, int64_t max_cols);

// From captured attention weights w (f32 or f64, [H, Tq, Tk]): head h, or the mean over heads.
// Errors: w not 3-d, h out of range.
Matrix head_matrix(const Tensor& w, int64_t h);
Matrix head_mean(const Tensor& w);

// Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"):
// per layer A_l = 0.5 * mean_heads(W_l) + 0.5 * I (the residual connection), rows
// renormalised to sum 1; rollout = A_L ... A_2 A_1 (layers[0] is the first layer), computed in
// double. Row i: how much each input token contributes to position i after the last layer.
// Errors: no layers, a layer that is not [H, T, T] with the same T as the others.
Matrix attention_rollout(const std::vector<Tensor>& layers);

}  // namespace qs::viz
