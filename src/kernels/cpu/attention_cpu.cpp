// Fused attention, forward and weights: FlashAttention-2's tiled online softmax.
// A task is (batch, kv head, block of kAttnBr query rows); it streams key tiles of
// kAttnBc keys (transposed once into a contiguous scratch tile shared by the group's query
// heads), keeps per row a running max, sum and output accumulator rescaled as the max
// grows, and stores only out and lse = max + log(sum). Key tiles entirely above the
// causal diagonal are skipped. The backward pass is in attention_cpu_backward.cpp.
#include "kernels/cpu/attention_cpu.h"

#include <omp.h>

#include <algorithm>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_avx2.h"

namespace qs::kernels {

template <class T>
AttnPlan<T> make_attn_plan(const AttnConfig& c, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& pad,
                           const Tensor& slopes, const Tensor& rel_bias, const Tensor* half_k, const Tensor* half_v) {
  AttnPlan<T> p;
  p.c = c;
  const Tensor& ks = half_k ? *half_k : k;
  const Tensor& vs = half_v ? *half_v : v;
  p.q = static_cast<const T*>(q.raw_data());
  p.k = half_k ? nullptr : static_cast<const T*>(k.raw_data());
  p.v = v.defined() ? static_cast<const T*>(v.raw_data()) : nullptr;
  for (int d = 0; d < 3; ++d) {
    p.qs[d] = q.stride(d), p.ks[d] = ks.stride(d);
    p.vs[d] = vs.defined() ? vs.stride(d) : 0;
  }
  std::vector<int64_t> buckets = attn_t5_buckets(c);
  for (int64_t h = 0; h < c.hq; ++h) {
    std::vector<double> d = attn_distance_bias(c, slopes, rel_bias, buckets, h);
    p.dist.insert(p.dist.end(), d.begin(), d.end());
  }
  if (pad.defined()) {
    p.pad.resize(size_t(c.b * c.m));
    const auto* m = static_cast<const uint8_t*>(pad.raw_data());
    for (int64_t b = 0; b < c.b; ++b)
      for (int64_t j = 0; j < c.m; ++j)
        p.pad[size_t(b * c.m + j)] = m[b * pad.stride(0) + j * pad.stride(1)] ? T(-INFINITY) : T(0);
  }
  if (c.rel == AttnRel::shaw) {
    p.shaw = static_cast<const T*>(rel_bias.raw_data());
    for (int d = 0; d < 4; ++d) p.ss[d] = rel_bias.stride(d);
  }
  return p;
}

template <class T> void attn_load_kt(const AttnPlan<T>& p, int64_t b, int64_t g, int64_t j0, int64_t jn, T* kt) {
  // Contiguous stores, strided loads (cheaper than the other way round).
  const int64_t dk = p.c.dk, stride = p.ks[2];
  const T* k0 = p.k_row(b, g, j0);
  for (int64_t x = 0; x < dk; ++x) {
    T* row = kt + x * kAttnBc;
    for (int64_t jj = 0; jj < jn; ++jj) row[jj] = k0[jj * stride + x];
    for (int64_t jj = jn; jj < kAttnBc; ++jj) row[jj] = T(0);
  }
}

template <class T>
T attn_score_row(const AttnPlan<T>& p, int64_t b, int64_t h, int64_t i, const T* q, const T* kt, int64_t j0,
                 int64_t jn, T* s) {
  alignas(64) T acc[kAttnBc];
  attn_dot_tile(q, kt, p.c.dk, acc);
  return attn_mask_row(p, b, h, i, j0, jn, acc, s);
}

namespace {

// One query row's running state inside a forward task.
template <class T> struct RowState {
  T* mx;
  T* l;
  T* acc;  // [dv]
  T* bw;   // [2K + 1] (Shaw bucket weights) or null
};

// acc[y] += sum_jj pt[jj] v[j0 + jj, y].
template <class T>
void accumulate_pv(const AttnPlan<T>& p, int64_t b, int64_t g, int64_t j0, int64_t jn, const T* pt, T* acc) {
  const T* rows[kAttnBc];
  for (int64_t jj = 0; jj < jn; ++jj) rows[jj] = p.v_row(b, g, j0 + jj);
  attn_axpy(acc, p.c.dv, jn, pt, rows, 0);
}

template <class T>
void online_update(const AttnPlan<T>& p, int64_t b, int64_t g, int64_t pos, int64_t j0, int64_t jn, const T* s, T bm,
                   T* pt, RowState<T> st) {
  const T mnew = std::max(*st.mx, bm);
  if (mnew == T(-INFINITY)) return;  // nothing visible yet
  const T corr = fast_exp(*st.mx - mnew);
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t jj = 0; jj < kAttnBc; ++jj) {
    pt[jj] = fast_exp(s[jj] - mnew);
    sum += pt[jj];
  }
  *st.l = *st.l * corr + sum;
  *st.mx = mnew;
  const int64_t dv = p.c.dv, nbw = p.c.nbw();
  if (corr != T(1)) {
#pragma omp simd
    for (int64_t y = 0; y < dv; ++y) st.acc[y] *= corr;
    if (st.bw)
      for (int64_t r = 0; r < nbw; ++r) st.bw[r] *= corr;
  }
  accumulate_pv(p, b, g, j0, jn, pt, st.acc);
  if (st.bw) {
    const int64_t K = p.c.max_distance;
    for (int64_t jj = 0; jj < jn; ++jj) st.bw[std::clamp(j0 + jj - pos, -K, K) + K] += pt[jj];
  }
}

template <class T> struct FwdScratch {
  std::vector<T> kt, s, pt, q, acc, mx, l, bw;
  FwdScratch(const AttnConfig& c)
      : kt(size_t(c.dk * kAttnBc)), s(kAttnBc), pt(kAttnBc), q(size_t(c.group() * kAttnBr * c.dk)),
        acc(size_t(c.group() * kAttnBr * c.dv)), mx(size_t(c.group() * kAttnBr)), l(mx.size()),
        bw(size_t(c.group() * kAttnBr * c.nbw())) {}
};

// Writes the finished rows of a task: out = acc / l, lse = mx + log l, bw / l.
template <class T> void finish_rows(const AttnPlan<T>& p, ops::OpCall& call, int64_t b, int64_t g, int64_t i0,
                                   int64_t nr, FwdScratch<T>& w) {
  const AttnConfig& c = p.c;
  const Tensor& out = call.out[0];
  T* op = static_cast<T*>(out.raw_data());
  T* lse = static_cast<T*>(call.out[1].raw_data());
  T* bw = c.bucket_weights ? static_cast<T*>(call.out[2].raw_data()) : nullptr;
  const int64_t nbw = c.nbw(), os[4] = {out.stride(0), out.stride(1), out.stride(2), out.stride(3)};
  for (int64_t hh = 0; hh < c.group(); ++hh)
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t h = g * c.group() + hh, i = i0 + r, row = hh * kAttnBr + r;
      const T l = w.l[size_t(row)], inv = l > 0 ? T(1) / l : T(0);
      T* o = op + b * os[0] + h * os[1] + i * os[2];
      for (int64_t y = 0; y < c.dv; ++y) o[y * os[3]] = w.acc[size_t(row * c.dv + y)] * inv;
      lse[(b * c.hq + h) * c.n + i] = l > 0 ? w.mx[size_t(row)] + std::log(l) : attn_empty_lse<T>();
      if (bw)
        for (int64_t k = 0; k < nbw; ++k) bw[((b * c.hq + h) * c.n + i) * nbw + k] = w.bw[size_t(row * nbw + k)] * inv;
    }
}

