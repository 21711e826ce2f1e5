// The textbook attention (qs::attention_explicit): logits, biases, masks, softmax and the
// two products written with ordinary ops, so autograd differentiates it for free. It
// materialises [b, hq, n, m]; the fused op is tested against it. Also the position
// helpers every attention path shares (T5 buckets, ALiBi slopes).
#include <cmath>
#include <limits>

#include "qiusuo/attention.h"
#include "qiusuo/error.h"
#include "qiusuo/ops.h"

namespace qs {

int64_t t5_relative_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                           int64_t max_distance) {
  QS_CHECK(num_buckets >= (bidirectional ? 4 : 2) && max_distance > 0,
           "t5_relative_bucket: need at least {} buckets and max_distance > 0, got {} and {}",
           bidirectional ? 4 : 2, num_buckets, max_distance);
  int64_t ret = 0, n = -relative_position;
  if (bidirectional) {
    num_buckets /= 2;
    if (n < 0) ret += num_buckets;
    n = n < 0 ? -n : n;
  } else {
    n = n < 0 ? 0 : n;
  }
  const int64_t max_exact = num_buckets / 2;
  if (n < max_exact) return ret + n;
  // As T5 (and Hugging Face): computed in float32, truncated toward zero.
  float large = float(max_exact) + std::log(float(n) / float(max_exact)) /
                                       std::log(float(max_distance) / float(max_exact)) *
                                       float(num_buckets - max_exact);
  int64_t v = int64_t(large);
  return ret + (v < num_buckets - 1 ? v : num_buckets - 1);
}

Tensor alibi_slopes(int64_t heads) {
  QS_CHECK(heads > 0, "alibi_slopes: heads must be positive, got {}", heads);
  auto pow2_slopes = [](int64_t h) {
    std::vector<double> s(static_cast<size_t>(h));
    double start = std::pow(2.0, -8.0 / double(h));
    for (int64_t i = 0; i < h; ++i) s[size_t(i)] = std::pow(start, double(i + 1));
    return s;
  };
  int64_t p = 1;
  while (p * 2 <= heads) p *= 2;
  std::vector<double> s = pow2_slopes(p);
  if (p < heads) {
    std::vector<double> extra = pow2_slopes(2 * p);
    for (int64_t i = 0; int64_t(s.size()) < heads; i += 2) s.push_back(extra[size_t(i)]);
  }
  return from_vector(s, {heads}, DType::f32);
}

namespace {

struct Dims {
  int64_t b, hq, hkv, n, m, dk, dv;
};

Dims check_shapes(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  QS_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
           "attention: q, k, v must be [b, h, n, d], got {}, {}, {}", shape_str(q.shape()), shape_str(k.shape()),
           shape_str(v.shape()));
  Dims d{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), v.size(3)};
  QS_CHECK(k.size(0) == d.b && v.size(0) == d.b && v.size(1) == d.hkv && v.size(2) == d.m && k.size(3) == d.dk,
           "attention: k {} and v {} do not match q {} (k [b, hkv, m, dk], v [b, hkv, m, dv])", shape_str(k.shape()),
           shape_str(v.shape()), shape_str(q.shape()));
  QS_CHECK(d.hkv > 0 && d.hq % d.hkv == 0, "attention: {} query heads are not a multiple of {} key/value heads", d.hq,
           d.hkv);
  QS_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype() && q.is_floating_point(),
           "attention: q, k, v must share one floating dtype, got {}, {}, {}", dtype_name(q.dtype()),
           dtype_name(k.dtype()), dtype_name(v.dtype()));
  QS_CHECK(!o.causal || d.n <= d.m, "attention: causal with {} queries but only {} keys", d.n, d.m);
  if (o.key_padding_mask.defined())
    QS_CHECK(o.key_padding_mask.dtype() == DType::b8 && (o.key_padding_mask.shape() == Shape{d.b, d.m}),
             "attention: key_padding_mask must be bool [{}, {}], got {} {}", d.b, d.m,
             dtype_name(o.key_padding_mask.dtype()), shape_str(o.key_padding_mask.shape()));
  if (o.alibi_slopes.defined())
    QS_CHECK((o.alibi_slopes.shape() == Shape{d.hq}), "attention: alibi_slopes must be [{}], got {}", d.hq,
             shape_str(o.alibi_slopes.shape()));
  if (o.relative == RelativeBias::t5)
    QS_CHECK(o.rel_bias.defined() && (o.rel_bias.shape() == Shape{d.hq, o.rel_num_buckets}),
             "attention: t5 rel_bias must be [{}, {}], got {}", d.hq, o.rel_num_buckets,
             o.rel_bias.defined() ? shape_str(o.rel_bias.shape()) : "undefined");
  if (o.relative == RelativeBias::shaw)
    QS_CHECK(o.rel_bias.defined() && (o.rel_bias.shape() == Shape{d.b, d.hq, d.n, 2 * o.rel_max_distance + 1}),
             "attention: shaw rel_bias must be [{}, {}, {}, {}], got {}", d.b, d.hq, d.n, 2 * o.rel_max_distance + 1,
             o.rel_bias.defined() ? shape_str(o.rel_bias.shape()) : "undefined");
  QS_CHECK(!o.return_bucket_weights || o.relative == RelativeBias::shaw,
           "attention: return_bucket_weights needs relative = shaw");
  return d;
}

