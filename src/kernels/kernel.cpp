#include "kernels/kernel.h"

#include <atomic>

#include "qiusuo/error.h"

namespace qs::ops {

#ifdef QS_WITH_OPTIMISED
void register_optimised_kernels(KernelTable& table);  // src/kernels/cpu/register.cpp
#endif

const char* op_name(OpKind k) {
  static const char* const names[] = {
#define QS_OP(name, nin, nout, flags) #name,
#include "kernels/ops.def"
#undef QS_OP
  };
  QS_CHECK(size_t(k) < size_t(kNumOps), "internal: op kind {} out of range", int(k));
  return names[size_t(k)];
}

void add_kernel(KernelTable& table, OpKind k, KernelImpl impl) { table[size_t(k)].push_back(impl); }

const KernelTable& optimised_kernels() {
  static const KernelTable table = [] {
    KernelTable t(kNumOps);
#ifdef QS_WITH_OPTIMISED
    register_optimised_kernels(t);
#endif
    return t;
  }();
  return table;
}

void run_optimised(OpCall& call, const char* name) {
  for (const KernelImpl& k : optimised_kernels()[size_t(call.op)]) {
    if (std::string_view(k.name) != name) continue;
    if (const char* why = k.supports(call))
      throw Error(fmt::format("internal: kernel {}/{} declines the call: {}", op_name(call.op), name, why));
    k.run(call);
    return;
  }
  throw Error(fmt::format("internal: op {} has no optimised kernel '{}'", op_name(call.op), name));
}

namespace {
thread_local int g_stable_depth = 0;
thread_local uint64_t g_stable_id = 0;
std::atomic<uint64_t> g_stable_next{1};
}  // namespace
StableOperands::StableOperands() {
  if (g_stable_depth++ == 0) g_stable_id = g_stable_next.fetch_add(1, std::memory_order_relaxed);
}
StableOperands::~StableOperands() {
  if (--g_stable_depth == 0) g_stable_id = 0;
}
uint64_t stable_operands_scope() { return g_stable_id; }

}  // namespace qs::ops
