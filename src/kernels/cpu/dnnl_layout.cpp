#include "kernels/cpu/dnnl_layout.h"

#include <memory>

#include "kernels/kernel.h"

namespace qs::kernels {

namespace {
void reorder(const dnnl::memory& from, const dnnl::memory& to) {
  std::string key = "reorder|" + md_key(from.get_desc()) + "|" + md_key(to.get_desc());
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::reorder::primitive_desc pd(backend::dnnl_engine(), from.get_desc(), backend::dnnl_engine(), to.get_desc());
    return backend::CachedPrimitive{dnnl::reorder(pd), pd, pd.impl_info_str()};
  });
  cp.prim.execute(backend::dnnl_stream(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}
}  // namespace

std::string md_key(const dnnl::memory::desc& md) {
  const auto& d = md.data;
  std::string s = std::to_string(int(d.data_type)) + ":" + std::to_string(int(d.format_kind)) + ":";
  for (int i = 0; i < d.ndims; ++i) s += std::to_string(d.dims[i]) + "/" + std::to_string(d.padded_dims[i]) + ",";
  if (d.format_kind == dnnl_blocked) {
    const auto& b = d.format_desc.blocking;
    for (int i = 0; i < d.ndims; ++i) s += std::to_string(b.strides[i]) + ",";
    for (int i = 0; i < b.inner_nblks; ++i) s += std::to_string(b.inner_blks[i]) + "@" + std::to_string(b.inner_idxs[i]);
  }
  return s + "+" + std::to_string(d.offset0) + "x" + std::to_string(int(d.extra.flags));
}

void* Layouts::scratch(size_t bytes) {
  thread_local std::vector<std::unique_ptr<Storage>> slots;
  size_t i = size_t(slot_++);
  if (slots.size() <= i) slots.resize(i + 1);
  if (!slots[i] || slots[i]->nbytes() < bytes) slots[i] = std::make_unique<Storage>(bytes);
  return slots[i]->data();
}

namespace {
// Conversions made inside an ops::StableOperands scope, kept for the next op of the scope
// that reads the same buffer in the same layouts. The buffers outlive their scope and are
// reused by later scopes (a training step reorders the same shapes each time); at most
// kMemo of them per thread.
struct Memo {
  std::string key;  // user and wanted layouts
  const void* ptr = nullptr;
  uint64_t scope = 0;
  dnnl::memory mem;  // owns its buffer
};
constexpr size_t kMemo = 8;

dnnl::memory memo_in(uint64_t scope, const dnnl::memory& u, const void* ptr, const dnnl::memory::desc& want) {
  thread_local std::vector<Memo> memo;
  std::string key = md_key(u.get_desc()) + "|" + md_key(want);
  Memo* slot = nullptr;
  for (auto& m : memo) {
    if (m.key != key) continue;
    if (m.scope == scope && m.ptr == ptr) return m.mem;
    if (m.scope != scope && !slot) slot = &m;  // a stale buffer of the right layout
  }
  if (!slot) {
    if (memo.size() >= kMemo) {  // evict one from an older scope, if any
      for (auto& m : memo)
        if (m.scope != scope) {
          slot = &m;
          break;
        }
      if (!slot) return dnnl::memory();  // all belong to this scope: convert without keeping
    } else {
      slot = &memo.emplace_back();
    }
    slot->mem = dnnl::memory(want, backend::dnnl_engine());
    slot->key = key;
  }
  reorder(u, slot->mem);
  slot->ptr = ptr;
  slot->scope = scope;
  return slot->mem;
}
}  // namespace

dnnl::memory Layouts::in_operand(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want) {
  if (uint64_t scope = ops::stable_operands_scope(); scope && !(user == want)) {
    dnnl::memory u(user, backend::dnnl_engine(), ptr);
    if (dnnl::memory m = memo_in(scope, u, ptr, want)) return m;
  }
  return in(user, ptr, want);
}

dnnl::memory Layouts::in(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want) {
  dnnl::memory u(user, backend::dnnl_engine(), ptr);
  if (user == want) return u;
  dnnl::memory m(want, backend::dnnl_engine(), scratch(want.get_size()));
  reorder(u, m);
  return m;
}

dnnl::memory Layouts::out(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want) {
  dnnl::memory u(user, backend::dnnl_engine(), ptr);
  if (user == want) return u;
  dnnl::memory m(want, backend::dnnl_engine(), scratch(want.get_size()));
  pending_.emplace_back(m, u);
  return m;
}

void Layouts::finish() {
  for (auto& [from, to] : pending_) reorder(from, to);
  pending_.clear();
  backend::dnnl_stream().wait();
}

}  // namespace qs::kernels
