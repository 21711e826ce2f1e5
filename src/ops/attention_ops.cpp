// The fused attention rows: shape rules, backward, samples and qs::attention.
//   attention          (q, k, v, key_padding_mask, alibi_slopes, rel_bias) -> out, lse, bucket_weights
//   attention_backward (dout, dlse, dbucket_weights, q, k, v, out, lse, bucket_weights,
//                       key_padding_mask, alibi_slopes, rel_bias) -> dq, dk, dv, drel_bias
//   attention_weights  (q, k, key_padding_mask, alibi_slopes, rel_bias, lse) -> weights
// Attributes (all required): scale, causal, relative (none | t5 | shaw), num_buckets,
// max_distance, bidirectional, return_bucket_weights. The formulas are in
// src/kernels/ref/attention_ref.cpp; out is a [b, hq, n, dv] view of a [b, n, hq, dv] buffer.
#include <cmath>

#include "kernels/attention_common.h"
#include "kernels/ref/ref_kernels.h"
#include "ops/samples.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::ops {

using kernels::AttnConfig;
using kernels::AttnRel;

// Sample inputs of the three rows (attention_samples.cpp).
std::vector<Sample> attention_samples(DType dt, Generator& gen);
std::vector<Sample> attention_backward_samples(DType dt, Generator& gen);
std::vector<Sample> attention_weights_samples(DType dt, Generator& gen);