// [b, hkv, m, d] -> [b, hq, m, d], each key/value head repeated for its group.
Tensor repeat_kv(const Tensor& t, int64_t hq) {
  int64_t hkv = t.size(1);
  if (hkv == hq) return t;
  return t.unsqueeze(2).expand({t.size(0), hkv, hq / hkv, t.size(2), t.size(3)}).reshape(
      {t.size(0), hq, t.size(2), t.size(3)});
}

// The relative bucket of every (query row, key) pair, i64 [n, m].
Tensor bucket_matrix(const Dims& d, const AttentionOptions& o) {
  std::vector<double> idx(size_t(d.n * d.m));
  for (int64_t i = 0; i < d.n; ++i)
    for (int64_t j = 0; j < d.m; ++j) {
      int64_t rel = j - (i + d.m - d.n);
      idx[size_t(i * d.m + j)] = double(o.relative == RelativeBias::t5
                                            ? t5_relative_bucket(rel, o.rel_bidirectional, o.rel_num_buckets,
                                                                 o.rel_max_distance)
                                            : shaw_relative_bucket(rel, o.rel_max_distance));
    }
  return from_vector(idx, {d.n, d.m}, DType::i64);
}

}  // namespace

AttentionOutput attention_explicit(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  const Dims d = check_shapes(q, k, v, o);
  const DType dt = q.dtype();
  const double scale = o.scale > 0 ? o.scale : 1.0 / std::sqrt(double(d.dk));
  Tensor kk = repeat_kv(k, d.hq), vv = repeat_kv(v, d.hq);
  Tensor logits = matmul(q, kk.transpose(2, 3)) * scale;  // [b, hq, n, m]
  if (o.alibi_slopes.defined()) {
    std::vector<double> dist(size_t(d.n * d.m));
    for (int64_t i = 0; i < d.n; ++i)
      for (int64_t j = 0; j < d.m; ++j) dist[size_t(i * d.m + j)] = std::fabs(double(i + d.m - d.n - j));
    Tensor slopes = o.alibi_slopes.detach().to(dt).view({1, d.hq, 1, 1});
    logits = logits - slopes * from_vector(dist, {1, 1, d.n, d.m}, dt);
  }
  Tensor buckets;
  if (o.relative != RelativeBias::none) {
    buckets = bucket_matrix(d, o);
    Tensor rb = o.rel_bias.to(dt);
    if (o.relative == RelativeBias::t5) {
      logits = logits + index_select(rb, 1, buckets.reshape({d.n * d.m})).view({1, d.hq, d.n, d.m});
    } else {
      Tensor idx = buckets.view({1, 1, d.n, d.m}).expand({d.b, d.hq, d.n, d.m}).contiguous();
      logits = logits + gather(rb, 3, idx);
    }
  }
  // Masked logits get the lowest finite value, not -inf: a fully masked row then stays
  // finite (uniform) in the softmax and its forward and gradient are zeroed below.
  Tensor masked;
  if (o.causal) {
    std::vector<double> c(size_t(d.n * d.m));
    for (int64_t i = 0; i < d.n; ++i)
      for (int64_t j = 0; j < d.m; ++j) c[size_t(i * d.m + j)] = j > i + d.m - d.n ? 1.0 : 0.0;
    masked = from_vector(c, {1, 1, d.n, d.m}, DType::b8);
  }
  if (o.key_padding_mask.defined()) {
    Tensor pad = o.key_padding_mask.view({d.b, 1, 1, d.m});
    masked = masked.defined() ? gt(masked.to(DType::f32) + pad.to(DType::f32), scalar_tensor(0.0)) : pad;
  }
  const double lowest = dt == DType::f64 ? -std::numeric_limits<double>::max() : -std::numeric_limits<float>::max();
  if (masked.defined()) logits = masked_fill(logits, masked, lowest);
  Tensor w = softmax(logits, 3);
  if (masked.defined()) {
    Tensor all = eq(sum(masked.to(DType::f32), {3}, true), scalar_tensor(double(d.m)));  // [., ., n, 1]
    w = masked_fill(masked_fill(w, masked, 0.0), all, 0.0);
  }
  AttentionOutput r;
  r.out = matmul(w, vv);
  if (o.need_weights) r.weights = w.detach();
  if (o.return_bucket_weights) {
    Tensor idx = buckets.view({1, 1, d.n, d.m}).expand({d.b, d.hq, d.n, d.m}).contiguous();
    r.bucket_weights = scatter_add(zeros({d.b, d.hq, d.n, 2 * o.rel_max_distance + 1}, dt), 3, idx, w);
  }
  return r;
}

}  // namespace qs
