// The functional API (PyTorch names and semantics). Every function dispatches through
// the op table, so it records autograd, honours autocast, is seen by the profiler and can be
// traced into a static graph (qiusuo/graph/graph.h).
// Binary ops broadcast (NumPy rules); a double argument is a 0-dim tensor of the
// other operand's dtype. Errors name the op, the expected and the found shapes.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs {

// ---- elementwise unary
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor gelu(const Tensor& x, const std::string& approximate = "none");  // "none" (erf) | "tanh"
Tensor silu(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor square(const Tensor& x);  // x * x

// ---- elementwise binary (broadcasting)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);  // bool results; not differentiable
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond: bool
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);  // mask: bool, broadcast

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// ---- reductions. dims empty = all dims.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// torch.var: sum (x - mean)^2 / (N - correction); correction 1 is the unbiased estimate.
// N <= correction gives inf or NaN, as in PyTorch.
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, double correction = 1.0, bool keepdim = false);
// log sum exp(x) over dims, computed stably (max subtracted first); all -inf gives -inf.
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Largest / smallest values over dims (torch.amax / amin). Numeric dtypes (not bool);
// reduced dims must be non-empty. Tied elements share the gradient evenly. NaN propagates.
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// torch.max(x, dim) / torch.min(x, dim): values and the int64 index of the first extremum
// along `dim`. The gradient of values goes to that index only.
struct ValuesIndices {
  Tensor values;
  Tensor indices;  // int64
};
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
// torch.topk: the k largest (largest = true) or smallest elements along dim, and their
// int64 indices; values and indices have x's shape with size k at dim. Ranking: equal
// values go to the lower index first; NaN counts as larger than every number. sorted:
// in rank order (best first); !sorted: the same k elements in ascending index order.
// Numeric dtypes (not bool), rank >= 1, 0 <= k <= x.size(dim). The gradient of values
// goes to the selected positions; indices are not differentiable.
ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true);
// Index (int64) of the first maximum along dim, or into the flattened tensor when dim is
// absent. Not differentiable.
Tensor argmax(const Tensor& x, std::optional<int64_t> dim = std::nullopt, bool keepdim = false);

// ---- softmax: numerically stable (the max is subtracted), over any dim.
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- normalisation
// layer_norm: x [..., *normalized_shape]; y = (x - mean) / sqrt(var_biased + eps) * weight + bias,
// statistics over the trailing normalized_shape dims. weight and bias have exactly
// normalized_shape (or are undefined). Floating dtypes; all tensors of one dtype.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
// rms_norm: y = x / sqrt(mean(x^2) + eps) * weight over the trailing normalized_shape dims.
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(), double eps = 1e-6);

// ---- losses. reduction: "mean" | "sum" | "none".
// nll_loss: logp [N, C] or [N, C, d1, ...] (or [C] with a 0-d target), target int64 [N, d1, ...]
// with values in [0, C) or ignore_index; weight [C] or undefined. "mean" divides by the
// summed weights of the targets not ignored (NaN if all are ignored, as in PyTorch).
// Out-of-range targets are errors. Differentiable in logp only.
Tensor nll_loss(const Tensor& logp, const Tensor& target, const Tensor& weight = Tensor(), int64_t ignore_index = -100,
                const std::string& reduction = "mean");
// cross_entropy = nll_loss(log_softmax(logits, 1), target) with PyTorch's label smoothing:
// (1 - s) * nll + s / C * smooth, smooth = -sum_c logp (0 at ignored targets); "mean" divides
// both terms by the number of targets not ignored. logits [C] (0-d target), [N, C] or
// [N, C, d1, ...]; target int64 as for nll_loss. Errors on label_smoothing outside [0, 1].
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, const std::string& reduction = "mean");
// Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 5) for
// softmax classification: FL = -alpha_t (1 - p_t)^gamma log p_t, p_t the probability of the
// target class. logits [N, C], target int64 [N] in [0, C). alpha: empty (no weighting), one
// value a (binary: a for class 1, 1 - a for class 0, as the paper's alpha on the positives),
// or C values (a weight per class). gamma = 0 with no alpha is cross entropy. "mean"
// averages over the N samples (not over their weights). Differentiable in logits.
// Errors: shapes, targets out of range, gamma < 0, an alpha of another length.
Tensor focal_loss(const Tensor& logits, const Tensor& target, double gamma = 2.0, const std::vector<double>& alpha = {},
                  const std::string& reduction = "mean");
