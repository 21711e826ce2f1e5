// The generic op harness, driven by the op table (ggml's test-backend-ops, PyTorch's
// OpInfo + gradcheck): every optimised kernel against its reference on the row's
// samples (odd sizes, strided views, 1 and 2 threads, guard bytes after outputs), and
// gradcheck of every differentiable row in f64 with a randomly weighted loss.
#pragma once
#include <string>
#include <vector>

#include "ops/op.h"

namespace qs::ops {

struct CheckResult {
  std::string op;
  std::string kernel;  // optimised kernel name, or "grad"
  std::string sample;
  std::string dtype;
  bool ok = true;
  bool skipped = false;
  std::string message;  // the worst error found, or why skipped
};

// Reference vs every optimised kernel of `def` (f32 and f64 samples).
std::vector<CheckResult> check_kernels(const OpDef& def, uint64_t seed = 1);
// Finite differences vs autograd in f64 (eps 1e-6, atol 1e-5, rtol 1e-3). Up to 200
// coordinates per input (fewer, down to 32, on samples over 16k elements), plus a
// directional derivative along a random unit vector for inputs not probed in full.
std::vector<CheckResult> check_gradients(const OpDef& def, uint64_t seed = 1);

// gradcheck of an arbitrary function of tensors (for composites and modules).
// Returns an empty string on success, else a description of the worst mismatch.
std::string gradcheck(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
                      const std::vector<Tensor>& inputs, uint64_t seed = 1, int max_coords = 200);

}  // namespace qs::ops