template <class T>
void forward_task(const AttnPlan<T>& p, ops::OpCall& call, int64_t b, int64_t g, int64_t i0, FwdScratch<T>& w) {
  const AttnConfig& c = p.c;
  const int64_t nr = std::min(kAttnBr, c.n - i0), G = c.group(), nbw = c.nbw();
  for (int64_t hh = 0; hh < G; ++hh)
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t row = hh * kAttnBr + r;
      const T* qr = p.q_row(b, g * G + hh, i0 + r);
      for (int64_t x = 0; x < c.dk; ++x) w.q[size_t(row * c.dk + x)] = T(c.scale) * qr[x];
      std::fill_n(w.acc.begin() + row * c.dv, c.dv, T(0));
      std::fill_n(w.bw.begin() + row * nbw, nbw, T(0));
      w.mx[size_t(row)] = T(-INFINITY), w.l[size_t(row)] = T(0);
    }
  const int64_t key_end = c.key_end(i0 + nr - 1);
  for (int64_t j0 = 0; j0 < key_end; j0 += kAttnBc) {
    const int64_t jn = std::min(kAttnBc, c.m - j0);
    attn_load_kt(p, b, g, j0, jn, w.kt.data());
    for (int64_t hh = 0; hh < G; ++hh)
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t h = g * G + hh, i = i0 + r, row = hh * kAttnBr + r;
        if (c.causal && j0 > i + c.offset()) continue;
        T bm = attn_score_row(p, b, h, i, &w.q[size_t(row * c.dk)], w.kt.data(), j0, jn, w.s.data());
        RowState<T> st{&w.mx[size_t(row)], &w.l[size_t(row)], &w.acc[size_t(row * c.dv)],
                       nbw && c.bucket_weights ? &w.bw[size_t(row * nbw)] : nullptr};
        online_update(p, b, g, i + c.offset(), j0, jn, w.s.data(), bm, w.pt.data(), st);
      }
  }
  finish_rows(p, call, b, g, i0, nr, w);
}

