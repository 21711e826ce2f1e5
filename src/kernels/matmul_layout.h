// How a batched matmul walks its operands: C[b] = A[b] @ B[b] over broadcast batch
// dims. Shared by the reference and the f64 kernel.
#pragma once
#include "kernels/kernel.h"
#include "tensor/strided.h"

namespace qs::kernels {

// linear's activation attribute: "none" (absent) or "gelu" (ops.def).
inline bool linear_gelu(const Attrs& a) { return a.has("activation") && a.s("activation") == "gelu"; }

struct MatmulLayout {
  int64_t M, K, N;
  Shape batch;      // broadcast batch dims of the output
  Shape as, bs;     // element strides of A and B over [batch..., rows, cols] (0 where broadcast)
  int64_t batches;  // prod(batch)

  explicit MatmulLayout(const ops::OpCall& c) {
    const Tensor &a = c.in[0], &b = c.in[1];
    const Tensor& out = c.out[0];
    M = a.size(-2), K = a.size(-1), N = b.size(-1);
    batch.assign(out.shape().begin(), out.shape().end() - 2);
    Shape a_full(batch), b_full(batch);
    a_full.insert(a_full.end(), {M, K});
    b_full.insert(b_full.end(), {K, N});
    as = broadcast_strides(a, a_full);
    bs = broadcast_strides(b, b_full);
    batches = shape_numel(batch);
  }
  // Element offsets of batch ib's A and B.
  int64_t a_offset(int64_t ib) const { return StridedIndex(batch, as).offset(ib); }
  int64_t b_offset(int64_t ib) const { return StridedIndex(batch, bs).offset(ib); }
  int64_t a_row() const { return as[batch.size()]; }
  int64_t a_col() const { return as[batch.size() + 1]; }
  int64_t b_row() const { return bs[batch.size()]; }
  int64_t b_col() const { return bs[batch.size() + 1]; }
};

}  // namespace qs::kernels