// (a - b)^2, broadcasting, reduced.
Tensor mse_loss(const Tensor& a, const Tensor& b, const std::string& reduction = "mean");
// Stable sigmoid + binary cross entropy: (1 - y) x + (1 + (pw - 1) y) softplus(-x), which is
// max(x, 0) - x y + log(1 + exp(-|x|)) without pos_weight. pos_weight broadcasts over the
// last dim (one per class) or is undefined.
Tensor binary_cross_entropy_with_logits(const Tensor& x, const Tensor& y, const Tensor& pos_weight = Tensor(),
                                        const std::string& reduction = "mean");

// ---- dropout: zeroes each element with probability p and scales the rest by 1/(1-p).
// The mask is a pure function of a seed drawn from `gen` (default: the global generator),
// so the same generator state gives the same mask. Returns x itself when !training or p == 0;
// p == 1 gives zeros. p must be in [0, 1].
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true, Generator* gen = nullptr);

// ---- linear algebra
// matmul: 1-D and 2-D as torch.matmul; >2-D batched with broadcast batch dims.
Tensor matmul(const Tensor& a, const Tensor& b);
// linear: y = x w^T + b; x [..., K], w [N, K], b [N] or undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// linear with an activation applied in the same pass: activation "none" (plain linear) or
// "gelu" (exact erf GELU: gelu(x w^T + b)). Differentiable (the backward recomputes
// x w^T + b), but meant for inference, where it saves one pass over the output. Other
// activations are an error.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, const std::string& activation);

// ---- indexing and joining. Index tensors are i64; an index outside its valid range
// is an error naming the index, its position and the bound. dim may be negative.
// embedding: weight [V, D] (float), indices i64 of any shape -> [..., D] (copies rows).
// Backward scatter-adds the output gradient into weight rows; row padding_idx gets no
// gradient. padding_idx < 0 means none (torch wraps negative values; we do not).
Tensor embedding(const Tensor& indices, const Tensor& weight, int64_t padding_idx = -1);
// index_select: index 1-d of size n; the result has x's shape with size n at dim.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// gather: index has x's rank, index.size(d) <= x.size(d) for d != dim; out has index's
// shape: out[i][j] = x[i][index[i][j]] (for dim = 1).
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// scatter_add (out of place): returns x + src scattered along dim by index
// (out[i][index[i][j]] += src[i][j] for dim = 1). index has x's rank,
// index.size(d) <= src.size(d) for all d and <= x.size(d) for d != dim.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// cat: same dtype and rank, equal sizes except at dim. stack: equal shapes, new dim.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// split/chunk return views (narrow) of x. split(x, n): pieces of size n, the last may be
// smaller; split(x, sizes): the sizes must sum to x.size(dim); chunk(x, k): at most k
// pieces of size ceil(size / k), as torch.chunk.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// ---- convolution
// A per-spatial-dim size argument: one int (repeated over every spatial dim) or a list
// with one value per spatial dim ({2, 1}).
struct SizeArg {
  std::vector<int64_t> v;  // empty: the op's default
  SizeArg() = default;
  SizeArg(int64_t x) : v{x} {}
  SizeArg(int x) : v{int64_t(x)} {}
  SizeArg(std::initializer_list<int64_t> l) : v(l) {}
  SizeArg(std::vector<int64_t> x) : v(std::move(x)) {}
};
// Cross-correlation as torch.nn.functional.conv1d/2d/3d.
// x [N, C, L] / [N, C, H, W] / [N, C, D, H, W]; w [O, C / groups, k...]; b [O] or undefined.
// y [N, O, out...], out = floor((in + 2 padding - dilation (k - 1) - 1) / stride) + 1.
// f32 or f64 (x and w alike); bf16 x and w give an f32 result, or a bf16 one under
// autocast (which sets the op's attr out_dtype: a conv net's activations stay bf16).
// Errors: rank, channel mismatch (C != w.size(1) * groups), groups not dividing C or O,
// a window larger than the padded input, a bias that is not [O].
Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), SizeArg stride = 1, SizeArg padding = 0,
              SizeArg dilation = 1, int64_t groups = 1);
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), SizeArg stride = 1, SizeArg padding = 0,
              SizeArg dilation = 1, int64_t groups = 1);
Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), SizeArg stride = 1, SizeArg padding = 0,
              SizeArg dilation = 1, int64_t groups = 1);