namespace {

std::string shape_or_none(const Tensor& t) { return t.defined() ? shape_str(t.shape()) : "undefined"; }

// Validates q, k (and v when given) and the options; returns the call's configuration.
AttnConfig check_attention(const Tensor& q, const Tensor& k, const Tensor* v, const Tensor& padding,
                           const Tensor& slopes, const Tensor& rel_bias, const Attrs& a) {
  QS_CHECK(q.defined() && k.defined() && q.dim() == 4 && k.dim() == 4 && (!v || (v->defined() && v->dim() == 4)),
           "attention: q, k, v must be [b, h, n, d], got {}, {}, {}", shape_or_none(q), shape_or_none(k),
           v ? shape_or_none(*v) : "-");
  AttnConfig c = kernels::attn_config(q, k, v, a);
  QS_CHECK(k.size(0) == c.b && k.size(3) == c.dk && (!v || (v->size(0) == c.b && v->size(1) == c.hkv &&
                                                             v->size(2) == c.m)),
           "attention: k {} and v {} do not match q {} (k [b, hkv, m, dk], v [b, hkv, m, dv])", shape_str(k.shape()),
           v ? shape_str(v->shape()) : "-", shape_str(q.shape()));
  QS_CHECK(c.hkv > 0 && c.hq % c.hkv == 0, "attention: {} query heads are not a multiple of {} key/value heads", c.hq,
           c.hkv);
  // f16 keys and values with f32 queries: a KV cache kept in half precision (inference only)
  const bool half_kv = q.dtype() == DType::f32 && k.dtype() == DType::f16;
  QS_CHECK(q.is_floating_point() && (q.dtype() == k.dtype() || half_kv) && (!v || v->dtype() == k.dtype()),
           "attention: q, k, v must share one floating dtype (or f32 q with f16 k and v), got {}, {}, {}",
           dtype_name(q.dtype()), dtype_name(k.dtype()), v ? dtype_name(v->dtype()) : "-");
  QS_CHECK(!half_kv || !grad_enabled() || !(q.requires_grad() || k.requires_grad() || (v && v->requires_grad())),
           "attention: f16 keys and values are for inference; no gradient flows through them");
  QS_CHECK(c.scale > 0, "attention: scale must be positive, got {}", c.scale);
  QS_CHECK(!c.causal || c.n <= c.m, "attention: causal with {} queries but only {} keys", c.n, c.m);
  if (padding.defined())
    QS_CHECK(padding.dtype() == DType::b8 && (padding.shape() == Shape{c.b, c.m}),
             "attention: key_padding_mask must be bool [{}, {}], got {} {}", c.b, c.m, dtype_name(padding.dtype()),
             shape_str(padding.shape()));
  if (slopes.defined())
    QS_CHECK(slopes.is_floating_point() && (slopes.shape() == Shape{c.hq}),
             "attention: alibi_slopes must be floating [{}], got {} {}", c.hq, dtype_name(slopes.dtype()),
             shape_str(slopes.shape()));
  Shape want = c.rel == AttnRel::t5 ? Shape{c.hq, c.num_buckets} : Shape{c.b, c.hq, c.n, c.nbw()};
  if (c.rel != AttnRel::none) {
    QS_CHECK(rel_bias.defined() && rel_bias.shape() == want, "attention: {} rel_bias must be {}, got {}",
             c.rel == AttnRel::t5 ? "t5" : "shaw", shape_str(want), shape_or_none(rel_bias));
    QS_CHECK(rel_bias.dtype() == q.dtype(), "attention: rel_bias has dtype {} but q has {}",
             dtype_name(rel_bias.dtype()), dtype_name(q.dtype()));
  }
  if (c.rel == AttnRel::t5) {
    const int64_t max_exact = (c.bidirectional ? c.num_buckets / 2 : c.num_buckets) / 2;
    QS_CHECK(max_exact >= 1 && c.max_distance > max_exact,
             "attention: t5 needs at least {} buckets and max_distance above the {} exact buckets, got {} and {}",
             c.bidirectional ? 4 : 2, max_exact, c.num_buckets, c.max_distance);
  }
  if (c.rel == AttnRel::shaw) QS_CHECK(c.max_distance >= 0, "attention: shaw max_distance must be >= 0");
  QS_CHECK(!c.bucket_weights || c.rel == AttnRel::shaw, "attention: return_bucket_weights needs relative = shaw");
  return c;
}

std::vector<TensorSpec> attention_meta(const OpCall& call) {
  const auto& in = call.in;
  AttnConfig c = check_attention(in[0], in[1], &in[2], in[3], in[4], in[5], call.attrs);
  DType dt = in[0].dtype();
  Shape bw = c.bucket_weights ? Shape{c.b, c.hq, c.n, c.nbw()} : Shape{0};
  return {{{c.b, c.hq, c.n, c.dv}, dt, {0, 2, 1, 3}}, {{c.b, c.hq, c.n}, dt}, {bw, dt}};
}

std::vector<TensorSpec> attention_backward_meta(const OpCall& call) {
  const auto& in = call.in;
  AttnConfig c = check_attention(in[3], in[4], &in[5], in[9], in[10], in[11], call.attrs);
  DType dt = in[3].dtype();
  Shape q{c.b, c.hq, c.n, c.dk}, rows{c.b, c.hq, c.n};
  auto expect = [&](const Tensor& t, const Shape& s, const char* what) {
    if (t.defined())
      QS_CHECK(t.shape() == s && t.dtype() == dt, "attention_backward: {} must be {} {}, got {} {}", what,
               dtype_name(dt), shape_str(s), dtype_name(t.dtype()), shape_str(t.shape()));
  };
  QS_CHECK(in[0].defined() && in[6].defined() && in[7].defined(), "attention_backward: dout, out and lse are needed");
  expect(in[0], {c.b, c.hq, c.n, c.dv}, "dout");
  expect(in[6], {c.b, c.hq, c.n, c.dv}, "out");
  expect(in[1], rows, "dlse");
  expect(in[7], rows, "lse");
  QS_CHECK(!in[2].defined() || in[8].defined(), "attention_backward: dbucket_weights needs bucket_weights");
  if (in[2].defined()) QS_CHECK(c.bucket_weights, "attention_backward: dbucket_weights needs return_bucket_weights");
  expect(in[2], {c.b, c.hq, c.n, c.nbw()}, "dbucket_weights");
  expect(in[8], {c.b, c.hq, c.n, c.nbw()}, "bucket_weights");
  Shape rel = in[11].defined() && c.rel != AttnRel::none ? in[11].shape() : Shape{0};
  return {{q, dt}, {in[4].shape(), dt}, {in[5].shape(), dt}, {rel, dt}};
}

std::vector<TensorSpec> attention_weights_meta(const OpCall& call) {
  const auto& in = call.in;
  AttnConfig c = check_attention(in[0], in[1], nullptr, in[2], in[3], in[4], call.attrs);
  QS_CHECK(in[5].defined() && in[5].shape() == (Shape{c.b, c.hq, c.n}) && in[5].dtype() == in[0].dtype(),
           "attention_weights: lse must be {} [{}, {}, {}], got {}", dtype_name(in[0].dtype()), c.b, c.hq, c.n,
           shape_or_none(in[5]));
  return {{{c.b, c.hq, c.n, c.m}, in[0].dtype()}};
}

std::vector<Tensor> attention_backward(const GradCtx& ctx, const std::vector<Tensor>& g) {
  const auto &in = ctx.in, &out = ctx.out;
  bool bw = ctx.attrs.b("return_bucket_weights");
  Tensor dout = g[0].defined() ? g[0] : zeros_like(out[0]);
  auto r = dispatch(OpKind::attention_backward,
                    {dout, g[1], bw ? g[2] : Tensor(), in[0], in[1], in[2], out[0], out[1], bw ? out[2] : Tensor(),
                     in[3], in[4], in[5]},
                    ctx.attrs);
  auto want = [&](size_t i, const Tensor& t) { return ctx.needs_grad[i] ? t : Tensor(); };
  return {want(0, r[0]), want(1, r[1]), want(2, r[2]), Tensor(), Tensor(), want(5, r[3])};
}

}  // namespace

