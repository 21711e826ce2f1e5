// The kernel interface: what a kernel is handed (OpCall), how an optimised kernel
// registers (KernelImpl, add_kernel) and the scopes kernels consult. It sits below
// src/ops: kernels include this and never ops/op.h; ops/op.h builds the op table
// (meta, reference, backward, samples: OpDef) on top of it. The types keep the
// namespace qs::ops because they are the op table's vocabulary.
#pragma once
#include <cstdint>
#include <vector>

#include "qiusuo/attrs.h"
#include "qiusuo/tensor.h"

namespace qs::ops {

// One value per row of kernels/ops.def, in its order.
enum class OpKind : uint16_t {
#define QS_OP(name, nin, nout, flags) name,
#include "kernels/ops.def"
#undef QS_OP
  kCount
};
constexpr int kNumOps = int(OpKind::kCount);

const char* op_name(OpKind k);  // the row's name ("conv", "relu", ...)

// One invocation of an op: inputs, attributes, outputs (allocated by dispatch).
struct OpCall {
  OpKind op;
  std::vector<Tensor> in;
  Attrs attrs;
  std::vector<Tensor> out;
};

using KernelFn = void (*)(OpCall&);
using SupportsFn = const char* (*)(const OpCall&);  // nullptr: supported; else why not

struct KernelImpl {
  const char* name;  // "cpu", "onednn", ...
  SupportsFn supports;
  KernelFn run;
};

// The optimised kernels of each op (indexed by OpKind), in the order dispatch tries
// them before the reference.
using KernelTable = std::vector<std::vector<KernelImpl>>;
void add_kernel(KernelTable& table, OpKind k, KernelImpl impl);

// Every optimised kernel, registered once on first use (src/kernels/cpu/register.cpp);
// every row empty in builds without them (QS_WITH_OPTIMISED off).
const KernelTable& optimised_kernels();

// Runs the optimised kernel `name` of call.op on a prepared call, for a kernel that
// hands part of its work to another (a cast, a GEMM). Errors: no such kernel, or it
// declines the call (with its reason).
void run_optimised(OpCall& call, const char* name);

// While alive, the operands of the ops dispatched on this thread are not written, so a
// kernel may reuse what it derived from an input buffer (a layout conversion) when the
// next op reads the same buffer. Opened by backward functions that feed one gradient to
// several ops (convolution: backward-data and backward-weights both reorder it).
class StableOperands {
 public:
  StableOperands();
  ~StableOperands();
  StableOperands(const StableOperands&) = delete;
  StableOperands& operator=(const StableOperands&) = delete;
};
// 0 outside every StableOperands scope; else an id unique to this thread's outermost scope.
uint64_t stable_operands_scope();

}  // namespace qs::ops
