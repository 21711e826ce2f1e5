// oneDNN plumbing: one engine and stream, memory descriptors from tensors, and a
// primitive cache (describe and build once, execute many times).
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "qiusuo/tensor.h"

namespace qs::backend {

dnnl::engine& dnnl_engine();
dnnl::stream& dnnl_stream();
dnnl::memory::data_type dnnl_dtype(DType t);  // throws for types oneDNN lacks
// Plain (strided) descriptor of a tensor, optionally with its dims left-padded to `rank`.
dnnl::memory::desc plain_md(const Tensor& t, int rank = -1);
dnnl::memory make_memory(const dnnl::memory::desc& md, const Tensor& t);
dnnl::memory make_memory(const dnnl::memory::desc& md, void* ptr);

// The instruction set oneDNN runs on here (its effective ISA: the CPU's, or less under
// ONEDNN_MAX_CPU_ISA), by name ("avx2", "avx512_core_bf16", "avx512_core_amx", ...), and
// what it offers the kernels that choose by ISA. Every such choice reads these, so capping
// oneDNN caps ours too and one machine can run the paths of a smaller one.
dnnl::cpu_isa cpu_isa();
const char* cpu_isa_name();
// u8 x s8 products summed in s32 without saturation (VNNI's vpdpbusd, AMX): oneDNN's int8
// kernels are exact for full-range u8 activations. Without it (AVX2, plain AVX-512) they
// add pairs in s16 with saturation (vpmaddubsw).
bool exact_u8s8();
// oneDNN runs its AVX-512 kernels (avx512_core and above).
bool avx512();
// avx512(), for a loop inside a kernel that has a 16-lane build beside its 8-lane one (the
// choice is not a kernel of its own): QS_VERBOSE=dispatch names `what` and the build taken.
// Call once and keep the answer.
bool avx512_loops(const char* what);
// oneDNN multiplies bf16 natively (AVX512-BF16 or AMX); public as qs::native_bf16_available().
bool native_bf16();

// When a primitive is built: QS_VERBOSE=dispatch prints which implementation oneDNN chose
// for `what` (with `detail`); its reference implementations, orders of magnitude slower,
// are always reported.
void note_impl(const std::string& what, const std::string& impl, const char* detail = "");

// Cache of built primitives (and their primitive descriptors) by key.
struct CachedPrimitive {
  dnnl::primitive prim;
  dnnl::primitive_desc_base pd;
  std::string impl;  // oneDNN's implementation name (e.g. "brg:avx2", "ref:any")
};
const CachedPrimitive& cached_primitive(const std::string& key, const std::function<CachedPrimitive()>& build);
std::string dims_key(const dnnl::memory::desc& md);

}  // namespace qs::backend