// q, k, v with a contiguous last dim (copied only when it is not).
Tensor last_dim_contiguous(const Tensor& t) {
  if (!t.defined() || t.size(-1) <= 1 || t.stride(-1) == 1) return t;
  QS_CHECK(t.dtype() != DType::f16, "attention: f16 keys and values need a contiguous last dim");
  return t.contiguous();
}

// A few query rows (LM decoding: one new token against its cache): per (batch, head, row)
// the scores of every visible key in one pass, with the same masks and biases
// (attn_mask_row), then one softmax and one weighted sum of V rows. The tiled kernels
// transpose key tiles and block query rows, which at n = 1 costs more than the product.
template <class T> struct DecodeScratch {
  std::vector<T> s, q, acc;
  explicit DecodeScratch(const AttnConfig& c)
      : s(size_t((c.m + kAttnBc - 1) / kAttnBc * kAttnBc)), q(size_t(c.dk)), acc(size_t(c.dv)) {}
};

// q . k for a key row held as f16 (a half-precision KV cache), widened by F16C.
inline float dot_f16(const float* q, const f16* k, int64_t d) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t x = 0;
  for (; x + 16 <= d; x += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + x), _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + x))), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + x + 8),
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + x + 8))), a1);
  }
  float s = hsum(_mm256_add_ps(a0, a1));
  for (; x < d; ++x) s += q[x] * f16_to_f32(k[x]);
  return s;
}

// acc[0, dv) += sum_j p[j] v_j[0, dv) over f16 value rows, 32 outputs at a time in registers.
inline void axpy_f16(float* acc, int64_t dv, int64_t n, const float* pj, const f16* const* rows) {
  int64_t y0 = 0;
  for (; y0 + 32 <= dv; y0 += 32) {
    __m256 a[4];
    for (int t = 0; t < 4; ++t) a[t] = _mm256_loadu_ps(acc + y0 + 8 * t);
    for (int64_t j = 0; j < n; ++j) {
      const __m256 c = _mm256_set1_ps(pj[j]);
      for (int t = 0; t < 4; ++t)
        a[t] = _mm256_fmadd_ps(c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[j] + y0 + 8 * t))), a[t]);
    }
    for (int t = 0; t < 4; ++t) _mm256_storeu_ps(acc + y0 + 8 * t, a[t]);
  }
  for (int64_t j = 0; j < n; ++j)
    for (int64_t y = y0; y < dv; ++y) acc[y] += pj[j] * f16_to_f32(rows[j][y]);
}

