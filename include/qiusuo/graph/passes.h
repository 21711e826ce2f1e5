// Graph passes: each rewrites a verified graph into an equivalent one and returns how many
// changes it made. optimize() runs them to a fixed point.
//
//   fold_batch_norm       convolution -> batch_norm (eval) becomes one convolution with
//                         scaled weights and a shifted bias (and a relu node when the batch
//                         norm had its fused ReLU); only when the batch norm's statistics
//                         outputs are unused and its parameters are params or constants
//   fold_constants        nodes whose inputs are all params or constants run once; their
//                         outputs become constants (autocast's weight casts become bf16
//                         weights); skipped when an output would be much larger than its
//                         inputs (an expand)
//   fuse_linear           matmul(x, W) (+ b) with W [K, N] and b [N] params or constants
//                         becomes linear(x, W^T, b)
//   fuse_activations      a linear whose only reader is an exact gelu, a convolution whose
//                         only reader is a relu, take it as their activation (one pass over
//                         the output instead of two; folded batch norms' ReLUs go this way)
//   fuse_attention        matmul(q, permute(k, [0, 1, 3, 2])) (x or / a scalar) (+ a causal
//                         mask constant: 0, and -inf above the diagonal) -> softmax(-1) ->
//                         matmul(., v), f32 and 4-D, becomes the fused attention row (no
//                         n x m scores in memory); not when a view reads the result directly
//   eliminate_common_subexpressions   two nodes of the same op, inputs and attributes: the
//                         second's outputs are replaced by the first's
//   eliminate_dead_code   nodes none of whose outputs reach a graph output, and params and
//                         constants nothing reads, are removed
//
// Folding changes the order of floating-point operations: a folded graph matches the
// original within rounding, not bit for bit (tests/graph/test_graph.cpp bounds it).
#pragma once
#include <string>

#include "qiusuo/graph/graph.h"

namespace qs::graph {

int fold_batch_norm(Graph& g);
int fold_constants(Graph& g);
int fuse_linear(Graph& g);
int fuse_activations(Graph& g);
int fuse_attention(Graph& g);
int eliminate_common_subexpressions(Graph& g);
int eliminate_dead_code(Graph& g);

struct PassReport {
  int batch_norms_folded = 0, constants_folded = 0, linears_fused = 0, activations_fused = 0, attentions_fused = 0,
      subexpressions_merged = 0, nodes_removed = 0;
  int64_t nodes_before = 0, nodes_after = 0;
  int64_t data_bytes_before = 0, data_bytes_after = 0;      // params and constants
  int64_t peak_bytes_before = 0, peak_bytes_after = 0;      // peak_intermediate_bytes()
  std::string to_string() const;
};

// All passes, repeated until none changes anything; the result is verified.
PassReport optimize(Graph& g);

// The largest total size of node outputs alive at once when run() executes the graph
// (each output lives from its node to its last reader; graph outputs to the end): what
// running it allocates beyond its inputs and data; at batch 1 for a dynamic batch.
int64_t peak_intermediate_bytes(const Graph& g);

}  // namespace qs::graph
