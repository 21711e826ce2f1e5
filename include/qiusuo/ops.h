// The functional API (PyTorch names and semantics). Every function dispatches through
// the op table, so it records autograd, is traced for export and honours autocast.
// Binary ops broadcast (NumPy rules); a double argument is a 0-dim tensor of the
// other operand's dtype. Errors name the op, the expected and the found shapes.
#pragma once
#include <optional>
#include <string>
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

// ---- shape helpers
// Sums `x` down to `shape` (the reverse of broadcasting): the gradient of expand.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace qs
