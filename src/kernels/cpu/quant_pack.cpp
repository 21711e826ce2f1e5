// oneDNN int8 matmul and convolution with cached pre-packed weights (quant_pack.h).
#include "kernels/cpu/quant_pack.h"

#include <omp.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "backend/dnnl_util.h"
#include "kernels/cpu/dnnl_layout.h"
#include "quant/packed_hook.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {

using dnnl::memory;

// ---- the cache of packed weights. An entry belongs to one weight tensor (storage,
// offset, shape, strides) and dies with its storage (weak_ptr); a sample of 4096 bytes
// (fingerprint) guards against a weight rewritten in place (clear_packed_weights() for certainty).
struct Packed {
  std::weak_ptr<Storage> owner;
  uint64_t fingerprint = 0;
  memory weights;             // in the primitive's layout (empty for sums-only entries)
  std::vector<int32_t> sums;  // row sums (linear) or tap sums (convolution)
  // conv_u8s8_requant's primitive (its weights in `weights`); `prim` stays empty where
  // oneDNN offered no kernel that applies the epilogue in quant_math.h's order.
  dnnl::primitive prim;
  memory::desc bias_md;
};
std::mutex g_mu;
std::unordered_map<std::string, std::shared_ptr<Packed>> g_cache;

void clear_all() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_cache.clear();
}
const bool g_hook_set = [] {
  quant::detail::clear_packed_hook = clear_all;
  return true;
}();

std::string identity(const Tensor& w) {
  std::string k = fmt::format("{}+{}:", static_cast<const void*>(w.storage()->data()), w.offset());
  for (int64_t d = 0; d < w.dim(); ++d) k += fmt::format("{}/{},", w.size(d), w.stride(d));
  return k;
}

uint64_t fingerprint(const Tensor& w) {
  const int8_t* p = static_cast<const int8_t*>(w.raw_data());
  const bool flat = w.is_contiguous();  // every call checks: no index arithmetic when it can be avoided
  StridedIndex ix(w.shape(), w.strides());
  auto at = [&](int64_t i) { return uint8_t(p[flat ? i : ix.offset(i)]); };
  // 4096 bytes as 64 runs of 64 consecutive ones (about a cache line each: the weights are
  // cold here), each run hashed as eight 8-byte words (FNV-1a's step on words), then folded:
  // 4096 single bytes hashed one by one, a chain of 4096 dependent multiplies over 4096
  // lines, took 3.5% of an INT8 LM forward.
  const int64_t n = w.numel();
  if (n == 0) return 0;
  const int64_t runs = std::min<int64_t>(64, (n + 63) / 64), step = n / runs;
  uint64_t f = 1469598103934665603ull;
  for (int64_t r = 0; r < runs; ++r) {
    const int64_t i0 = r * step, len = std::min<int64_t>(64, n - i0);
    uint64_t h = 1469598103934665603ull;
    for (int64_t t = 0; t < len; t += 8) {
      uint64_t word = 0;
      if (flat && t + 8 <= len) {
        std::memcpy(&word, p + i0 + t, 8);
      } else {
        for (int64_t u = t; u < std::min<int64_t>(t + 8, len); ++u) word = word << 8 | at(i0 + u);
      }
      h = (h ^ word) * 1099511628211ull;
    }
    f = (f ^ h) * 1099511628211ull;
  }
  return f ^ uint64_t(at(n - 1));
}

// The entry for (w, what), built by `make` when absent or stale.
template <class Make> std::shared_ptr<Packed> packed(const Tensor& w, const std::string& what, Make&& make) {
  std::string key = identity(w) + "|" + what;
  uint64_t fp = fingerprint(w);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_cache.find(key);
    if (it != g_cache.end() && !it->second->owner.expired() && it->second->owner.lock() == w.storage() &&
        it->second->fingerprint == fp)
      return it->second;
  }
  auto e = std::make_shared<Packed>();
  e->owner = w.storage();
  e->fingerprint = fp;
  make(*e);
  std::lock_guard<std::mutex> lock(g_mu);
  for (auto it = g_cache.begin(); it != g_cache.end();) it = it->second->owner.expired() ? g_cache.erase(it) : ++it;
  g_cache[key] = e;
  return e;
}

