// Positional encodings: names, limits, the sinusoidal table and RoPE frequencies with
// NTK-aware and YaRN scaling.
#include "qiusuo/nn/positional.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "qiusuo/autograd.h"
#include "qiusuo/error.h"
#include "qiusuo/ops.h"

namespace qs::nn {

namespace {
const std::vector<std::pair<PositionEncoding, const char*>> kEncodings = {
    {PositionEncoding::none, "none"}, {PositionEncoding::sinusoidal, "sinusoidal"},
    {PositionEncoding::learned, "learned"}, {PositionEncoding::shaw, "shaw"},
    {PositionEncoding::t5, "t5"}, {PositionEncoding::rope, "rope"},
    {PositionEncoding::alibi, "alibi"}};
const std::vector<std::pair<RopeScaling, const char*>> kScalings = {
    {RopeScaling::none, "none"}, {RopeScaling::ntk, "ntk"}, {RopeScaling::yarn, "yarn"}};

template <class E> std::string names_of(const std::vector<std::pair<E, const char*>>& table) {
  std::string s;
  for (auto& [e, n] : table) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}
}  // namespace

const std::vector<std::string>& position_encoding_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (auto& [e, n] : kEncodings) v.push_back(n);
    return v;
  }();
  return names;
}

PositionEncoding parse_position_encoding(const std::string& name) {
  for (auto& [e, n] : kEncodings)
    if (name == n) return e;
  QS_FAIL("unknown position encoding '{}'; expected one of: {}", name, names_of(kEncodings));
}
std::string position_encoding_name(PositionEncoding p) {
  for (auto& [e, n] : kEncodings)
    if (e == p) return n;
  QS_FAIL("position_encoding_name: invalid enum value {}", int(p));
}
RopeScaling parse_rope_scaling(const std::string& name) {
  for (auto& [e, n] : kScalings)
    if (name == n) return e;
  QS_FAIL("unknown rope scaling '{}'; expected one of: {}", name, names_of(kScalings));
}
std::string rope_scaling_name(RopeScaling s) {
  for (auto& [e, n] : kScalings)
    if (e == s) return n;
  QS_FAIL("rope_scaling_name: invalid enum value {}", int(s));
}

int64_t PositionConfig::max_supported_length() const {
  if (kind == PositionEncoding::learned) return max_len;
  if (kind != PositionEncoding::rope) return std::numeric_limits<int64_t>::max();
  if (rope_scaling == RopeScaling::none) return max_len;
  return int64_t(std::floor(double(max_len) * rope_factor));
}

void PositionConfig::validate() const {
  QS_CHECK(max_len > 0, "position config: max_len (the trained length) must be positive, got {}", max_len);
  if (kind == PositionEncoding::rope) {
    QS_CHECK(rope_base > 1.0, "position config: rope_base must be > 1, got {}", rope_base);
    QS_CHECK(rope_factor >= 1.0, "position config: rope_factor must be >= 1, got {}", rope_factor);
    QS_CHECK(yarn_beta_fast > yarn_beta_slow && yarn_beta_slow > 0,
             "position config: need yarn_beta_fast > yarn_beta_slow > 0, got {} and {}", yarn_beta_fast,
             yarn_beta_slow);
  }
  if (kind == PositionEncoding::t5)
    QS_CHECK(t5_num_buckets >= (t5_bidirectional ? 4 : 2) && t5_max_distance > 0,
             "position config: t5 needs num_buckets >= {} and max_distance > 0, got {} and {}",
             t5_bidirectional ? 4 : 2, t5_num_buckets, t5_max_distance);
  if (kind == PositionEncoding::shaw)
    QS_CHECK(shaw_max_distance > 0, "position config: shaw_max_distance must be positive, got {}",
             shaw_max_distance);
}

