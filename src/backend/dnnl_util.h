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

// Cache of built primitives (and their primitive descriptors) by key.
struct CachedPrimitive {
  dnnl::primitive prim;
  dnnl::primitive_desc_base pd;
  std::string impl;  // oneDNN's implementation name (e.g. "brg:avx2", "ref:any")
};
const CachedPrimitive& cached_primitive(const std::string& key, const std::function<CachedPrimitive()>& build);
std::string dims_key(const dnnl::memory::desc& md);

}  // namespace qs::backend
