// The attention rows' shared configuration and relative-position tables.
#include "kernels/attention_common.h"

namespace qs::kernels {

AttnConfig attn_config(const Tensor& q, const Tensor& k, const Tensor* v, const Attrs& a) {
  AttnConfig c{};
  c.b = q.size(0), c.hq = q.size(1), c.n = q.size(2), c.dk = q.size(3);
  c.hkv = k.size(1), c.m = k.size(2);
  c.dv = v ? v->size(3) : 0;
  c.scale = a.f("scale");
  c.causal = a.b("causal");
  const std::string& r = a.s("relative");
  c.rel = r == "t5" ? AttnRel::t5 : r == "shaw" ? AttnRel::shaw : AttnRel::none;
  QS_CHECK(r == "none" || c.rel != AttnRel::none, "attention: relative must be none, t5 or shaw, got '{}'", r);
  c.num_buckets = a.i("num_buckets");
  c.max_distance = a.i("max_distance");
  c.bidirectional = a.b("bidirectional");
  c.bucket_weights = a.b("return_bucket_weights");
  return c;
}

Attrs attn_attrs(const AttnConfig& c) {
  const char* rel = c.rel == AttnRel::t5 ? "t5" : c.rel == AttnRel::shaw ? "shaw" : "none";
  return Attrs()
      .set("scale", c.scale)
      .set("causal", c.causal)
      .set("relative", std::string(rel))
      .set("num_buckets", c.num_buckets)
      .set("max_distance", c.max_distance)
      .set("bidirectional", c.bidirectional)
      .set("return_bucket_weights", c.bucket_weights);
}

std::vector<int64_t> attn_t5_buckets(const AttnConfig& c) {
  if (c.rel != AttnRel::t5) return {};
  std::vector<int64_t> t(size_t(c.n + c.m - 1));
  for (int64_t r = -(c.m - 1); r <= c.n - 1; ++r)
    t[size_t(r + c.m - 1)] = t5_relative_bucket(r, c.bidirectional, c.num_buckets, c.max_distance);
  return t;
}

std::vector<double> attn_distance_bias(const AttnConfig& c, const Tensor& slopes, const Tensor& rel_bias,
                                       const std::vector<int64_t>& t5_buckets, int64_t h) {
  bool alibi = slopes.defined(), t5 = c.rel == AttnRel::t5;
  if (!alibi && !t5) return {};
  std::vector<double> t(size_t(c.n + c.m - 1), 0.0);
  double slope = alibi ? load_as_double(slopes.raw_data(), slopes.dtype(), h * slopes.stride(0)) : 0.0;
  for (int64_t r = -(c.m - 1); r <= c.n - 1; ++r) {
    double x = -slope * double(r < 0 ? -r : r);
    if (t5) {
      int64_t bucket = t5_buckets[size_t(r + c.m - 1)];
      x += load_as_double(rel_bias.raw_data(), rel_bias.dtype(), h * rel_bias.stride(0) + bucket * rel_bias.stride(1));
    }
    t[size_t(r + c.m - 1)] = x;
  }
  return t;
}

}  // namespace qs::kernels