// KV: T, or f16 for f32 queries (the call's k and v in half precision: a KV cache kept so).
template <class T, class KV>
void decode_row(const AttnPlan<T>& p, const KV* kb, const KV* vb, ops::OpCall& call, int64_t b, int64_t h, int64_t i,
                DecodeScratch<T>& w) {
  const AttnConfig& c = p.c;
  const int64_t g = h / c.group(), end = c.key_end(i), dk = c.dk;
  auto k_row = [&](int64_t j) { return kb + b * p.ks[0] + g * p.ks[1] + j * p.ks[2]; };
  auto v_row = [&](int64_t j) { return vb + b * p.vs[0] + g * p.vs[1] + j * p.vs[2]; };
  const T* qr = p.q_row(b, h, i);
  T* q = w.q.data();
  for (int64_t x = 0; x < dk; ++x) q[x] = T(c.scale) * qr[x];
  T mx = T(-INFINITY);
  for (int64_t j0 = 0; j0 < end; j0 += kAttnBc) {
    const int64_t jn = std::min(kAttnBc, c.m - j0);
    T* s = w.s.data() + j0;
    for (int64_t jj = 0; jj < jn; ++jj) {
      const KV* kr = k_row(j0 + jj);
      // the cache streams from memory once per token: ask for the keys ahead and for this
      // key's value row, which the weighted sum reads next (from L2)
      for (int64_t x = 0; x < c.dk * int64_t(sizeof(KV)); x += 64)
        __builtin_prefetch(reinterpret_cast<const char*>(k_row(std::min(j0 + jj + 8, end - 1))) + x, 0, 2);
      for (int64_t x = 0; x < c.dv * int64_t(sizeof(KV)); x += 64)
        __builtin_prefetch(reinterpret_cast<const char*>(v_row(j0 + jj)) + x, 0, 2);
      if constexpr (std::is_same_v<KV, f16>) {
        s[jj] = dot_f16(q, kr, dk);
      } else {
        T d = 0;
#pragma omp simd reduction(+ : d)
        for (int64_t x = 0; x < dk; ++x) d += q[x] * kr[x];
        s[jj] = d;
      }
    }
    mx = std::max(mx, attn_mask_row(p, b, h, i, j0, jn, s, s));
  }
  T* acc = w.acc.data();
  std::fill_n(acc, c.dv, T(0));
  T sum = 0;
  if (mx != T(-INFINITY)) {
    T* s = w.s.data();
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < end; ++j) {
      s[j] = fast_exp(s[j] - mx);
      sum += s[j];
    }
    const KV* rows[kAttnBc];
    for (int64_t j0 = 0; j0 < end; j0 += kAttnBc) {
      const int64_t jn = std::min(kAttnBc, end - j0);
      for (int64_t jj = 0; jj < jn; ++jj) rows[jj] = v_row(j0 + jj);
      if constexpr (std::is_same_v<KV, f16>)
        axpy_f16(acc, c.dv, jn, s + j0, rows);
      else
        attn_axpy(acc, c.dv, jn, s + j0, rows, 0);
    }
  }
  const Tensor& out = call.out[0];
  T* o = static_cast<T*>(out.raw_data()) + b * out.stride(0) + h * out.stride(1) + i * out.stride(2);
  const T inv = sum > 0 ? T(1) / sum : T(0);
  for (int64_t y = 0; y < c.dv; ++y) o[y * out.stride(3)] = acc[y] * inv;
  static_cast<T*>(call.out[1].raw_data())[(b * c.hq + h) * c.n + i] =
      sum > 0 ? mx + std::log(sum) : attn_empty_lse<T>();
}

template <class T, class KV>
void attention_decode_cpu(const AttnPlan<T>& p, const KV* kb, const KV* vb, ops::OpCall& call) {
  const AttnConfig& c = p.c;
  const int64_t rows = c.b * c.hq * c.n;
#pragma omp parallel if (rows > 1 && rows * c.m * (c.dk + c.dv) > 65536)
  {
    DecodeScratch<T> w(c);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) decode_row(p, kb, vb, call, r / (c.hq * c.n), r / c.n % c.hq, r % c.n, w);
  }
}

// f16 keys and values (f32 queries), for the paths other than decoding: widened to a
// contiguous f32 copy first (t [b, h, m, d] with a contiguous last dim, as a cache holds it).
Tensor widened_f32(const Tensor& t) {
  Tensor f = empty(t.shape(), DType::f32);
  const f16* src = static_cast<const f16*>(t.raw_data());
  float* dst = f.data_ptr<float>();
  const int64_t B = t.size(0), H = t.size(1), M = t.size(2), D = t.size(3);
#pragma omp parallel for if (B * H * M * D > 65536)
  for (int64_t r = 0; r < B * H * M; ++r) {
    const f16* row = src + (r / (H * M)) * t.stride(0) + (r / M % H) * t.stride(1) + (r % M) * t.stride(2);
    float* out = dst + r * D;
    int64_t x = 0;
    for (; x + 8 <= D; x += 8)
      _mm256_storeu_ps(out + x, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + x))));
    for (; x < D; ++x) out[x] = f16_to_f32(row[x]);
  }
  return f;
}

