// Tensor-storage memory statistics: every qs::Storage allocation (tensors, parameters,
// gradients, optimiser state, autograd's saved tensors) counted in bytes as allocated
// (rounded up to 64). Kernels' private scratch (std::vector workspaces, oneDNN scratchpads)
// is not tensor storage and is not counted. Thread-safe (relaxed atomics); the cost is two
// atomic adds per allocation.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace qs {

struct MemoryStats {
  int64_t current_bytes = 0;  // live storage now
  int64_t peak_bytes = 0;     // the most live at once since start or reset_peak_memory()
  int64_t allocations = 0;    // Storage objects created since start
};

MemoryStats memory_stats();
// Sets peak_bytes to current_bytes (like torch.cuda.reset_peak_memory_stats).
void reset_peak_memory();

// ---- Resident memory of the process (Linux /proc/self/status; everything, not only tensors)
struct ResidentMemory {
  int64_t rss_bytes = -1;  // VmRSS: resident now
  int64_t hwm_bytes = -1;  // VmHWM: the resident peak since start or reset_resident_peak()
};
// -1 fields where /proc/self/status is unreadable (not Linux).
ResidentMemory resident_memory();
// The "<key>:  N kB" line of a /proc/<pid>/status text, in bytes; -1 when the key is absent
// or its value is not "<digits> kB".
int64_t parse_proc_status_bytes(const std::string& status_text, const std::string& key);
// Resets VmHWM to VmRSS (writes 5 to /proc/self/clear_refs, Linux >= 4.0); false if refused.
bool reset_resident_peak();
// How much the resident set grows while fn runs (e.g. loading a model and one forward):
// freed heap is first returned to the OS (malloc_trim, since the allocator keeps it), the
// peak reset, then {peak during fn - resident before, resident after fn (freed heap returned
// again) - resident before}: retained counts what fn keeps alive, e.g. a model it assigns to
// a variable the caller holds.
// In-process, so only approximate: pages fn reuses from earlier work (code, the OpenMP
// pool, oneDNN's primitive cache) are not counted again. -1 fields where unsupported.
struct ResidentGrowth {
  int64_t peak_bytes = -1;
  int64_t retained_bytes = -1;
};
ResidentGrowth resident_growth(const std::function<void()>& fn);

}  // namespace qs
