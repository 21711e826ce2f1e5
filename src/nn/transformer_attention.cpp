// Multi-head attention (self and cross, GQA, KV cache), the KV cache structs and the
// thread-local attention capture.
#include <algorithm>
#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

namespace qs::nn {

// ---- KV cache
int64_t LayerKVCache::length() const { return k.defined() ? k.size(-2) : 0; }
int64_t LayerKVCache::bytes() const {
  int64_t n = 0;
  for (const Tensor* t : {&k, &v})
    if (t->defined()) n += t->numel() * int64_t(t->element_size());
  return n;
}

namespace {
// buf [..., cap, d] holds `len` rows (sequence dim -2): makes room for add's rows (doubling
// the capacity when short), writes them after the held ones and returns the held view.
Tensor grow_into(Tensor& buf, int64_t len, const Tensor& add) {
  const int64_t dim = add.dim() - 2, need = len + add.size(dim);
  if (!buf.defined() || buf.size(dim) < need) {
    Shape shape = add.shape();
    shape[size_t(dim)] = std::max<int64_t>(need, 2 * (buf.defined() ? buf.size(dim) : 0));
    Tensor bigger = empty(shape, add.dtype());
    if (len > 0) bigger.narrow(dim, 0, len).copy_(buf.narrow(dim, 0, len));
    buf = bigger;
  }
  buf.narrow(dim, len, add.size(dim)).copy_(add);
  return buf.narrow(dim, 0, need);
}
}  // namespace

void LayerKVCache::append(const Tensor& k_new, const Tensor& v_new) {
  const int64_t len = length();
  if (len > 0)
    QS_CHECK(k_new.dim() == k.dim() && v_new.dim() == v.dim() &&
                 (k_new.dtype() == k.dtype() || (k.dtype() == DType::f16 && k_new.dtype() == DType::f32)),
             "KV cache: appending {} {} to a cache of {} {}", dtype_name(k_new.dtype()), shape_str(k_new.shape()),
             dtype_name(k.dtype()), shape_str(k.shape()));
  if (grad_enabled() && (k_new.requires_grad() || v_new.requires_grad())) {  // rows held in f16 rejoin as f32
    k = len > 0 ? cat({k.to(k_new.dtype()), k_new}, -2) : k_new;
    v = len > 0 ? cat({v.to(v_new.dtype()), v_new}, -2) : v_new;
    kbuf_ = vbuf_ = Tensor();
    return;
  }
  if (len > 0 && !kbuf_.defined()) kbuf_ = k.contiguous(), vbuf_ = v.contiguous();  // after an autograd step
  const bool half = store == DType::f16 && k_new.dtype() == DType::f32 && (len == 0 || k.dtype() == DType::f16);
  k = grow_into(kbuf_, len, half ? k_new.detach().to(DType::f16) : k_new.detach());
  v = grow_into(vbuf_, len, half ? v_new.detach().to(DType::f16) : v_new.detach());
}

int64_t KVCacheSet::length() const { return layers.empty() ? 0 : layers[0].length(); }
int64_t KVCacheSet::bytes() const {
  int64_t n = 0;
  for (auto& l : layers) n += l.bytes();
  return n;
}
void KVCacheSet::clear() {
  for (auto& l : layers) l = LayerKVCache{};
}

// ---- capture
namespace {
thread_local AttentionCapture* g_capture = nullptr;
}  // namespace

AttentionCapture::AttentionCapture() : prev_(g_capture) { g_capture = this; }
AttentionCapture::~AttentionCapture() { g_capture = prev_; }
AttentionCapture* AttentionCapture::active() { return g_capture; }
void AttentionCapture::add(const std::string& name, const Tensor& weights) {
  records_.push_back({name, weights.detach()});
}
Tensor AttentionCapture::weights(const std::string& name) const {
  for (auto it = records_.rbegin(); it != records_.rend(); ++it)
    if (it->name == name) return it->weights;
  std::string names;
  for (auto& r : records_) names += (names.empty() ? "" : ", ") + r.name;
  QS_FAIL("AttentionCapture: nothing recorded under '{}'; recorded: [{}]", name, names);
}

void AttentionLayer::deliver(const AttentionArgs& a, AttentionResult& r) const {
  if (AttentionCapture* c = AttentionCapture::active(); c && r.weights.defined()) c->add(capture_name_, r.weights);
  if (!a.need_weights) r.weights = Tensor();
}

// ---- MultiheadAttention
MultiheadAttention::MultiheadAttention(int64_t d_model, int64_t n_heads, int64_t n_kv_heads, const PositionConfig& pos,
                                       bool bias, Generator& gen, int64_t head_dim)
    : AttentionLayer("MultiheadAttention"), d_(d_model), h_(n_heads), g_(n_kv_heads > 0 ? n_kv_heads : n_heads) {
  QS_CHECK(d_ > 0 && h_ > 0 && head_dim >= 0 && (head_dim > 0 || d_ % h_ == 0),
           "MultiheadAttention: d_model {} must be a positive multiple of n_heads {} (or head_dim {} given)", d_, h_,
           head_dim);
  QS_CHECK(h_ % g_ == 0, "MultiheadAttention: n_heads {} must be a multiple of n_kv_heads {}", h_, g_);
  dh_ = head_dim > 0 ? head_dim : d_ / h_;
  in_proj_ = register_module("in_proj", std::make_shared<Linear>(d_, (h_ + 2 * g_) * dh_, bias, gen));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(h_ * dh_, d_, bias, gen));
  pos_ = std::make_shared<AttentionPositions>(*this, pos, h_, dh_, dh_, dh_, gen);
}