void reorder_into(const memory::desc& from_md, void* from, memory to) {
  memory src(from_md, backend::dnnl_engine(), from);
  dnnl::reorder(src, to).execute(backend::dnnl_stream(), src, to);
  backend::dnnl_stream().wait();
}

// Whether some u exceeds 127 (then the product is split, see the header).
bool needs_split(const uint8_t* u, int64_t n) {
  uint8_t any = 0;
#pragma omp parallel for simd reduction(| : any) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) any |= u[i];
  return any & 0x80;
}

// Runs `prim` on lo (and hi) parts of u: acc = P(lo) + 128 P(hi). Where oneDNN's int8
// kernels sum in s32 without saturation (VNNI, AMX: backend::exact_u8s8) u goes in whole.
template <class Run> void run_split(const uint8_t* u, int64_t n_in, int32_t* acc, int64_t n_out, Run&& run) {
  if (backend::exact_u8s8() || !needs_split(u, n_in)) {
    run(u, acc);
    return;
  }
  uint8_t* lo = static_cast<uint8_t*>(quant_scratch(2, size_t(n_in)));
  uint8_t* hi = static_cast<uint8_t*>(quant_scratch(3, size_t(n_in)));
#pragma omp parallel for simd if (n_in > 65536)
  for (int64_t i = 0; i < n_in; ++i) lo[i] = u[i] & 127, hi[i] = u[i] >> 7;
  int32_t* tmp = static_cast<int32_t*>(quant_scratch(1, size_t(n_out) * 4));
  run(lo, acc);
  run(hi, tmp);
#pragma omp parallel for simd if (n_out > 65536)
  for (int64_t i = 0; i < n_out; ++i) acc[i] += 128 * tmp[i];
}

}  // namespace

void* quant_scratch(int slot, size_t bytes) {
  thread_local std::unique_ptr<Storage> slots[6];
  auto& s = slots[slot];
  if (!s || s->nbytes() < bytes) s = std::make_unique<Storage>(std::max<size_t>(bytes, 64));
  return s->data();
}

std::shared_ptr<const std::vector<int32_t>> weight_row_sums(const Tensor& wq) {
  auto e = packed(wq, "rowsums", [&](Packed& p) {
    int64_t N = wq.size(0), K = wq.size(1);
    const int8_t* w = wq.data_ptr<int8_t>();
    p.sums.assign(size_t(N), 0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) p.sums[size_t(n)] += w[n * wq.stride(0) + k * wq.stride(1)];
  });
  return {e, &e->sums};
}

void gemm_u8s8_exact(const uint8_t* u, int64_t M, int64_t K, const Tensor& wq, int32_t* acc) {
  int64_t N = wq.size(0);
  memory::desc a_md({M, K}, memory::data_type::u8, {K, 1});
  memory::desc user_w({K, N}, memory::data_type::s8, {wq.stride(1), wq.stride(0)});
  memory::desc any_w({K, N}, memory::data_type::s8, memory::format_tag::any);
  memory::desc c_md({M, N}, memory::data_type::s32, {N, 1});
  std::string key = fmt::format("qmatmul|{}x{}x{}", M, K, N);
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, any_w, c_md), backend::dnnl_engine());
    backend::note_impl(key, pd.impl_info_str(),
                      backend::exact_u8s8() ? " (u8 x s8 exact: full-range u8 in one product)"
                                            : " (u8 x s8 saturates in s16: u8 above 127 split into 7 + 1 bits)");
    return backend::CachedPrimitive{dnnl::matmul(pd), pd, pd.impl_info_str()};
  });
  memory::desc want = cp.pd.weights_desc();
  auto w = packed(wq, "matmul:" + md_key(want), [&](Packed& p) {
    p.weights = memory(want, backend::dnnl_engine());
    reorder_into(user_w, wq.raw_data(), p.weights);
  });
  run_split(u, M * K, acc, M * N, [&](const uint8_t* src, int32_t* dst) {
    cp.prim.execute(backend::dnnl_stream(), {{DNNL_ARG_SRC, backend::make_memory(a_md, const_cast<uint8_t*>(src))},
                                             {DNNL_ARG_WEIGHTS, w->weights},
                                             {DNNL_ARG_DST, backend::make_memory(c_md, dst)}});
    backend::dnnl_stream().wait();
  });
}