// ---- pooling (N, C kept; windows over the spatial dims; f32 or f64)
// Sizes as for convolution; stride {} (default) = kernel; padding at most kernel / 2;
// out = floor((in + 2 padding - kernel) / stride) + 1 (no ceil mode, no dilation).
// max_pool*: padded positions never win. The _with_indices variants also return i64
// indices of the maxima, flat within each input spatial plane (d * H * W + h * W + w),
// as PyTorch's return_indices; ties keep the first maximum in window order.
// max_pool* also take u8 (quantised codes; the max of codes is the code of the max):
// inference only, no gradient, the indices are an empty i64 [0]; a channels-last input
// gives a channels-last output (include/qiusuo/quant/modules.h, chained layers).
Tensor max_pool2d(const Tensor& x, SizeArg kernel, SizeArg stride = {}, SizeArg padding = 0);
Tensor max_pool3d(const Tensor& x, SizeArg kernel, SizeArg stride = {}, SizeArg padding = 0);
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, SizeArg kernel, SizeArg stride = {},
                                                  SizeArg padding = 0);
std::pair<Tensor, Tensor> max_pool3d_with_indices(const Tensor& x, SizeArg kernel, SizeArg stride = {},
                                                  SizeArg padding = 0);
// avg_pool*: the divisor is the full window when count_include_pad, else the number of
// input elements it covers.
Tensor avg_pool2d(const Tensor& x, SizeArg kernel, SizeArg stride = {}, SizeArg padding = 0,
                  bool count_include_pad = true);
Tensor avg_pool3d(const Tensor& x, SizeArg kernel, SizeArg stride = {}, SizeArg padding = 0,
                  bool count_include_pad = true);
// adaptive_avg_pool*: output o averages input [floor(o in / out), ceil((o + 1) in / out)).
Tensor adaptive_avg_pool1d(const Tensor& x, SizeArg output_size);  // x [N, C, L]
Tensor adaptive_avg_pool2d(const Tensor& x, SizeArg output_size);  // x [N, C, H, W]
Tensor adaptive_avg_pool3d(const Tensor& x, SizeArg output_size);  // x [N, C, D, H, W]

// ---- normalisation
// batch_norm as torch.nn.functional.batch_norm. x [N, C, ...]; running_mean, running_var,
// weight, bias: [C] of x's dtype (f32 for a bf16 x: autocast's activations, with f32
// statistics), each may be undefined (weight 1, bias 0).
// training: normalises with the batch mean and biased variance over N and the spatial
// dims (needs more than one value per channel) and, when given, updates the running
// statistics in place (not recorded by autograd):
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var + momentum var * M / (M - 1)   (unbiased)
// eval: uses running_mean / running_var (both required). Differentiable in x, weight, bias.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), bool training = false,
                  double momentum = 0.1, double eps = 1e-5);
// relu(batch_norm(...)) in one op (not in PyTorch's API): the same values, running
// statistics and gradients, with one pass over x instead of two (and the same in backward).
Tensor batch_norm_relu(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), bool training = false,
                       double momentum = 0.1, double eps = 1e-5);

// ---- resampling (torch.nn.functional.interpolate)
// x [N, C, spatial...] with 1 to 3 spatial dims, resized to `size` (one value, repeated,
// or one per spatial dim). mode: "nearest" (any rank), "linear" (1-D), "bilinear" (2-D),
// "trilinear" (3-D); align_corners only for the linear modes. Differentiable in x.
Tensor interpolate(const Tensor& x, SizeArg size, const std::string& mode = "nearest", bool align_corners = false);
// The same with scale_factor: out = floor(in * scale_factor) and source coordinates
// stepped by 1 / scale_factor, as PyTorch with recompute_scale_factor unset.
Tensor interpolate_scale(const Tensor& x, double scale_factor, const std::string& mode = "nearest",
                         bool align_corners = false);

// ---- positions
// Rotary position embedding, rotate-half layout (GPT-NeoX / Llama): x [..., n, d], d even,
// cos and sin [n, d / 2] (row t holds cos/sin(pos_t * inv_freq)); with x1 = x[..., :d/2],
// x2 = x[..., d/2:]: out = cat(x1 cos - x2 sin, x1 sin + x2 cos). x may be any view (a head
// slice of a fused qkv projection is read in place when its last dim is contiguous); the
// output is contiguous. cos and sin have x's floating dtype. Differentiable in x (the
// rotation by -angle) and in cos and sin. Errors: d odd or 0, tables not [n, d / 2], dtypes.
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin);

// ---- tracing
// Says that the running forward chooses what to run by tensor values here (`what`, e.g. an
// MoE layer's routing), which the op calls alone do not show: graph::trace marks its graph
// as holding the example's choice (Graph::value_dependent). Costs nothing when not traced.
void note_value_dependent(const char* what);

// ---- shape helpers
// Sums `x` down to `shape` (the reverse of broadcasting): the gradient of expand.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace qs