Tensor sinusoidal_table(int64_t start, int64_t n, int64_t d, DType dt) {
  QS_CHECK(start >= 0 && n >= 0 && d > 0, "sinusoidal_table: need start >= 0, n >= 0, d > 0, got {}, {}, {}", start,
           n, d);
  std::vector<double> pe(size_t(n * d));
  for (int64_t p = 0; p < n; ++p)
    for (int64_t c = 0; c < d; ++c) {
      double angle = double(start + p) / std::pow(10000.0, double(c - c % 2) / double(d));
      pe[size_t(p * d + c)] = c % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  return from_vector(pe, {n, d}, dt);
}

std::vector<double> rope_inv_freq(int64_t d_rot, const PositionConfig& cfg) {
  QS_CHECK(d_rot > 0 && d_rot % 2 == 0, "rope: the rotary dimension must be even and positive, got {}", d_rot);
  const double d = double(d_rot), s = cfg.rope_factor;
  double base = cfg.rope_base;
  if (cfg.rope_scaling == RopeScaling::ntk && d_rot > 2) base *= std::pow(s, d / (d - 2.0));
  std::vector<double> inv(size_t(d_rot / 2));
  for (int64_t i = 0; i < d_rot / 2; ++i) inv[size_t(i)] = std::pow(base, -2.0 * double(i) / d);
  if (cfg.rope_scaling != RopeScaling::yarn) return inv;
  // The dim whose wavelength fits `rotations` times into the original length.
  auto correction_dim = [&](double rotations) {
    return d * std::log(double(cfg.max_len) / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
  };
  double low = std::max(std::floor(correction_dim(cfg.yarn_beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(cfg.yarn_beta_slow)), d - 1.0);
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < d_rot / 2; ++i) {
    double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    double extrapolate = 1.0 - ramp;  // high-frequency dims keep their frequency
    inv[size_t(i)] = inv[size_t(i)] / s * (1.0 - extrapolate) + inv[size_t(i)] * extrapolate;
  }
  return inv;
}

double yarn_mscale(const PositionConfig& cfg) {
  if (cfg.rope_scaling != RopeScaling::yarn || cfg.rope_factor <= 1.0) return 1.0;
  return 0.1 * std::log(cfg.rope_factor) + 1.0;
}

RotaryEmbedding::RotaryEmbedding(int64_t d_rot, const PositionConfig& cfg)
    : d_rot_(d_rot), mscale_(yarn_mscale(cfg)), inv_freq_(rope_inv_freq(d_rot, cfg)) {}

void RotaryEmbedding::grow(int64_t len) {
  if (len <= cached_len_) return;
  int64_t cap = std::max<int64_t>(len, 2 * cached_len_), half = d_rot_ / 2;
  std::vector<double> c(size_t(cap * half)), s(size_t(cap * half));
  for (int64_t p = 0; p < cap; ++p)
    for (int64_t i = 0; i < half; ++i) {
      double a = double(p) * inv_freq_[size_t(i)];
      c[size_t(p * half + i)] = std::cos(a);
      s[size_t(p * half + i)] = std::sin(a);
    }
  cos_ = from_vector(c, {cap, half}, DType::f64);
  sin_ = from_vector(s, {cap, half}, DType::f64);
  cos_f32_ = cos_.to(DType::f32);
  sin_f32_ = sin_.to(DType::f32);
  cached_len_ = cap;
}

std::pair<Tensor, Tensor> RotaryEmbedding::cos_sin(int64_t start, int64_t n, DType dt) {
  QS_CHECK(start >= 0 && n >= 0, "rope: positions must be non-negative, got start {} n {}", start, n);
  grow(start + n);
  if (dt == DType::f32) return {cos_f32_.narrow(0, start, n), sin_f32_.narrow(0, start, n)};
  return {cos_.narrow(0, start, n).to(dt), sin_.narrow(0, start, n).to(dt)};
}

Tensor RotaryEmbedding::apply(const Tensor& x, int64_t start) {
  QS_CHECK(x.dim() >= 2 && x.size(-1) == d_rot_, "rope: expected x [..., n, {}], got {}", d_rot_,
           shape_str(x.shape()));
  auto [c, s] = cos_sin(start, x.size(-2), x.dtype());
  return rope(x, c, s);
}

AttentionPositions::AttentionPositions(Module& owner, const PositionConfig& cfg, int64_t heads, int64_t d_qk,
                                       int64_t d_rope, int64_t d_v, Generator& gen)
    : cfg_(cfg) {
  cfg.validate();
  switch (cfg.kind) {
    case PositionEncoding::rope:
      QS_CHECK(d_rope > 0 && d_rope % 2 == 0, "{}: rope needs an even rotary head dim, got {}", owner.type_name(),
               d_rope);
      rope_ = std::make_unique<RotaryEmbedding>(d_rope, cfg);
      break;
    case PositionEncoding::alibi: alibi_ = alibi_slopes(heads); break;
    case PositionEncoding::t5:
      t5_bias_ = owner.register_parameter("relative_attention_bias", randn({heads, cfg.t5_num_buckets}, DType::f32, &gen) * 0.02);
      break;
    case PositionEncoding::shaw: {
      int64_t r = 2 * cfg.shaw_max_distance + 1;
      rel_k_ = owner.register_parameter("rel_k", randn({r, d_qk}, DType::f32, &gen) * 0.02);
      rel_v_ = owner.register_parameter("rel_v", randn({r, d_v}, DType::f32, &gen) * 0.02);
      break;
    }
    default: break;
  }
}

Tensor AttentionPositions::rotate(const Tensor& x, int64_t start) { return rope_ ? rope_->apply(x, start) : x; }

void AttentionPositions::add_to(AttentionOptions& o, const Tensor& q, double scale) const {
  if (alibi_.defined()) o.alibi_slopes = alibi_;
  if (t5_bias_.defined()) {
    o.relative = RelativeBias::t5;
    o.rel_bias = t5_bias_;
    o.rel_num_buckets = cfg_.t5_num_buckets;
    o.rel_max_distance = cfg_.t5_max_distance;
    o.rel_bidirectional = cfg_.t5_bidirectional;
  }
  if (rel_k_.defined()) {
    // Shaw et al. eq. 4: e_ij = q_i (k_j + a_K[clip(j - i)]) / sqrt(d), so the key term shares the scale.
    o.relative = RelativeBias::shaw;
    o.rel_bias = matmul(q, rel_k_.to(q.dtype()).t()) * scale;
    o.rel_max_distance = cfg_.shaw_max_distance;
    o.return_bucket_weights = true;
  }
}

Tensor AttentionPositions::value_term(const Tensor& out, const Tensor& bucket_weights) const {
  if (!rel_v_.defined() || !bucket_weights.defined()) return out;  // cross-attention has no positions
  return out + matmul(bucket_weights, rel_v_.to(out.dtype()));
}

}  // namespace qs::nn
