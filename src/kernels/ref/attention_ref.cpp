// Reference attention, one query row at a time in double (a row of logits is the only
// thing materialised). For query row i of head h (position pos_i = i + m - n), key/value
// head g = h / (hq / hkv), and the visible keys j (not padding; j <= pos_i when causal):
//   s_j   = scale q_i . k_j - slope_h |pos_i - j| + rel_bias[h, t5(j - pos_i)]     (T5)
//                                               or rel_bias[b, h, i, shaw(j - pos_i)]  (Shaw)
//   lse_i = log sum_j exp(s_j)      P_j = exp(s_j - lse_i)      out_i = sum_j P_j v_j
//   bucket_weights[i, r] = sum of P_j over the j with shaw(j - pos_i) = r
// A row without visible keys has zero output, zero weights, zero gradients and lse = 0.
// Backward (FlashAttention-2's, from the saved lse):
//   dP_j = dout_i . v_j + dbucket_weights[i, shaw(j - pos_i)]     D = sum_j P_j dP_j
//   dS_j = P_j (dP_j - D + dlse_i)
//   dq_i += scale sum_j dS_j k_j    dk_j += scale dS_j q_i    dv_j += P_j dout_i
//   drel_bias[h, t5(j - pos_i)] += dS_j  (T5)   drel_bias[b, h, i, shaw(j - pos_i)] += dS_j  (Shaw)
#include <cmath>

#include "kernels/attention_common.h"
#include "kernels/ref/ref_kernels.h"

namespace qs::kernels {

namespace {

int64_t offset_of(const Tensor& t, std::initializer_list<int64_t> idx) {
  int64_t off = 0;
  size_t d = 0;
  for (int64_t x : idx) off += x * t.strides()[d++];
  return off;
}
double at(const Tensor& t, std::initializer_list<int64_t> idx) {
  return load_as_double(t.raw_data(), t.dtype(), offset_of(t, idx));
}

struct AttnInputs {
  const Tensor &q, &k, &padding, &slopes, &rel_bias;
};

// The logits of row (b, h, i) into s; visible[j] says whether key j takes part.
// Returns whether any key is visible.
bool row_logits(const AttnConfig& c, const AttnInputs& in, int64_t b, int64_t h, int64_t i, std::vector<double>& s,
                std::vector<char>& visible) {
  const int64_t g = h / c.group(), pos = i + c.offset();
  bool any = false;
  for (int64_t j = 0; j < c.m; ++j) {
    bool masked = (c.causal && j > pos) || (in.padding.defined() && at(in.padding, {b, j}) != 0.0);
    visible[size_t(j)] = !masked;
    if (masked) continue;
    any = true;
    double dot = 0;
    for (int64_t x = 0; x < c.dk; ++x) dot += at(in.q, {b, h, i, x}) * at(in.k, {b, g, j, x});
    double bias = 0;
    if (in.slopes.defined()) bias -= at(in.slopes, {h}) * double(std::abs(pos - j));
    if (c.rel == AttnRel::t5)
      bias += at(in.rel_bias, {h, t5_relative_bucket(j - pos, c.bidirectional, c.num_buckets, c.max_distance)});
    if (c.rel == AttnRel::shaw) bias += at(in.rel_bias, {b, h, i, shaw_relative_bucket(j - pos, c.max_distance)});
    s[size_t(j)] = c.scale * dot + bias;
  }
  return any;
}

double log_sum_exp(const std::vector<double>& s, const std::vector<char>& visible) {
  double mx = -INFINITY, z = 0;
  for (size_t j = 0; j < s.size(); ++j)
    if (visible[j]) mx = std::max(mx, s[j]);
  for (size_t j = 0; j < s.size(); ++j)
    if (visible[j]) z += std::exp(s[j] - mx);
  return mx + std::log(z);
}

void put(const Tensor& t, std::initializer_list<int64_t> idx, double v) {
  store_from_double(t.raw_data(), t.dtype(), offset_of(t, idx), v);
}

}  // namespace

void attention_ref(ops::OpCall& call) {
  const AttnConfig c = attn_config(call.in[0], call.in[1], &call.in[2], call.attrs);
  const AttnInputs in{call.in[0], call.in[1], call.in[3], call.in[4], call.in[5]};
  const Tensor& v = call.in[2];
  const Tensor &out = call.out[0], &lse = call.out[1], &bw = call.out[2];
  std::vector<double> s(size_t(c.m)), o(size_t(c.dv)), w(size_t(c.nbw()));
  std::vector<char> visible(size_t(c.m));
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < c.n; ++i) {
        const int64_t g = h / c.group(), pos = i + c.offset();
        std::fill(o.begin(), o.end(), 0.0);
        std::fill(w.begin(), w.end(), 0.0);
        bool any = row_logits(c, in, b, h, i, s, visible);
        double l = any ? log_sum_exp(s, visible) : attn_empty_lse(lse.dtype());
        for (int64_t j = 0; j < c.m; ++j) {
          if (!visible[size_t(j)]) continue;
          double p = std::exp(s[size_t(j)] - l);
          for (int64_t y = 0; y < c.dv; ++y) o[size_t(y)] += p * at(v, {b, g, j, y});
          if (c.bucket_weights) w[size_t(shaw_relative_bucket(j - pos, c.max_distance))] += p;
        }
        put(lse, {b, h, i}, l);
        for (int64_t y = 0; y < c.dv; ++y) put(out, {b, h, i, y}, o[size_t(y)]);
        if (c.bucket_weights)
          for (int64_t r = 0; r < c.nbw(); ++r) put(bw, {b, h, i, r}, w[size_t(r)]);
      }
}

