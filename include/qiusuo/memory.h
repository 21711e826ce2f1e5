// Tensor-storage memory statistics: every qs::Storage allocation (tensors, parameters,
// gradients, optimiser state, autograd's saved tensors) counted in bytes as allocated
// (rounded up to 64). Kernels' private scratch (std::vector workspaces, oneDNN scratchpads)
// is not tensor storage and is not counted. Thread-safe (relaxed atomics); the cost is two
// atomic adds per allocation.
#pragma once
#include <cstdint>

namespace qs {

struct MemoryStats {
  int64_t current_bytes = 0;  // live storage now
  int64_t peak_bytes = 0;     // the most live at once since start or reset_peak_memory()
  int64_t allocations = 0;    // Storage objects created since start
};

MemoryStats memory_stats();
// Sets peak_bytes to current_bytes (like torch.cuda.reset_peak_memory_stats).
void reset_peak_memory();

}  // namespace qs
