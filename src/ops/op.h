// The op table: every primitive is one row of ops.def, and this header turns the rows
// into the OpKind enum, the per-op implementation records and the dispatch entry point.
//
// For a row QS_OP(name, nin, nout, flags) the project defines, in src/ops, one
// `const OpImpl name_impl` holding
//   meta      validate the inputs (clear errors) and give output shapes/dtypes
//   ref       the reference kernel: plain loops, double accumulation, always compiled
//   backward  gradients as functions of ops (null for non-differentiable rows)
//   samples   inputs for the generic tests (odd sizes, views, f32 and f64)
// and optimised kernels register themselves (src/kernels/cpu, in an ordered list tried
// before the reference, each able to decline with a reason). What kernels see (OpKind,
// OpCall, KernelImpl, StableOperands) is in kernels/kernel.h, below this header.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "kernels/kernel.h"
#include "qiusuo/attrs.h"
#include "qiusuo/tensor.h"

namespace qs::ops {

enum OpFlags : uint32_t {
  kDiff = 1u << 0,     // has a backward
  kView = 1u << 1,     // output aliases input 0; no kernel
  kSaveIn = 1u << 2,   // backward needs the inputs
  kSaveOut = 1u << 3,  // backward needs the outputs
  kLowp = 1u << 4,     // autocast runs it in bf16 (matmul, linear, conv)
  kF32 = 1u << 5,      // autocast runs it in f32 (softmax, norms, losses, reductions)
  kNoSample = 1u << 6, // the generic harness has no samples for it (tested elsewhere)
  kExact = 1u << 7,    // optimised kernels equal the reference bit for bit (int8 rows): zero tolerance
  kLowpOut = 1u << 8,  // with kLowp: autocast keeps its result in bf16 (attr out_dtype "bf16")
  kBf16 = 1u << 9,     // takes bf16 activations as they are under autocast (its kernels read and
                       // write bf16; per-channel parameters stay f32); samples(bf16) gives them
};

struct TensorSpec {
  Shape shape;
  DType dtype;
  // Optional physical order of the dims, outermost first (empty: row-major). The output
  // is allocated contiguous in that order and handed to the kernel as the permuted view
  // of logical shape `shape` (attention allocates [b, n, h, d] and returns [b, h, n, d]).
  std::vector<int64_t> layout = {};
};
// An uninitialised output for `s`, honouring its layout.
Tensor empty_output(const TensorSpec& s);

// What backward sees. Inputs/outputs are present only if the row saves them.
struct GradCtx {
  std::vector<Tensor> in;
  std::vector<Tensor> out;
  std::vector<TensorSpec> in_spec;
  Attrs attrs;
  std::vector<bool> needs_grad;  // per input
};

using MetaFn = std::vector<TensorSpec> (*)(const OpCall&);
// grads[i] for each output i (undefined if that output got no gradient); returns one
// gradient per input (undefined where none). Shapes may be broadcast: the engine sums
// them back to the input's shape.
using BackwardFn = std::vector<Tensor> (*)(const GradCtx&, const std::vector<Tensor>& grads);
using ViewFn = Tensor (*)(const OpCall&);

// A generic-test sample: inputs and attributes. `grad_inputs` lists inputs gradcheck
// perturbs (default: every floating input).
struct Sample {
  std::vector<Tensor> in;
  Attrs attrs;
  std::string label;
  std::vector<int> grad_inputs;
  // False: only reference vs optimised, no gradcheck (a step function such as
  // fake_quantize, whose straight-through gradient is checked against its formula).
  bool gradcheck = true;
};
using SamplesFn = std::vector<Sample> (*)(DType dtype, Generator& gen);

struct OpImpl {
  MetaFn meta = nullptr;
  KernelFn ref = nullptr;
  BackwardFn backward = nullptr;
  SamplesFn samples = nullptr;
  ViewFn view = nullptr;
};

struct OpDef {
  const char* name;
  OpKind kind;
  int nin;   // -1: variadic
  int nout;
  uint32_t flags;
  const OpImpl* impl;
  std::vector<KernelImpl> optimised;  // optimised_kernels()'s row for this op
};

const OpDef& op_def(OpKind k);
const std::vector<OpDef>& op_table();
const OpDef* find_op(const std::string& name);

// The one dispatch point. Every op call passes through here: hooks (autocast, the
// recorder of quant::chain_quantized_layers, tests' hooks), kernel choice (optimised
// first, reference last; QS_FORCE_IMPL=ref or a ReferenceKernels scope forces references;
// QS_VERBOSE=dispatch explains), the profiler, and autograd.
std::vector<Tensor> dispatch(OpKind op, std::vector<Tensor> in, Attrs attrs = {});
Tensor dispatch1(OpKind op, std::vector<Tensor> in, Attrs attrs = {});

// Runs one kernel on an already-prepared call (used by the generic tests).
// impl_name: "ref" or an optimised kernel's name.
void run_kernel(OpCall& call, const std::string& impl_name);
std::vector<TensorSpec> run_meta(const OpCall& call);

// Hooks around every dispatched op (a thread-local stack; innermost last).
class DispatchHook {
 public:
  virtual ~DispatchHook() = default;
  // May rewrite the inputs (autocast casts them). Returns true if it changed them.
  virtual void before(OpKind op, std::vector<Tensor>& in, Attrs& attrs) {}
  virtual void after(const OpCall& call) {}
  // A forward chose what to run by tensor values (which an op call does not show): `what`
  // says where. graph::trace's recorder keeps it, since its graph would replay the
  // example's choice for every input.
  virtual void value_dependent(const std::string& what) {}
};
void push_dispatch_hook(DispatchHook* h);
void pop_dispatch_hook(DispatchHook* h);
// (qs::note_value_dependent, in qiusuo/ops.h, calls value_dependent on every hook.)

// Records, on this thread while alive, which kernel each dispatched op ran ("ref" or
// an optimised kernel's name): tests use it to show a fast path is taken.
class KernelLog {
 public:
  KernelLog();
  ~KernelLog();
  KernelLog(const KernelLog&) = delete;
  KernelLog& operator=(const KernelLog&) = delete;
  struct Entry {
    OpKind op;
    std::string kernel;
  };
  const std::vector<Entry>& entries() const { return entries_; }
  static void note(OpKind op, const char* kernel);  // called by dispatch

 private:
  KernelLog* prev_;
  std::vector<Entry> entries_;
};

// While alive, every op dispatched on this thread runs its reference kernel, as under
// QS_FORCE_IMPL=ref: the step oracle runs one training step both ways in one process.
class ReferenceKernels {
 public:
  ReferenceKernels();
  ~ReferenceKernels();
  ReferenceKernels(const ReferenceKernels&) = delete;
  ReferenceKernels& operator=(const ReferenceKernels&) = delete;
};

// Declarations of every row's implementation record.
#define QS_OP(name, nin, nout, flags) extern const OpImpl name##_impl;
#include "kernels/ops.def"
#undef QS_OP

}  // namespace qs::ops