template <class T> void attention_forward_cpu(ops::OpCall& call) {
  const auto& in = call.in;
  Tensor q = last_dim_contiguous(in[0]), k = last_dim_contiguous(in[1]), v = last_dim_contiguous(in[2]);
  const AttnConfig c = attn_config(q, k, &v, call.attrs);
  const bool decode = attn_decodes(c);
  if constexpr (std::is_same_v<T, float>)
    if (k.dtype() == DType::f16) {
      if (decode) {
        const AttnPlan<T> p = make_attn_plan<T>(c, q, Tensor(), Tensor(), in[3], in[4], in[5], &k, &v);
        return attention_decode_cpu(p, static_cast<const f16*>(k.raw_data()), static_cast<const f16*>(v.raw_data()), call);
      }
      k = widened_f32(k), v = widened_f32(v);
    }
  const AttnPlan<T> p = make_attn_plan<T>(c, q, k, v, in[3], in[4], in[5]);
  if (decode) return attention_decode_cpu(p, p.k, p.v, call);
  if constexpr (std::is_same_v<T, float>)
    if (!attention_fast_f32_declines(c, call)) return attention_forward_fast_f32(p, call, AttnIsa::avx2);
  const int64_t nqb = (c.n + kAttnBr - 1) / kAttnBr, tasks = c.b * c.hkv * nqb;
#pragma omp parallel if (tasks > 1)
  {
    FwdScratch<T> w(c);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {  // the longest (last, when causal) query blocks first
      const int64_t qb = nqb - 1 - t / (c.b * c.hkv), bg = t % (c.b * c.hkv);
      forward_task(p, call, bg / c.hkv, bg % c.hkv, qb * kAttnBr, w);
    }
  }
}

// weights[b, h, i, j] = exp(s_ij - lse_i), a block of rows per task.
template <class T> void attention_weights_cpu(ops::OpCall& call) {
  const auto& in = call.in;
  Tensor q = last_dim_contiguous(in[0]), k = last_dim_contiguous(in[1]);
  const AttnConfig c = attn_config(q, k, nullptr, call.attrs);
  const AttnPlan<T> p = make_attn_plan<T>(c, q, k, Tensor(), in[2], in[3], in[4]);
  const Tensor lse_t = in[5].contiguous();
  const T* lse = lse_t.data_ptr<T>();
  T* wp = call.out[0].data_ptr<T>();
  const int64_t nqb = (c.n + kAttnBr - 1) / kAttnBr, tasks = c.b * c.hkv * nqb, G = c.group();
#pragma omp parallel if (tasks > 1)
  {
    std::vector<T> kt(size_t(c.dk * kAttnBc)), s(kAttnBc), qs(size_t(c.dk));
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t qb = t / (c.b * c.hkv), b = (t % (c.b * c.hkv)) / c.hkv, g = t % c.hkv;
      const int64_t i0 = qb * kAttnBr, nr = std::min(kAttnBr, c.n - i0);
      for (int64_t j0 = 0; j0 < c.m; j0 += kAttnBc) {
        const int64_t jn = std::min(kAttnBc, c.m - j0);
        attn_load_kt(p, b, g, j0, jn, kt.data());
        for (int64_t h = g * G; h < (g + 1) * G; ++h)
          for (int64_t i = i0; i < i0 + nr; ++i) {
            const T* qr = p.q_row(b, h, i);
            for (int64_t x = 0; x < c.dk; ++x) qs[size_t(x)] = T(c.scale) * qr[x];
            attn_score_row(p, b, h, i, qs.data(), kt.data(), j0, jn, s.data());
            const T l = lse[(b * c.hq + h) * c.n + i];
            T* row = wp + ((b * c.hq + h) * c.n + i) * c.m + j0;
            for (int64_t jj = 0; jj < jn; ++jj) row[jj] = fast_exp(s[size_t(jj)] - l);
          }
      }
    }
  }
}

const char* attention_supports(const ops::OpCall& call) {
  // f16 k and v (a half-precision KV cache) with f32 q: inputs 1 and 2 of the forward only
  const bool half_kv = call.op == ops::OpKind::attention && call.in[0].dtype() == DType::f32 &&
                       call.in[1].dtype() == DType::f16;
  for (size_t i = 0; i < call.in.size(); ++i) {
    const Tensor& t = call.in[i];
    if (!t.defined() || t.dtype() == DType::b8 || t.dtype() == DType::f32 || t.dtype() == DType::f64) continue;
    if (half_kv && (i == 1 || i == 2)) continue;
    return "only f32/f64 (and f16 keys and values with f32 queries)";
  }
  if (call.in[0].dtype() != call.in[1].dtype() && !half_kv) return "mixed dtypes";
  return nullptr;
}