namespace {

struct ConvDims {
  memory::dims src, wei, dst, stride, dil, pad;
  memory::format_tag act_tag;
  std::string key;
};

ConvDims conv_dims(const ops::Spatial& s, const Tensor& wq, int64_t G) {
  ConvDims d;
  int64_t O = wq.size(0);
  d.src = {s.N, s.C};
  d.dst = {s.N, O};
  d.wei = G > 1 ? memory::dims{G, O / G, s.C / G} : memory::dims{O, s.C};
  for (int i = 3 - s.nsp; i < 3; ++i) {
    d.src.push_back(s.in[size_t(i)]);
    d.dst.push_back(s.out[size_t(i)]);
    d.wei.push_back(s.k[size_t(i)]);
    d.stride.push_back(s.stride[size_t(i)]);
    d.dil.push_back(s.dil[size_t(i)] - 1);
    d.pad.push_back(s.pad[size_t(i)]);
  }
  d.act_tag = s.nsp == 1 ? memory::format_tag::nwc : s.nsp == 2 ? memory::format_tag::nhwc : memory::format_tag::ndhwc;
  for (auto* v : {&d.src, &d.wei, &d.dst, &d.stride, &d.dil, &d.pad}) {
    for (auto x : *v) d.key += std::to_string(x) + ",";
    d.key += ";";
  }
  return d;
}

}  // namespace

void conv_u8s8_exact(const uint8_t* u, const ops::Spatial& s, const Tensor& wq, int64_t G, int32_t* acc) {
  ConvDims d = conv_dims(s, wq, G);
  memory::desc src(d.src, memory::data_type::u8, d.act_tag), dst(d.dst, memory::data_type::s32, d.act_tag);
  memory::desc any_w(d.wei, memory::data_type::s8, memory::format_tag::any);
  std::string key = "qconv|" + d.key;
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::convolution_forward::desc cd(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
                                       any_w, dst, d.stride, d.dil, d.pad, d.pad);
    dnnl::convolution_forward::primitive_desc pd(cd, backend::dnnl_engine());
    backend::note_impl(key, pd.impl_info_str(),
                      backend::exact_u8s8() ? " (u8 x s8 exact: full-range u8 in one product)"
                                            : " (u8 x s8 saturates in s16: u8 above 127 split into 7 + 1 bits)");
    return backend::CachedPrimitive{dnnl::convolution_forward(pd), pd, pd.impl_info_str()};
  });
  memory::desc want = cp.pd.weights_desc();
  auto w = packed(wq, "conv:" + md_key(want), [&](Packed& p) {
    memory::dims strides(wq.strides().begin(), wq.strides().end());
    if (G > 1) strides.insert(strides.begin(), wq.stride(0) * (wq.size(0) / G));
    p.weights = memory(want, backend::dnnl_engine());
    reorder_into(memory::desc(d.wei, memory::data_type::s8, strides), wq.raw_data(), p.weights);
  });
  int64_t n_in = s.N * s.C * s.in_plane(), n_out = s.N * wq.size(0) * s.out_plane();
  run_split(u, n_in, acc, n_out, [&](const uint8_t* x, int32_t* y) {
    cp.prim.execute(backend::dnnl_stream(), {{DNNL_ARG_SRC, backend::make_memory(src, const_cast<uint8_t*>(x))},
                                             {DNNL_ARG_WEIGHTS, w->weights},
                                             {DNNL_ARG_DST, backend::make_memory(dst, y)}});
    backend::dnnl_stream().wait();
  });
}

