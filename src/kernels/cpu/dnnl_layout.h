// Moving tensors between the op contract's plain layouts and the layouts a oneDNN
// primitive chose (format_tag::any): reorders into thread-local scratch that is reused
// from call to call, so a primitive call allocates nothing once warm.
#pragma once
#include <utility>
#include <vector>

#include "backend/dnnl_util.h"

namespace qs::kernels {

// A key that tells two memory descriptors apart (dims, type, strides, inner blocks).
std::string md_key(const dnnl::memory::desc& md);

// from -> to (same dims, any layouts and types oneDNN converts between): oneDNN's reorder,
// or with `own` our own where one applies (bf16 between plain and 16-channel blocks).
void reorder(const dnnl::memory& from, const dnnl::memory& to, bool own = true);

class Layouts {
 public:
  // A memory to read from in layout `want`: the user's buffer when the layouts agree,
  // else a reorder (layout and/or bf16 -> f32) into scratch.
  dnnl::memory in(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want);
  // The same for an input operand of the op being run (its buffer is not written while an
  // ops::StableOperands scope is open): inside such a scope the conversion is kept, and
  // the next op of the scope that reads the buffer in the same layouts reuses it.
  dnnl::memory in_operand(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want);
  // A memory to write in layout `want`; finish() moves it into the user's buffer.
  dnnl::memory out(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want);
  // Runs the pending output reorders and waits for the stream.
  void finish();

 private:
  void* scratch(size_t bytes);
  int slot_ = 0;
  std::vector<std::pair<dnnl::memory, dnnl::memory>> pending_;  // (from, to)
};

}  // namespace qs::kernels
