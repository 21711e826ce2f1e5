// Convolution forward, backward-data and backward-weights through oneDNN. Primitives are
// described with format_tag::any so oneDNN picks its blocked layouts (nChw8c and friends
// on AVX2) and are built once per geometry (backend::cached_primitive). The NC(D)HW
// tensors of the op's contract are reordered in and out through reusable scratch
// buffers; bf16 operands (autocast) are widened to f32 by the same reorders.
#include <cstdlib>
#include <iostream>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dnnl_layout.h"
#include "ops/spatial.h"

namespace qs::kernels {

namespace {

using backend::plain_md;
using dnnl::memory;
using ops::Spatial;

// QS_CONV_LAYOUT=any|plain forces one choice; by default a single input channel (the
// first layer) runs on the plain layouts, where oneDNN's gemm-based kernels beat the
// blocked ones and no 32-channel activation needs a reorder (measured on AVX2 with
// tests/ops/test_conv_bench.cpp), and everything else on the blocked layouts. (f32
// stride-1 first layers never get here: the 'c1' kernel, conv_c1_cpu.cpp, takes them; and
// f32 stride-1 backward-weights on 8-channel multiples goes to 'direct8', conv_bwdw_cpu.cpp.)
enum class Layout { any, plain };
Layout layout_for(const char* prim, int64_t C, int nsp) {
  static const std::string forced = [] {
    const char* e = std::getenv("QS_CONV_LAYOUT");
    return std::string(e ? e : "");
  }();
  if (forced == "plain") return Layout::plain;
  if (forced == "any") return Layout::any;
  bool first = C == 1 && (std::string(prim) == "bwd_weights" || nsp <= 2);
  return first ? Layout::plain : Layout::any;
}

const char* conv_supports(const ops::OpCall& c) {
  for (auto& t : c.in)
    if (t.defined() && t.dtype() != DType::f32 && t.dtype() != DType::bf16) return "oneDNN path takes f32 or bf16";
  for (auto& t : c.in)
    if (t.defined() && t.numel() == 0) return "empty operand";
  for (auto& t : c.out)
    if (t.numel() == 0) return "empty output";
  for (auto& t : c.in)
    if (t.defined())
      for (int64_t d = 0; d < t.dim(); ++d)
        if (t.stride(d) == 0 && t.size(d) > 1) return "expanded (stride-0) operand";
  return nullptr;
}

// oneDNN's view of one convolution: dims of src, weights (grouped: [G, O/G, C/G, k...]),
// dst, and the per-spatial-dim parameters (oneDNN counts dilation from 0).
struct ConvGeom {
  memory::dims src, wei, dst, bias, stride, dil, pad;
  int64_t G;
  std::string key;
  bool plain = false;  // primitive described on the plain layouts (see layout_for)
};

ConvGeom conv_geom(const Spatial& s, const Shape& ws, int64_t G) {
  ConvGeom g;
  g.G = G;
  int64_t O = ws[0];
  g.src = {s.N, s.C};
  g.dst = {s.N, O};
  g.wei = G > 1 ? memory::dims{G, O / G, s.C / G} : memory::dims{O, s.C};
  g.bias = {O};
  for (int i = 3 - s.nsp; i < 3; ++i) {
    g.src.push_back(s.in[size_t(i)]);
    g.dst.push_back(s.out[size_t(i)]);
    g.wei.push_back(s.k[size_t(i)]);
    g.stride.push_back(s.stride[size_t(i)]);
    g.dil.push_back(s.dil[size_t(i)] - 1);
    g.pad.push_back(s.pad[size_t(i)]);
  }
  for (auto* v : {&g.src, &g.wei, &g.dst, &g.stride, &g.dil, &g.pad}) {
    for (auto x : *v) g.key += std::to_string(x) + ",";
    g.key += ";";
  }
  return g;
}

// The weights tensor [O, C/G, k...] as oneDNN's (possibly grouped) weights descriptor.
memory::desc weights_md(const Tensor& w, const ConvGeom& g) {
  memory::dims strides(w.strides().begin(), w.strides().end());
  if (g.G > 1) strides.insert(strides.begin(), w.stride(0) * (w.size(0) / g.G));
  return memory::desc(g.wei, backend::dnnl_dtype(w.dtype()), strides);
}

memory::desc any_md(const memory::dims& d) { return memory::desc(d, memory::data_type::f32, memory::format_tag::any); }

dnnl::convolution_forward::desc fwd_desc(const ConvGeom& g, bool bias, dnnl::prop_kind pk) {
  using dnnl::algorithm;
  memory::desc b = bias ? memory::desc(g.bias, memory::data_type::f32, memory::format_tag::x) : memory::desc();
  if (g.plain) {
    auto tag = g.src.size() == 3 ? memory::format_tag::ncw : g.src.size() == 4 ? memory::format_tag::nchw
                                                                                 : memory::format_tag::ncdhw;
    memory::desc src(g.src, memory::data_type::f32, tag), dst(g.dst, memory::data_type::f32, tag);
    memory::desc wei(g.wei, memory::data_type::f32, memory::format_tag::any);
    return dnnl::convolution_forward::desc(pk, algorithm::convolution_direct, src, wei, b, dst, g.stride, g.dil, g.pad,
                                           g.pad);
  }
  return dnnl::convolution_forward::desc(pk, algorithm::convolution_direct, any_md(g.src), any_md(g.wei), b,
                                         any_md(g.dst), g.stride, g.dil, g.pad, g.pad);
}

void note_impl(const std::string& what, const std::string& impl) {
  static bool verbose = [] {
    const char* e = std::getenv("QS_VERBOSE");
    return e && std::string(e).find("dispatch") != std::string::npos;
  }();
  if (verbose) std::cerr << "qs onednn: " << what << " -> " << impl << "\n";
  // oneDNN's reference implementations are orders of magnitude slower: always say so.
  if (!verbose && impl.rfind("ref", 0) == 0)
    std::cerr << "qs warning: oneDNN chose its reference implementation for " << what << " (slow)\n";
}

void convolution_dnnl(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &b = c.in[2];
  Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "convolution");
  ConvGeom g = conv_geom(s, w.shape(), c.attrs.i("groups", 1));
  g.plain = layout_for("fwd", s.C, s.nsp) == Layout::plain;
  std::string key = "conv_fwd|" + g.key + (b.defined() ? "b" : "") + (g.plain ? "|plain" : "");
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::convolution_forward::primitive_desc pd(fwd_desc(g, b.defined(), dnnl::prop_kind::forward_training),
                                                 backend::dnnl_engine());
    note_impl(key, pd.impl_info_str());
    return backend::CachedPrimitive{dnnl::convolution_forward(pd), pd, pd.impl_info_str()};
  });
  Layouts io;
  std::unordered_map<int, memory> args;
  args[DNNL_ARG_SRC] = io.in(plain_md(x), x.raw_data(), cp.pd.src_desc());
  args[DNNL_ARG_WEIGHTS] = io.in(weights_md(w, g), w.raw_data(), cp.pd.weights_desc());
  if (b.defined()) args[DNNL_ARG_BIAS] = io.in(plain_md(b), b.raw_data(), cp.pd.weights_desc(1));
  args[DNNL_ARG_DST] = io.out(plain_md(c.out[0]), c.out[0].raw_data(), cp.pd.dst_desc());
  cp.prim.execute(backend::dnnl_stream(), args);
  io.finish();
}