// The AVX-512 build of the fast f32 forward: a kernel of its own, so that QS_VERBOSE=dispatch
// shows the choice and QS_DISABLE=cpu-avx512 runs the AVX2 build on the same machine.
const char* attention_avx512_supports(const ops::OpCall& call) {
  if (!backend::avx512()) return "no AVX-512 (or oneDNN capped below it)";
  for (size_t i = 0; i < 3; ++i)
    if (!call.in[i].defined() || call.in[i].dtype() != DType::f32) return "f32 q, k and v only";
  if (const char* why = attention_supports(call)) return why;
  const AttnConfig c = attn_config(call.in[0], call.in[1], &call.in[2], call.attrs);
  if (attn_decodes(c)) return "a few query rows (the decoding kernel's)";
  return attention_fast_f32_declines(c, call);
}

void attention_forward_avx512(ops::OpCall& call) {
  const auto& in = call.in;
  const Tensor q = last_dim_contiguous(in[0]), k = last_dim_contiguous(in[1]), v = last_dim_contiguous(in[2]);
  const AttnPlan<float> p = make_attn_plan<float>(attn_config(q, k, &v, call.attrs), q, k, v, in[3], in[4], in[5]);
  attention_forward_fast_f32(p, call, AttnIsa::avx512);
}

template <void (*F32)(ops::OpCall&), void (*F64)(ops::OpCall&)> void by_dtype(ops::OpCall& call) {
  (call.out[0].dtype() == DType::f32 ? F32 : F64)(call);
}

}  // namespace

void attention_backward_cpu_f32(ops::OpCall& call);
void attention_backward_cpu_f64(ops::OpCall& call);
void attention_backward_cpu_avx512(ops::OpCall& call);

namespace {
// The AVX-512 build of the register-blocked f32 backward (attention_cpu_backward.cpp).
const char* attention_backward_avx512_supports(const ops::OpCall& call) {
  if (!backend::avx512()) return "no AVX-512 (or oneDNN capped below it)";
  if (call.out[0].dtype() != DType::f32) return "f32 only";
  if (const char* why = attention_supports(call)) return why;
  return attention_backward_fast_f32_declines(attn_config(call.in[3], call.in[4], &call.in[5], call.attrs));
}
}  // namespace

void register_attention_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::attention, {"cpu-avx512", attention_avx512_supports, attention_forward_avx512});
  ops::add_kernel(t, ops::OpKind::attention,
                  {"cpu", attention_supports, by_dtype<attention_forward_cpu<float>, attention_forward_cpu<double>>});
  ops::add_kernel(t, ops::OpKind::attention_weights,
                  {"cpu", attention_supports, by_dtype<attention_weights_cpu<float>, attention_weights_cpu<double>>});
  ops::add_kernel(t, ops::OpKind::attention_backward,
                  {"cpu-avx512", attention_backward_avx512_supports, attention_backward_cpu_avx512});
  ops::add_kernel(t, ops::OpKind::attention_backward,
                  {"cpu", attention_supports, by_dtype<attention_backward_cpu_f32, attention_backward_cpu_f64>});
}

template AttnPlan<float> make_attn_plan<float>(const AttnConfig&, const Tensor&, const Tensor&, const Tensor&,
                                               const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                                               const Tensor*);
template AttnPlan<double> make_attn_plan<double>(const AttnConfig&, const Tensor&, const Tensor&, const Tensor&,
                                                 const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                                                 const Tensor*);
template void attn_load_kt<float>(const AttnPlan<float>&, int64_t, int64_t, int64_t, int64_t, float*);
template void attn_load_kt<double>(const AttnPlan<double>&, int64_t, int64_t, int64_t, int64_t, double*);
template float attn_score_row<float>(const AttnPlan<float>&, int64_t, int64_t, int64_t, const float*, const float*,
                                     int64_t, int64_t, float*);
template double attn_score_row<double>(const AttnPlan<double>&, int64_t, int64_t, int64_t, const double*,
                                       const double*, int64_t, int64_t, double*);

}  // namespace qs::kernels