namespace {
// One f32 broadcast to every element of an n-dimensional tensor (a binary post-op's operand).
memory::desc scalar_md(size_t n) { return memory::desc(memory::dims(n, 1), memory::data_type::f32, memory::dims(n, 1)); }
}  // namespace

bool conv_u8s8_requant(const uint8_t* u, int32_t zp, const ops::Spatial& s, const Tensor& wq, int64_t G,
                       const ConvRequant& rq, void* out) {
  if (!backend::exact_u8s8()) return false;
  ConvDims d = conv_dims(s, wq, G);
  const int64_t O = wq.size(0);
  const auto dst_dt = rq.out == DType::u8   ? memory::data_type::u8
                      : rq.out == DType::i8 ? memory::data_type::s8
                                            : memory::data_type::f32;
  // Everything the primitive bakes in: its scales, bias presence, ReLU, output type, zero
  // point and range, and whether a source zero point is applied (the values of the source
  // zero point, the bias and 1 / out_scale are run-time arguments).
  std::string what = fmt::format("conv-rq:{}|{}{}{}{}|{},{},{}|", d.key, rq.bias != nullptr, rq.relu, int(dst_dt),
                                 zp != 0, rq.out_zp, rq.qmin, rq.qmax);
  what.append(reinterpret_cast<const char*>(rq.acc_scale), size_t(O) * sizeof(float));
  auto e = packed(wq, what, [&](Packed& p) {
    memory::desc src(d.src, memory::data_type::u8, d.act_tag), dst(d.dst, dst_dt, d.act_tag);
    memory::desc any_w(d.wei, memory::data_type::s8, memory::format_tag::any);
    memory::dims bias_dims(d.dst.size(), 1);
    bias_dims[1] = O;
    p.bias_md = memory::desc(bias_dims, memory::data_type::f32, d.act_tag);  // dense: channels are the only dim > 1
    dnnl::primitive_attr attr;
    attr.set_output_scales(O > 1 ? 1 << 1 : 0, std::vector<float>(rq.acc_scale, rq.acc_scale + O));
    if (zp != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    dnnl::post_ops po;
    if (rq.bias) po.append_binary(dnnl::algorithm::binary_add, p.bias_md);
    if (rq.relu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    if (rq.out != DType::f32) {
      // x 1/scale as a binary multiply: oneDNN 2.6's post-op injector keeps one eltwise
      // per algorithm, so a second eltwise_linear (the zero point's) would reuse the first's
      // alpha and beta.
      po.append_binary(dnnl::algorithm::binary_mul, scalar_md(d.dst.size()));
      if (rq.out_zp != 0) {
        po.append_eltwise(1.0f, dnnl::algorithm::eltwise_round, 0.0f, 0.0f);
        po.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, 1.0f, float(rq.out_zp));
      }
      const bool u8 = rq.out == DType::u8;
      if (rq.qmin != (u8 ? 0 : -128) || rq.qmax != (u8 ? 255 : 127))
        po.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, float(rq.qmin), float(rq.qmax));
    }
    attr.set_post_ops(po);
    dnnl::convolution_forward::desc cd(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
                                       any_w, dst, d.stride, d.dil, d.pad, d.pad);
    dnnl::convolution_forward::primitive_desc pd;
    try {
      pd = dnnl::convolution_forward::primitive_desc(cd, attr, backend::dnnl_engine());
    } catch (const dnnl::error&) {
      backend::note_impl("qconv-requant|" + d.key, "none", " (no oneDNN kernel for these attributes: epilogue ours)");
      return;
    }
    const std::string impl = pd.impl_info_str();
    // The AVX-512 brgconv (brgemm kernels, 1x1 too) and jit_int8 (x8s8s32x) kernels apply
    // the zero point in s32 and then the attributes in order (oneDNN 2.6's source, and the
    // op tests on an AVX-512 VNNI CPU); jit_int8_1x1 adds it after cvt (inexact), and the
    // AVX2-VNNI kernels are unread and untested here.
    const bool ours_order = (impl.rfind("brgconv", 0) == 0 || impl.rfind("jit_int8:", 0) == 0) &&
                            impl.find("avx512_core") != std::string::npos;
    backend::note_impl("qconv-requant|" + d.key, impl,
                      ours_order ? " (requantised inside oneDNN's kernel, in quant_math.h's order)"
                                 : " (a kernel that would requantise in another order: epilogue ours, on exact s32 sums)");
    if (!ours_order) return;
    p.weights = memory(pd.weights_desc(), backend::dnnl_engine());
    memory::dims strides(wq.strides().begin(), wq.strides().end());
    if (G > 1) strides.insert(strides.begin(), wq.stride(0) * (O / G));
    reorder_into(memory::desc(d.wei, memory::data_type::s8, strides), wq.raw_data(), p.weights);
    p.prim = dnnl::convolution_forward(pd);
  });
  if (!e->prim) return false;
  memory::desc src(d.src, memory::data_type::u8, d.act_tag), dst(d.dst, dst_dt, d.act_tag);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, backend::make_memory(src, const_cast<uint8_t*>(u))},
                                       {DNNL_ARG_WEIGHTS, e->weights},
                                       {DNNL_ARG_DST, backend::make_memory(dst, out)}};
  int32_t zp_value = zp;
  if (zp != 0)
    args[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC] =
        backend::make_memory(memory::desc({1}, memory::data_type::s32, memory::format_tag::x), &zp_value);
  if (rq.bias)
    args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
        backend::make_memory(e->bias_md, const_cast<float*>(rq.bias));
  float inv_out = rq.inv_out_scale;
  if (rq.out != DType::f32)  // after the bias and the ReLU
    args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(int(rq.bias != nullptr) + int(rq.relu)) | DNNL_ARG_SRC_1] =
        backend::make_memory(scalar_md(d.dst.size()), &inv_out);
  e->prim.execute(backend::dnnl_stream(), args);
  backend::dnnl_stream().wait();
  return true;
}