void convolution_backward_data_dnnl(ops::OpCall& c) {
  const Tensor &gy = c.in[0], &w = c.in[1];
  Spatial s = ops::conv_spatial(c.attrs.ints("input_shape"), w.shape(), c.attrs, "convolution_backward_data");
  ConvGeom g = conv_geom(s, w.shape(), c.attrs.i("groups", 1));
  g.plain = layout_for("bwd_data", s.C, s.nsp) == Layout::plain;
  std::string key = "conv_bwd_data|" + g.key + (g.plain ? "|plain" : "");
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::convolution_forward::primitive_desc hint(fwd_desc(g, false, dnnl::prop_kind::forward_training),
                                                   backend::dnnl_engine());
    auto f = fwd_desc(g, false, dnnl::prop_kind::forward_training).data;
    dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, memory::desc(f.src_desc),
                                            memory::desc(f.weights_desc), memory::desc(f.dst_desc), g.stride, g.dil,
                                            g.pad, g.pad);
    dnnl::convolution_backward_data::primitive_desc pd(d, backend::dnnl_engine(), hint);
    note_impl(key, pd.impl_info_str());
    return backend::CachedPrimitive{dnnl::convolution_backward_data(pd), pd, pd.impl_info_str()};
  });
  Layouts io;
  std::unordered_map<int, memory> args;
  args[DNNL_ARG_DIFF_DST] = io.in_operand(plain_md(gy), gy.raw_data(), cp.pd.diff_dst_desc());
  args[DNNL_ARG_WEIGHTS] = io.in(weights_md(w, g), w.raw_data(), cp.pd.weights_desc());
  args[DNNL_ARG_DIFF_SRC] = io.out(plain_md(c.out[0]), c.out[0].raw_data(), cp.pd.diff_src_desc());
  cp.prim.execute(backend::dnnl_stream(), args);
  io.finish();
}

