#include "backend/dnnl_util.h"

#include <iostream>

#include "util/verbose.h"

namespace qs::backend {

dnnl::engine& dnnl_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}
dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream s(dnnl_engine());
  return s;
}

dnnl::cpu_isa cpu_isa() {
  static const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa;
}

const char* cpu_isa_name() {
  switch (cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

namespace {
// oneDNN's ISA values are bit sets: an ISA includes another when it has all its bits.
bool isa_has(dnnl_cpu_isa_t x) { return (int(cpu_isa()) & int(x)) == int(x); }
}  // namespace

bool avx512() { return isa_has(dnnl_cpu_isa_avx512_core); }

bool avx512_loops(const char* what) {
  const bool wide = avx512();
  if (util::verbose("dispatch"))
    std::cerr << "qs dispatch: " << what << " -> " << (wide ? "16 lanes (AVX-512 build)" : "8 lanes (AVX2 build)") << "\n";
  return wide;
}

bool exact_u8s8() { return isa_has(dnnl_cpu_isa_avx512_core_vnni) || isa_has(dnnl_cpu_isa_avx2_vnni); }

void note_impl(const std::string& what, const std::string& impl, const char* detail) {
  static const bool verbose = util::verbose("dispatch");
  if (verbose) std::cerr << "qs onednn: " << what << " -> " << impl << detail << "\n";
  if (!verbose && impl.rfind("ref", 0) == 0)
    std::cerr << "qs warning: oneDNN chose its reference implementation for " << what << " (slow)\n";
}

dnnl::memory::data_type dnnl_dtype(DType t) {
  using dt = dnnl::memory::data_type;
  switch (t) {
    case DType::f32: return dt::f32;
    case DType::bf16: return dt::bf16;
    case DType::f16: return dt::f16;
    case DType::i8: return dt::s8;
    case DType::u8: return dt::u8;
    case DType::i32: return dt::s32;
    default: throw Error(fmt::format("oneDNN has no data type for {}", dtype_name(t)));
  }
}

dnnl::memory::desc plain_md(const Tensor& t, int rank) {
  dnnl::memory::dims dims(t.shape().begin(), t.shape().end()), strides(t.strides().begin(), t.strides().end());
  // A size-1 dim's stride is never used; oneDNN wants it non-zero.
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i] == 1 && strides[i] == 0) strides[i] = 1;
  if (rank > int(dims.size())) {
    size_t pad = size_t(rank) - dims.size();
    dims.insert(dims.begin(), pad, 1);
    strides.insert(strides.begin(), pad, std::max<int64_t>(1, t.numel()));
  }
  return dnnl::memory::desc(dims, dnnl_dtype(t.dtype()), strides);
}

dnnl::memory make_memory(const dnnl::memory::desc& md, const Tensor& t) {
  return dnnl::memory(md, dnnl_engine(), t.raw_data());
}
dnnl::memory make_memory(const dnnl::memory::desc& md, void* ptr) { return dnnl::memory(md, dnnl_engine(), ptr); }

const CachedPrimitive& cached_primitive(const std::string& key, const std::function<CachedPrimitive()>& build) {
  static std::mutex mu;
  static std::unordered_map<std::string, CachedPrimitive> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  return cache.emplace(key, build()).first->second;
}

std::string dims_key(const dnnl::memory::desc& md) {
  std::string s;
  auto d = md.dims();
  for (auto x : d) s += std::to_string(x) + ",";
  s += ";";
  const auto& blk = md.data.format_desc.blocking;
  for (int i = 0; i < md.data.ndims; ++i) s += std::to_string(blk.strides[i]) + ",";
  s += ";" + std::to_string(int(md.data_type()));
  return s;
}

bool native_bf16() {
  // By the ISA, not by probing a primitive: oneDNN also runs bf16 on plain AVX-512 by
  // emulating the dot product, which is no faster than f32.
  return isa_has(dnnl_cpu_isa_avx512_core_bf16);
}

}  // namespace qs::backend

namespace qs {
bool native_bf16_available() { return backend::native_bf16(); }
}  // namespace qs