std::shared_ptr<const std::vector<int32_t>> conv_tap_sums(const ops::Spatial& s, const Tensor& wq, int64_t G) {
  std::string geom = fmt::format("taps[p,o]:{},{},{}|{},{},{}|{},{},{}|{},{},{}", s.in[0], s.in[1], s.in[2], s.stride[0],
                                 s.stride[1], s.stride[2], s.pad[0], s.pad[1], s.pad[2], s.dil[0], s.dil[1], s.dil[2]);
  auto e = packed(wq, geom, [&](Packed& p) {
    Tensor wc = wq.contiguous();
    const int8_t* w = wc.data_ptr<int8_t>();
    int64_t O = wq.size(0), Cg = s.C / G, kP = s.k_plane(), outP = s.out_plane();
    std::vector<int32_t> tap(size_t(O * kP), 0);  // sum over c of w[o, c, t]
    for (int64_t o = 0; o < O; ++o)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t t = 0; t < kP; ++t) tap[size_t(o * kP + t)] += w[(o * Cg + c) * kP + t];
    p.sums.assign(size_t(O * outP), 0);
#pragma omp parallel for
    for (int64_t o = 0; o < O; ++o)
      ops::for_each_tap(s, [&](int64_t q, int64_t, int64_t t) { p.sums[size_t(q * O + o)] += tap[size_t(o * kP + t)]; });
  });
  return {e, &e->sums};
}

}  // namespace qs::kernels
