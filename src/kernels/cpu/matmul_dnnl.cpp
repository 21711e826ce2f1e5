// matmul and linear through oneDNN's matmul primitive (built once per shape, cached).
// f32 x f32 -> f32, and bf16 x bf16 -> f32 for autocast.
#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/matmul_layout.h"

namespace qs::kernels {

namespace {

using backend::plain_md;
using dnnl::memory;

// Expanded (stride-0) operands are accepted: run() materialises them (dense()).
const char* dnnl_common(const ops::OpCall& c) {
  if (c.out[0].numel() == 0) return "empty output";
  if (c.in[0].size(-1) == 0) return "K = 0";
  return nullptr;
}

const char* dnnl_float(const ops::OpCall& c) {
  for (auto& x : c.in) {
    if (!x.defined()) continue;
    if (x.dtype() == DType::bf16 && !backend::native_bf16()) return "no native bf16 on this CPU";
    if (x.dtype() != DType::f32 && x.dtype() != DType::bf16) return "oneDNN path takes f32 or bf16";
  }
  return dnnl_common(c);
}

// bf16 operands on a CPU without bf16 units: widen to f32 (exact) and multiply in f32.
const char* dnnl_widen_supports(const ops::OpCall& c) {
  if (c.in[0].dtype() != DType::bf16) return "only for bf16 operands";
  return dnnl_common(c);
}
ops::OpCall widened(const ops::OpCall& c) {
  ops::OpCall w = c;
  for (auto& x : w.in)
    if (x.defined() && x.dtype() == DType::bf16) {
      Tensor f = empty(x.shape(), DType::f32);
      ops::OpCall cast{ops::OpKind::cast, {x}, {}, {f}};
      ops::run_optimised(cast, "cpu");
      x = f;
    }
  return w;
}

// oneDNN rejects stride-0 dims, and gradients of sum/mean/expand arrive expanded: copy such
// an operand (O(size), against the O(M N K) product) rather than fall back to the reference.
Tensor dense(const Tensor& t) {
  if (!t.defined()) return t;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.stride(d) == 0 && t.size(d) > 1) return t.contiguous();
  return t;
}

// gelu: linear's activation as an eltwise post-op, applied while the output tile is hot.
void execute(const std::string& key, const memory::desc& a_md, const memory::desc& b_md, const memory::desc* bias_md,
             const memory::desc& c_md, void* a, void* b, void* bias, void* out, bool gelu = false) {
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::matmul::desc d = bias_md ? dnnl::matmul::desc(a_md, b_md, *bias_md, c_md) : dnnl::matmul::desc(a_md, b_md, c_md);
    dnnl::primitive_attr attr;
    if (gelu) {
      dnnl::post_ops po;
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(d, attr, backend::dnnl_engine());
    return backend::CachedPrimitive{dnnl::matmul(pd), pd, pd.impl_info_str()};
  });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, backend::make_memory(a_md, a)},
                                       {DNNL_ARG_WEIGHTS, backend::make_memory(b_md, b)},
                                       {DNNL_ARG_DST, backend::make_memory(c_md, out)}};
  if (bias_md) args.emplace(DNNL_ARG_BIAS, backend::make_memory(*bias_md, bias));
  cp.prim.execute(backend::dnnl_stream(), args);
  backend::dnnl_stream().wait();
}

void matmul_dnnl(ops::OpCall& c) {
  const Tensor a = dense(c.in[0]), b = dense(c.in[1]);
  Tensor& out = c.out[0];
  int rank = int(out.dim());
  memory::desc a_md = plain_md(a, rank), b_md = plain_md(b, rank), c_md = plain_md(out, rank);
  std::string key = "matmul|" + backend::dims_key(a_md) + "|" + backend::dims_key(b_md) + "|" + backend::dims_key(c_md);
  execute(key, a_md, b_md, nullptr, c_md, a.raw_data(), b.raw_data(), nullptr, out.raw_data());
}

void linear_dnnl(ops::OpCall& c) {
  const Tensor w = dense(c.in[1]), bias = dense(c.in[2]);
  Tensor x = c.in[0].contiguous();
  Tensor& out = c.out[0];
  int64_t K = w.size(1), N = w.size(0), M = x.numel() / K;
  memory::desc a_md({M, K}, backend::dnnl_dtype(x.dtype()), {K, 1});
  memory::desc b_md({K, N}, backend::dnnl_dtype(w.dtype()), {w.stride(1), w.stride(0)});
  memory::desc c_md({M, N}, backend::dnnl_dtype(out.dtype()), {N, 1});
  memory::desc bias_md;
  if (bias.defined()) bias_md = memory::desc({1, N}, backend::dnnl_dtype(bias.dtype()), {N, bias.stride(0)});
  const bool gelu = linear_gelu(c.attrs);
  std::string key = std::string(gelu ? "linear+gelu|" : "linear|") + backend::dims_key(a_md) + "|" + backend::dims_key(b_md) + "|" +
                    (bias.defined() ? backend::dims_key(bias_md) : "-") + "|" + backend::dims_key(c_md);
  execute(key, a_md, b_md, bias.defined() ? &bias_md : nullptr, c_md, x.raw_data(), w.raw_data(),
          bias.defined() ? bias.raw_data() : nullptr, out.raw_data(), gelu);
}


void matmul_widen(ops::OpCall& c) {
  ops::OpCall w = widened(c);
  matmul_dnnl(w);
}
void linear_widen(ops::OpCall& c) {
  ops::OpCall w = widened(c);
  linear_dnnl(w);
}

}  // namespace

void register_matmul_dnnl(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::matmul, {"onednn", dnnl_float, matmul_dnnl});
  ops::add_kernel(t, ops::OpKind::linear, {"onednn", dnnl_float, linear_dnnl});
  ops::add_kernel(t, ops::OpKind::matmul, {"onednn-widen-bf16", dnnl_widen_supports, matmul_widen});
  ops::add_kernel(t, ops::OpKind::linear, {"onednn-widen-bf16", dnnl_widen_supports, linear_widen});
}

}  // namespace qs::kernels