const OpImpl attention_impl{attention_meta, kernels::attention_ref, attention_backward, attention_samples, nullptr};
const OpImpl attention_backward_impl{attention_backward_meta, kernels::attention_backward_ref, nullptr,
                                     attention_backward_samples, nullptr};
const OpImpl attention_weights_impl{attention_weights_meta, kernels::attention_weights_ref, nullptr,
                                    attention_weights_samples, nullptr};

}  // namespace qs::ops

namespace qs {

AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  QS_CHECK(q.defined() && k.defined() && v.defined() && q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
           "attention: q, k, v must be [b, h, n, d], got {}, {}, {}", q.defined() ? shape_str(q.shape()) : "undefined",
           k.defined() ? shape_str(k.shape()) : "undefined", v.defined() ? shape_str(v.shape()) : "undefined");
  kernels::AttnConfig c{};
  c.scale = o.scale > 0 ? o.scale : 1.0 / std::sqrt(double(q.size(3)));
  c.causal = o.causal;
  c.rel = o.relative == RelativeBias::t5 ? kernels::AttnRel::t5
          : o.relative == RelativeBias::shaw ? kernels::AttnRel::shaw : kernels::AttnRel::none;
  c.num_buckets = o.rel_num_buckets;
  c.max_distance = o.rel_max_distance;
  c.bidirectional = o.rel_bidirectional;
  c.bucket_weights = o.return_bucket_weights;
  Attrs attrs = kernels::attn_attrs(c);
  // The biases in the dtype the op computes in (f32 for half-precision q: autocast runs the row in f32).
  const bool f = q.is_floating_point();
  const DType dt = q.dtype() == DType::bf16 || q.dtype() == DType::f16 ? DType::f32 : q.dtype();
  Tensor slopes = o.alibi_slopes.defined() && f ? o.alibi_slopes.detach().to(dt) : o.alibi_slopes;
  Tensor rel = c.rel == kernels::AttnRel::none ? Tensor() : o.rel_bias;
  if (rel.defined() && f && rel.is_floating_point()) rel = rel.to(dt);
  auto r = ops::dispatch(ops::OpKind::attention, {q, k, v, o.key_padding_mask, slopes, rel}, attrs);
  AttentionOutput res;
  res.out = r[0];
  if (o.return_bucket_weights) res.bucket_weights = r[2];
  if (o.need_weights) {
    NoGrad ng;
    res.weights = ops::dispatch1(ops::OpKind::attention_weights,
                                 {q.detach().to(r[1].dtype()), k.detach().to(r[1].dtype()), o.key_padding_mask,
                                  slopes, rel.defined() ? rel.detach() : rel, r[1].detach()},
                                 attrs);
  }
  return res;
}

}  // namespace qs