namespace {
// [B, T, heads * dh] -> [B, heads, T, dh] (a view).
Tensor split_heads(const Tensor& t, int64_t heads, int64_t dh) {
  return t.view({t.size(0), t.size(1), heads, dh}).transpose(1, 2);
}
Tensor merge_heads(const Tensor& t) {  // [B, H, T, dh] -> [B, T, H * dh]
  return t.transpose(1, 2).reshape({t.size(0), t.size(2), t.size(1) * t.size(3)});
}
}  // namespace

AttentionResult MultiheadAttention::attend(const Tensor& x, const AttentionArgs& a) {
  ModuleScope scope(*this);
  QS_CHECK(x.dim() == 3 && x.size(2) == d_, "MultiheadAttention: expected x [B, T, {}], got {}", d_,
           shape_str(x.shape()));
  const int64_t b = x.size(0), qw = h_ * dh_, kw = g_ * dh_;
  const bool cross = a.memory.defined();
  Tensor q, k, v;
  if (!cross) {
    // Through child(): quantisation may have replaced the projection (quant::quantize_linears).
    Tensor qkv = child("in_proj")->forward(x);
    q = qkv.narrow(2, 0, qw), k = qkv.narrow(2, qw, kw), v = qkv.narrow(2, qw + kw, kw);
  } else {
    QS_CHECK(a.memory.dim() == 3 && a.memory.size(0) == b && a.memory.size(2) == d_,
             "MultiheadAttention: memory must be [{}, M, {}], got {}", b, d_, shape_str(a.memory.shape()));
    QS_CHECK(a.cache == nullptr, "MultiheadAttention: the KV cache is for self-attention only");
    QS_CHECK(child("in_proj") == in_proj_, "MultiheadAttention: cross-attention needs the float in_proj (found {})",
             child("in_proj")->type_name());
    const Tensor& w = in_proj_->weight();
    const Tensor& bias = in_proj_->bias();
    auto part = [&](const Tensor& t, int64_t s, int64_t len) { return t.defined() ? t.narrow(0, s, len) : Tensor(); };
    q = linear(x, part(w, 0, qw), part(bias, 0, qw));
    Tensor kv = linear(a.memory, part(w, qw, 2 * kw), part(bias, qw, 2 * kw));
    k = kv.narrow(2, 0, kw), v = kv.narrow(2, kw, kw);
  }
  q = split_heads(q, h_, dh_), k = split_heads(k, g_, dh_), v = split_heads(v, g_, dh_);
  const int64_t start = a.cache ? a.cache->length() : 0;
  if (!cross) q = pos_->rotate(q, start), k = pos_->rotate(k, start);
  if (a.cache) {
    a.cache->append(k, v);
    k = a.cache->k, v = a.cache->v;
  }
  AttentionOptions o;
  o.scale = (cross ? 1.0 : pos_->logit_scale()) / std::sqrt(double(dh_));
  o.causal = a.causal;
  o.key_padding_mask = a.key_padding_mask;
  o.need_weights = wants_weights(a);
  if (!cross) pos_->add_to(o, q, o.scale);
  AttentionOutput r = run_attention(q, k, v, o);
  AttentionResult res{child("out_proj")->forward(merge_heads(pos_->value_term(r.out, r.bucket_weights))), r.weights};
  deliver(a, res);
  return res;
}

Tensor MultiheadAttention::forward(const Tensor& x, const Tensor& memory) {
  AttentionArgs a;
  a.memory = memory;
  return attend(x, a).out;
}

int64_t MultiheadAttention::cache_bytes_per_token(DType dt) const { return 2 * g_ * dh_ * int64_t(dtype_size(dt)); }

std::string MultiheadAttention::extra_repr() const {
  return fmt::format("d_model={}, n_heads={}, n_kv_heads={}, head_dim={}, pos={}", d_, h_, g_, dh_,
                     position_encoding_name(pos_->config().kind));
}

}  // namespace qs::nn