void convolution_backward_weight_dnnl(ops::OpCall& c) {
  const Tensor &gy = c.in[0], &x = c.in[1];
  const Shape& ws = c.attrs.ints("weight_shape");
  Spatial s = ops::conv_spatial(x.shape(), ws, c.attrs, "convolution_backward_weight");
  ConvGeom g = conv_geom(s, ws, c.attrs.i("groups", 1));
  g.plain = layout_for("bwd_weights", s.C, s.nsp) == Layout::plain;
  std::string key = "conv_bwd_weights|" + g.key + (g.plain ? "|plain" : "");
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::convolution_forward::primitive_desc hint(fwd_desc(g, true, dnnl::prop_kind::forward_training),
                                                   backend::dnnl_engine());
    auto f = fwd_desc(g, true, dnnl::prop_kind::forward_training).data;
    dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, memory::desc(f.src_desc),
                                               memory::desc(f.weights_desc), memory::desc(f.bias_desc),
                                               memory::desc(f.dst_desc), g.stride, g.dil, g.pad, g.pad);
    dnnl::convolution_backward_weights::primitive_desc pd(d, backend::dnnl_engine(), hint);
    note_impl(key, pd.impl_info_str());
    return backend::CachedPrimitive{dnnl::convolution_backward_weights(pd), pd, pd.impl_info_str()};
  });
  Tensor& dw = c.out[0];
  Layouts io;
  std::unordered_map<int, memory> args;
  args[DNNL_ARG_SRC] = io.in_operand(plain_md(x), x.raw_data(), cp.pd.src_desc());
  args[DNNL_ARG_DIFF_DST] = io.in_operand(plain_md(gy), gy.raw_data(), cp.pd.diff_dst_desc());
  args[DNNL_ARG_DIFF_WEIGHTS] = io.out(weights_md(dw, g), dw.raw_data(), cp.pd.diff_weights_desc());
  args[DNNL_ARG_DIFF_BIAS] = io.out(plain_md(c.out[1]), c.out[1].raw_data(), cp.pd.diff_weights_desc(1));
  cp.prim.execute(backend::dnnl_stream(), args);
  io.finish();
}

}  // namespace

void register_conv_dnnl(std::vector<ops::OpDef>& t) {
  ops::add_kernel(t, ops::OpKind::convolution, {"onednn", conv_supports, convolution_dnnl});
  ops::add_kernel(t, ops::OpKind::convolution_backward_data, {"onednn", conv_supports, convolution_backward_data_dnnl});
  ops::add_kernel(t, ops::OpKind::convolution_backward_weight,
                  {"onednn", conv_supports, convolution_backward_weight_dnnl});
}

}  // namespace qs::kernels
