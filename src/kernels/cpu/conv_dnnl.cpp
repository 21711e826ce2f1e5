// Convolution forward, backward-data and backward-weights through oneDNN. Primitives are
// described with format_tag::any so oneDNN picks its blocked layouts (nChw8c and friends
// on AVX2) and are built once per geometry (backend::cached_primitive). The NC(D)HW
// tensors of the op's contract are reordered in and out through reusable scratch
// buffers. bf16 operands (autocast, forward and both backward products) are multiplied
// in bf16 with f32 results (or bf16 ones: out_dtype) where oneDNN has native bf16
// (backend::native_bf16(): AVX512-BF16, AMX), and widened to f32 by the same reorders
// elsewhere.
#include <cstdlib>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dnnl_layout.h"
#include "kernels/spatial.h"

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
  memory::data_type op = memory::data_type::f32;  // the operands' type in the primitive
  memory::data_type res = memory::data_type::f32;  // dst / diff_src: f32, or bf16 for a bf16 result
};

// bf16 operands stay bf16 where oneDNN multiplies them natively; else f32.
memory::data_type operand_type(const Tensor& t) {
  return t.dtype() == DType::bf16 && backend::native_bf16() ? memory::data_type::bf16 : memory::data_type::f32;
}

ConvGeom conv_geom(const Spatial& s, const Shape& ws, int64_t G, const Tensor& operand) {
  ConvGeom g;
  g.G = G;
  g.op = operand_type(operand);
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
  if (g.op == memory::data_type::bf16) g.key += "bf16;";
  return g;
}

// A bf16 result (out_dtype "bf16") is written in bf16 by a native bf16 primitive; else the
// primitive gives f32 and the reorder out of it rounds.
void set_result(ConvGeom& g, const Tensor& out) {
  if (out.dtype() != DType::bf16 || g.op != memory::data_type::bf16) return;
  g.res = memory::data_type::bf16;
  g.key += "bf16 out;";
}

// The weights tensor [O, C/G, k...] as oneDNN's (possibly grouped) weights descriptor.
memory::desc weights_md(const Tensor& w, const ConvGeom& g) {
  memory::dims strides(w.strides().begin(), w.strides().end());
  if (g.G > 1) strides.insert(strides.begin(), w.stride(0) * (w.size(0) / g.G));
  return memory::desc(g.wei, backend::dnnl_dtype(w.dtype()), strides);
}

// The descriptors of one primitive: operands (src, weights, diff_dst) in g.op, results
// (dst, diff_src) in g.res, diff_weights and biases in f32; format_tag::any, or plain
// activations.
struct ConvMds {
  memory::desc src, wei, dst, bias, diff_src, diff_dst;
};
ConvMds conv_mds(const ConvGeom& g, bool bias) {
  using tag = memory::format_tag;
  const auto f32 = memory::data_type::f32;
  tag act = tag::any;
  if (g.plain) act = g.src.size() == 3 ? tag::ncw : g.src.size() == 4 ? tag::nchw : tag::ncdhw;
  ConvMds m;
  m.src = memory::desc(g.src, g.op, act);
  m.diff_src = memory::desc(g.src, g.res, act);
  m.wei = memory::desc(g.wei, g.op, tag::any);
  m.dst = memory::desc(g.dst, g.res, act);
  m.diff_dst = memory::desc(g.dst, g.op, act);  // the gradient operand, laid out like dst
  if (bias) m.bias = memory::desc(g.bias, f32, tag::x);
  return m;
}

dnnl::convolution_forward::desc fwd_desc(const ConvGeom& g, bool bias, dnnl::prop_kind pk) {
  ConvMds m = conv_mds(g, bias);
  return dnnl::convolution_forward::desc(pk, dnnl::algorithm::convolution_direct, m.src, m.wei, m.bias, m.dst,
                                         g.stride, g.dil, g.pad, g.pad);
}

void convolution_dnnl(ops::OpCall& c) {
  const Tensor &x = c.in[0], &w = c.in[1], &b = c.in[2];
  Spatial s = ops::conv_spatial(x.shape(), w.shape(), c.attrs, "convolution");
  ConvGeom g = conv_geom(s, w.shape(), c.attrs.i("groups", 1), x);
  set_result(g, c.out[0]);
  g.plain = layout_for("fwd", s.C, s.nsp) == Layout::plain;
  const bool relu = ops::conv_relu(c.attrs);
  std::string key = "conv_fwd|" + g.key + (b.defined() ? "b" : "") + (g.plain ? "|plain" : "") + (relu ? "|relu" : "");
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::primitive_attr attr;
    if (relu) {
      dnnl::post_ops po;
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      attr.set_post_ops(po);
    }
    dnnl::convolution_forward::primitive_desc pd(fwd_desc(g, b.defined(), dnnl::prop_kind::forward_training), attr,
                                                 backend::dnnl_engine());
    backend::note_impl(key, pd.impl_info_str());
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
  ConvGeom g = conv_geom(s, w.shape(), c.attrs.i("groups", 1), gy);
  set_result(g, c.out[0]);
  g.plain = layout_for("bwd_data", s.C, s.nsp) == Layout::plain;
  std::string key = "conv_bwd_data|" + g.key + (g.plain ? "|plain" : "");
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::convolution_forward::primitive_desc hint(fwd_desc(g, false, dnnl::prop_kind::forward_training),
                                                   backend::dnnl_engine());
    ConvMds m = conv_mds(g, false);
    dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, m.diff_src, m.wei, m.diff_dst,
                                            g.stride, g.dil, g.pad, g.pad);
    dnnl::convolution_backward_data::primitive_desc pd(d, backend::dnnl_engine(), hint);
    backend::note_impl(key, pd.impl_info_str());
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
  ConvGeom g = conv_geom(s, ws, c.attrs.i("groups", 1), x);
  g.plain = layout_for("bwd_weights", s.C, s.nsp) == Layout::plain;
  std::string key = "conv_bwd_weights|" + g.key + (g.plain ? "|plain" : "");
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::convolution_forward::primitive_desc hint(fwd_desc(g, true, dnnl::prop_kind::forward_training),
                                                   backend::dnnl_engine());
    ConvMds m = conv_mds(g, true);
    memory::desc dw(g.wei, memory::data_type::f32, memory::format_tag::any);
    dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, m.src, dw, m.bias,
                                               m.diff_dst, g.stride, g.dil, g.pad, g.pad);
    dnnl::convolution_backward_weights::primitive_desc pd(d, backend::dnnl_engine(), hint);
    backend::note_impl(key, pd.impl_info_str());
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

void register_conv_dnnl(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::convolution, {"onednn", conv_supports, convolution_dnnl});
  ops::add_kernel(t, ops::OpKind::convolution_backward_data, {"onednn", conv_supports, convolution_backward_data_dnnl});
  ops::add_kernel(t, ops::OpKind::convolution_backward_weight,
                  {"onednn", conv_supports, convolution_backward_weight_dnnl});
}

}  // namespace qs::kernels