void attention_backward_ref(ops::OpCall& call) {
  const std::vector<Tensor>& a = call.in;
  const Tensor &dout = a[0], &dlse = a[1], &dbw = a[2], &q = a[3], &k = a[4], &v = a[5], &lse = a[7];
  const AttnConfig c = attn_config(q, k, &v, call.attrs);
  const AttnInputs in{q, k, a[9], a[10], a[11]};
  std::vector<double> dq(size_t(q.numel())), dk(size_t(k.numel())), dv(size_t(v.numel())),
      drel(size_t(call.out[3].numel()));
  std::vector<double> s(size_t(c.m)), dS(size_t(c.m));
  std::vector<char> visible(size_t(c.m));
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < c.n; ++i) {
        const int64_t g = h / c.group(), pos = i + c.offset();
        if (!row_logits(c, in, b, h, i, s, visible)) continue;
        double l = at(lse, {b, h, i}), D = 0;
        for (int64_t j = 0; j < c.m; ++j) {
          if (!visible[size_t(j)]) continue;
          double p = std::exp(s[size_t(j)] - l), dp = 0;
          for (int64_t y = 0; y < c.dv; ++y) dp += at(dout, {b, h, i, y}) * at(v, {b, g, j, y});
          if (dbw.defined()) dp += at(dbw, {b, h, i, shaw_relative_bucket(j - pos, c.max_distance)});
          s[size_t(j)] = p;  // s now holds P
          dS[size_t(j)] = dp;
          D += p * dp;
        }
        double dl = dlse.defined() ? at(dlse, {b, h, i}) : 0.0;
        for (int64_t j = 0; j < c.m; ++j) {
          if (!visible[size_t(j)]) continue;
          double p = s[size_t(j)], ds = p * (dS[size_t(j)] - D + dl);
          for (int64_t x = 0; x < c.dk; ++x) {
            dq[size_t(((b * c.hq + h) * c.n + i) * c.dk + x)] += c.scale * ds * at(k, {b, g, j, x});
            dk[size_t(((b * c.hkv + g) * c.m + j) * c.dk + x)] += c.scale * ds * at(q, {b, h, i, x});
          }
          for (int64_t y = 0; y < c.dv; ++y)
            dv[size_t(((b * c.hkv + g) * c.m + j) * c.dv + y)] += p * at(dout, {b, h, i, y});
          if (c.rel == AttnRel::t5)
            drel[size_t(h * c.num_buckets +
                        t5_relative_bucket(j - pos, c.bidirectional, c.num_buckets, c.max_distance))] += ds;
          if (c.rel == AttnRel::shaw)
            drel[size_t(((b * c.hq + h) * c.n + i) * c.nbw() + shaw_relative_bucket(j - pos, c.max_distance))] += ds;
        }
      }
  store_vector(call.out[0], dq);
  store_vector(call.out[1], dk);
  store_vector(call.out[2], dv);
  store_vector(call.out[3], drel);
}

void attention_weights_ref(ops::OpCall& call) {
  const std::vector<Tensor>& a = call.in;
  const AttnConfig c = attn_config(a[0], a[1], nullptr, call.attrs);
  const AttnInputs in{a[0], a[1], a[2], a[3], a[4]};
  const Tensor &lse = a[5], &w = call.out[0];
  std::vector<double> s(size_t(c.m));
  std::vector<char> visible(size_t(c.m));
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < c.n; ++i) {
        row_logits(c, in, b, h, i, s, visible);
        double l = at(lse, {b, h, i});
        for (int64_t j = 0; j < c.m; ++j) put(w, {b, h, i, j}, visible[size_t(j)] ? std::exp(s[size_t(j)] - l) : 0.0);
      }
}

}  // namespace qs::kernels
