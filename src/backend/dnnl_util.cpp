#include "backend/dnnl_util.h"

namespace qs::backend {

dnnl::engine& dnnl_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}
dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream s(dnnl_engine());
  return s;
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

}  // namespace qs::backend

namespace qs {
bool native_bf16_available() {
  static bool ok = [] {
    try {
      using dt = dnnl::memory::data_type;
      dnnl::memory::desc a({16, 16}, dt::bf16, {16, 1}), c({16, 16}, dt::f32, {16, 1});
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), backend::dnnl_engine());
      return std::string(pd.impl_info_str()).rfind("ref", 0) != 0;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return ok;
}
}  // namespace qs
