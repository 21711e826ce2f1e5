// Fused attention backward (FlashAttention-2): P is recomputed from the saved lse,
//   D_i = dout_i . out_i + dbucket_weights_i . bucket_weights_i - dlse_i
//   dP = dout V^T (+ dbucket_weights at each key's bucket)      dS = P (dP - D)
//   dV += P^T dout     dK += scale dS^T Q     dQ += scale dS K    drel_bias += dS (by bucket)
// A task is (batch, kv head, range of key tiles): it owns the dK and dV rows of its keys
// and loops over the group's query heads and rows inside, so dK/dV need no atomics. When
// there are fewer (batch, kv head) pairs than twice the threads, the keys are split into
// ranges and each range accumulates its own partial dQ (and Shaw drel_bias), summed at
// the end: O(n) memory per head and split.
// f32 without relative biases (attention_backward_fast_f32_declines) runs the same tasks
// GEMM-shaped (fast_backward_task): a block of 32 query rows against a key tile as five
// register-blocked products (attention_cpu_fast.cpp's micro-kernels, AVX2 or AVX-512).
#include <omp.h>

#include <algorithm>

#include "kernels/cpu/attention_cpu.h"

namespace qs::kernels {

namespace {

// Key ranges per (batch, kv head): enough tasks for every thread twice over.
int64_t backward_splits(const AttnConfig& c, int64_t threads) {
  const int64_t pairs = c.b * c.hkv, nkb = (c.m + kAttnBc - 1) / kAttnBc;
  if (pairs >= 2 * threads) return 1;
  return std::max<int64_t>(1, std::min(nkb, (2 * threads + pairs - 1) / pairs));
}

template <class T> struct BwdCall {
  AttnPlan<T> p;
  const T *dout, *lse;
  int64_t ds[3];     // dout strides of b, h, n
  std::vector<T> D;  // [b, hq, n]
  const T* dbw = nullptr;
  int64_t splits = 1;
  std::vector<int64_t> t5_buckets;
  Tensor lse_t, dbw_t;  // contiguous copies the pointers above may point into
};

// Rows of dq (and Shaw drel_bias) one task writes: the outputs or its split's partials.
template <class T> struct RowTargets {
  T* dq;
  T* drel;  // Shaw only
};

template <class T> struct BwdScratch {
  std::vector<T> kt, vt, q, dk, dv, ddist;
  BwdScratch(const AttnConfig& c)
      : kt(size_t(c.dk * kAttnBc)), vt(size_t(c.dv * kAttnBc)), q(size_t(c.dk)),
        dk(size_t(kAttnBc * c.dk)), dv(size_t(kAttnBc * c.dv)),
        ddist(c.rel == AttnRel::t5 ? size_t(c.group() * (c.n + c.m - 1)) : 0) {}
};

// V^T tile, as attn_load_kt does for K.
template <class T> void load_vt(const AttnPlan<T>& p, int64_t b, int64_t g, int64_t j0, int64_t jn, T* vt) {
  for (int64_t y = 0; y < p.c.dv; ++y)
    for (int64_t jj = 0; jj < kAttnBc; ++jj) vt[y * kAttnBc + jj] = jj < jn ? p.v_row(b, g, j0 + jj)[y] : T(0);
}

constexpr int64_t kRows = 4;  // query rows per rank-kRows update of the dK / dV tiles

// P and dS of row i of head h against one key tile (into P, dS); adds the row's dQ and
// relative-bias gradients. Returns false when every key of the tile is masked for it.
template <class T>
bool backward_row(const BwdCall<T>& bc, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t jn, BwdScratch<T>& w,
                  RowTargets<T> tg, T* P, T* dS) {
  const AttnPlan<T>& p = bc.p;
  const AttnConfig& c = p.c;
  const int64_t g = h / c.group(), pos = i + c.offset(), row = (b * c.hq + h) * c.n + i, K = c.max_distance;
  const T* qr = p.q_row(b, h, i);
  for (int64_t x = 0; x < c.dk; ++x) w.q[size_t(x)] = T(c.scale) * qr[x];
  attn_score_row(p, b, h, i, w.q.data(), w.kt.data(), j0, jn, P);
  const T l = bc.lse[row], D = bc.D[size_t(row)];
  alignas(64) T dp[kAttnBc];
  attn_dot_tile(bc.dout + b * bc.ds[0] + h * bc.ds[1] + i * bc.ds[2], w.vt.data(), c.dv, dp);
  if (bc.dbw)
    for (int64_t jj = 0; jj < jn; ++jj) dp[jj] += bc.dbw[row * c.nbw() + std::clamp(j0 + jj - pos, -K, K) + K];
  T any = 0;
#pragma omp simd reduction(+ : any)
  for (int64_t jj = 0; jj < kAttnBc; ++jj) {
    P[jj] = fast_exp(P[jj] - l);
    dS[jj] = P[jj] * (dp[jj] - D);
    any += P[jj];
  }
  if (any == T(0)) return false;
  alignas(64) T sdS[kAttnBc];
  const T* krows[kAttnBc];
  for (int64_t jj = 0; jj < jn; ++jj) sdS[jj] = T(c.scale) * dS[jj], krows[jj] = p.k_row(b, g, j0 + jj);
  attn_axpy(tg.dq + row * c.dk, c.dk, jn, sdS, krows, 0);
  if (c.rel == AttnRel::t5) {
    T* dd = w.ddist.data() + (h % c.group()) * (c.n + c.m - 1) + (j0 - pos + c.m - 1);
    for (int64_t jj = 0; jj < jn; ++jj) dd[jj] += dS[jj];
  }
  if (c.rel == AttnRel::shaw)
    for (int64_t jj = 0; jj < jn; ++jj) tg.drel[row * c.nbw() + std::clamp(j0 + jj - pos, -K, K) + K] += dS[jj];
  return true;
}

// Rows [i0, i0 + R) of head h: their P and dS, then the tile updates
// dV[jj] += sum_r P[r][jj] dout_r and dK[jj] += scale sum_r dS[r][jj] q_r.
template <class T>
void backward_rows(const BwdCall<T>& bc, int64_t b, int64_t h, int64_t i0, int64_t R, int64_t j0, int64_t jn,
                   BwdScratch<T>& w, RowTargets<T> tg) {
  const AttnPlan<T>& p = bc.p;
  const AttnConfig& c = p.c;
  alignas(64) T P[kRows][kAttnBc], dS[kRows][kAttnBc];
  const T *qrows[kRows], *dorows[kRows];
  int64_t live = 0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t i = i0 + r;
    if (!backward_row(bc, b, h, i, j0, jn, w, tg, P[live], dS[live])) continue;
    qrows[live] = p.q_row(b, h, i);
    dorows[live] = bc.dout + b * bc.ds[0] + h * bc.ds[1] + i * bc.ds[2];
    ++live;
  }
  for (int64_t jj = 0; jj < jn && live > 0; ++jj) {
    T cp[kRows], cs[kRows];
    for (int64_t r = 0; r < live; ++r) cp[r] = P[r][jj], cs[r] = T(c.scale) * dS[r][jj];
    attn_axpy(w.dv.data() + jj * c.dv, c.dv, live, cp, dorows, 0);
    attn_axpy(w.dk.data() + jj * c.dk, c.dk, live, cs, qrows, 0);
  }
}

// The frame of both backward tasks: for each key tile of [kb0, kb1) of kv head g of batch
// b, its K^T and V^T tiles loaded (into kt, vt) and its dK, dV rows zeroed (dk, dv: kAttnBc
// rows), then rows(j0, jn, first) (first: the first query row that sees a key of the tile),
// then the tile's dK and dV rows stored into the outputs.
template <class T, class Rows>
void over_key_tiles(const BwdCall<T>& bc, ops::OpCall& call, int64_t b, int64_t g, int64_t kb0, int64_t kb1, T* kt,
                    T* vt, std::vector<T>& dk, std::vector<T>& dv, Rows&& rows) {
  const AttnPlan<T>& p = bc.p;
  const AttnConfig& c = p.c;
  T* dk_out = call.out[1].data_ptr<T>();
  T* dv_out = call.out[2].data_ptr<T>();
  for (int64_t kb = kb0; kb < kb1; ++kb) {
    const int64_t j0 = kb * kAttnBc, jn = std::min(kAttnBc, c.m - j0);
    attn_load_kt(p, b, g, j0, jn, kt);
    load_vt(p, b, g, j0, jn, vt);
    std::fill(dk.begin(), dk.end(), T(0));
    std::fill(dv.begin(), dv.end(), T(0));
    rows(j0, jn, c.causal ? std::max<int64_t>(0, j0 - c.offset()) : int64_t(0));
    for (int64_t jj = 0; jj < jn; ++jj) {
      std::copy_n(dk.begin() + jj * c.dk, c.dk, dk_out + ((b * c.hkv + g) * c.m + j0 + jj) * c.dk);
      std::copy_n(dv.begin() + jj * c.dv, c.dv, dv_out + ((b * c.hkv + g) * c.m + j0 + jj) * c.dv);
    }
  }
}

// Key tiles [kb0, kb1) of kv head g of batch b, kRows query rows at a time.
template <class T>
void backward_task(const BwdCall<T>& bc, ops::OpCall& call, int64_t b, int64_t g, int64_t kb0, int64_t kb1,
                   BwdScratch<T>& w, RowTargets<T> tg) {
  const AttnConfig& c = bc.p.c;
  over_key_tiles(bc, call, b, g, kb0, kb1, w.kt.data(), w.vt.data(), w.dk, w.dv, [&](int64_t j0, int64_t jn, int64_t first) {
    for (int64_t h = g * c.group(); h < (g + 1) * c.group(); ++h)
      for (int64_t i = first; i < c.n; i += kRows) backward_rows(bc, b, h, i, std::min(kRows, c.n - i), j0, jn, w, tg);
  });
}

// The register-blocked f32 task, per key tile and block of kAttnBr query rows of each head:
//   S = Q_scaled K^T     dP = dout V^T     P, dS = attn_backward_p_ds(S, dP)  (dS has the scale)
//   dQ += dS K           dV += P^T dout    dK += dS^T Q
// with K^T and V^T tiles loaded once per key tile and P^T, dS^T transposed per block.
struct FastBwdScratch {
  std::vector<float> kt, vt, q, s, dp, pt, dst, dk, dv;
  explicit FastBwdScratch(const AttnConfig& c)
      : kt(size_t(c.dk * kAttnBc)), vt(size_t(c.dv * kAttnBc)), q(size_t(kAttnBr * c.dk)),
        s(size_t(kAttnBr * kAttnBc)), dp(s.size()), pt(s.size()), dst(s.size()), dk(size_t(kAttnBc * c.dk)),
        dv(size_t(kAttnBc * c.dv)) {}
  static size_t floats(const AttnConfig& c) {
    return size_t((c.dk + c.dv) * kAttnBc * 2 + kAttnBr * c.dk + 4 * kAttnBr * kAttnBc);
  }
};

void fast_backward_task(const BwdCall<float>& bc, ops::OpCall& call, AttnIsa isa, int64_t b, int64_t g, int64_t kb0,
                        int64_t kb1, FastBwdScratch& w, float* dq) {
  const AttnPlan<float>& p = bc.p;
  const AttnConfig& c = p.c;
  const int64_t dk = c.dk, dv = c.dv;
  over_key_tiles(bc, call, b, g, kb0, kb1, w.kt.data(), w.vt.data(), w.dk, w.dv, [&](int64_t j0, int64_t jn, int64_t first) {
    for (int64_t h = g * c.group(); h < (g + 1) * c.group(); ++h)
      for (int64_t i0 = first; i0 < c.n; i0 += kAttnBr) {
        const int64_t R = std::min(kAttnBr, c.n - i0), row = (b * c.hq + h) * c.n + i0;
        for (int64_t r = 0; r < R; ++r) {
          const float* qr = p.q_row(b, h, i0 + r);
          for (int64_t x = 0; x < dk; ++x) w.q[size_t(r * dk + x)] = float(c.scale) * qr[x];
        }
        const float* dout = bc.dout + b * bc.ds[0] + h * bc.ds[1] + i0 * bc.ds[2];
        attn_gemm_f32(isa, false, R, kAttnBc, dk, w.q.data(), dk, w.kt.data(), kAttnBc, w.s.data(), kAttnBc);
        attn_gemm_f32(isa, false, R, kAttnBc, dv, dout, bc.ds[2], w.vt.data(), kAttnBc, w.dp.data(), kAttnBc);
        attn_backward_p_ds(isa, p, b, h, i0, j0, jn, R, bc.lse + row, bc.D.data() + row, w.s.data(), w.dp.data());
        attn_gemm_f32(isa, true, R, dk, jn, w.dp.data(), kAttnBc, p.k_row(b, g, j0), p.ks[2], dq + row * dk, dk);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t jj = 0; jj < jn; ++jj) {
            w.pt[size_t(jj * kAttnBr + r)] = w.s[size_t(r * kAttnBc + jj)];
            w.dst[size_t(jj * kAttnBr + r)] = w.dp[size_t(r * kAttnBc + jj)];
          }
        attn_gemm_f32(isa, true, jn, dv, R, w.pt.data(), kAttnBr, dout, bc.ds[2], w.dv.data(), dv);
        attn_gemm_f32(isa, true, jn, dk, R, w.dst.data(), kAttnBr, p.q_row(b, h, i0), p.qs[2], w.dk.data(), dk);
      }
  });
}

template <class T> BwdCall<T> make_bwd_call(ops::OpCall& call, const Tensor& dout, const Tensor& out, const Tensor& q,
                                            const Tensor& k, const Tensor& v) {
  const auto& in = call.in;
  const AttnConfig c = attn_config(q, k, &v, call.attrs);
  BwdCall<T> bc{make_attn_plan<T>(c, q, k, v, in[9], in[10], in[11]), dout.data_ptr<T>(), nullptr, {}, {}};
  for (int d = 0; d < 3; ++d) bc.ds[d] = dout.stride(d);
  Tensor lse = in[7].contiguous(), dbw = in[2].defined() ? in[2].contiguous() : Tensor();
  bc.lse_t = lse, bc.dbw_t = dbw;
  bc.lse = lse.data_ptr<T>();
  bc.dbw = dbw.defined() ? dbw.data_ptr<T>() : nullptr;
  Tensor dlse = in[1].defined() ? in[1].contiguous() : Tensor(), bw = in[8].defined() ? in[8].contiguous() : Tensor();
  const T* dl = dlse.defined() ? dlse.data_ptr<T>() : nullptr;
  const T* bwp = bw.defined() ? bw.data_ptr<T>() : nullptr;
  const T* op = static_cast<const T*>(out.raw_data());
  bc.D.resize(size_t(c.b * c.hq * c.n));
  const int64_t nbw = c.nbw(), rows = c.b * c.hq * c.n;
#pragma omp parallel for if (rows > 4096)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / (c.hq * c.n), h = (r / c.n) % c.hq, i = r % c.n;
    const T* dor = bc.dout + b * bc.ds[0] + h * bc.ds[1] + i * bc.ds[2];
    const T* o = op + b * out.stride(0) + h * out.stride(1) + i * out.stride(2);
    T d = 0;
    for (int64_t y = 0; y < c.dv; ++y) d += dor[y] * o[y];
    if (bc.dbw)
      for (int64_t k2 = 0; k2 < nbw; ++k2) d += bc.dbw[r * nbw + k2] * bwp[r * nbw + k2];
    if (dl) d -= dl[r];
    bc.D[size_t(r)] = d;
  }
  bc.t5_buckets = attn_t5_buckets(c);
  bc.splits = backward_splits(c, omp_get_max_threads());
  return bc;
}

Tensor last_dim_contiguous(const Tensor& t) {
  return !t.defined() || t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous();
}

template <class T> void attention_backward_cpu(ops::OpCall& call, AttnIsa isa = AttnIsa::avx2) {
  Tensor dout = last_dim_contiguous(call.in[0]), out = last_dim_contiguous(call.in[6]);
  Tensor q = last_dim_contiguous(call.in[3]), k = last_dim_contiguous(call.in[4]), v = last_dim_contiguous(call.in[5]);
  const BwdCall<T> bc = make_bwd_call<T>(call, dout, out, q, k, v);
  const AttnConfig& c = bc.p.c;
  const int64_t pairs = c.b * c.hkv, nkb = (c.m + kAttnBc - 1) / kAttnBc, S = bc.splits, tasks = pairs * S;
  const int64_t nq = c.b * c.hq * c.n * c.dk, nrel = c.rel == AttnRel::shaw ? c.b * c.hq * c.n * c.nbw() : 0;
  std::vector<T> dq_parts(size_t(S > 1 ? S * nq : 0)), rel_parts(size_t(S * nrel));
  std::vector<T> ddist(c.rel == AttnRel::t5 ? size_t(tasks * c.group() * (c.n + c.m - 1)) : 0);
  T* dq = call.out[0].data_ptr<T>();
  if (S == 1) std::fill_n(dq, nq, T(0));
  const bool fast = std::is_same_v<T, float> && !attention_backward_fast_f32_declines(c);
#pragma omp parallel if (tasks > 1)
  {
    if constexpr (std::is_same_v<T, float>)
      if (fast) {
        FastBwdScratch w(c);
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < tasks; ++t) {
          const int64_t pair = t / S, s = t % S, kb0 = nkb * s / S, kb1 = nkb * (s + 1) / S;
          fast_backward_task(bc, call, isa, pair / c.hkv, pair % c.hkv, kb0, kb1, w,
                             S > 1 ? dq_parts.data() + s * nq : dq);
        }
      }
    if (!fast) {
      BwdScratch<T> w(c);
#pragma omp for schedule(dynamic)
      for (int64_t t = 0; t < tasks; ++t) {
        const int64_t pair = t / S, s = t % S, kb0 = nkb * s / S, kb1 = nkb * (s + 1) / S;
        RowTargets<T> tg{S > 1 ? dq_parts.data() + s * nq : dq, rel_parts.data() + s * nrel};
        std::fill(w.ddist.begin(), w.ddist.end(), T(0));
        backward_task(bc, call, pair / c.hkv, pair % c.hkv, kb0, kb1, w, tg);
        std::copy(w.ddist.begin(), w.ddist.end(), ddist.begin() + t * int64_t(w.ddist.size()));
      }
    }
  }
  if (S > 1) {
#pragma omp parallel for
    for (int64_t e = 0; e < nq; ++e) {
      T a = 0;
      for (int64_t s = 0; s < S; ++s) a += dq_parts[size_t(s * nq + e)];
      dq[e] = a;
    }
  }
  T* drel = call.out[3].data_ptr<T>();
  std::fill_n(drel, call.out[3].numel(), T(0));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t e = 0; e < nrel; ++e) drel[e] += rel_parts[size_t(s * nrel + e)];
  const int64_t nd = c.n + c.m - 1;
  for (int64_t t = 0; t < tasks && c.rel == AttnRel::t5; ++t)
    for (int64_t hh = 0; hh < c.group(); ++hh)
      for (int64_t r = 0; r < nd; ++r) {
        const int64_t h = (t / S) % c.hkv * c.group() + hh;
        drel[h * c.num_buckets + bc.t5_buckets[size_t(r)]] += ddist[size_t((t * c.group() + hh) * nd + r)];
      }
}

}  // namespace

void attention_backward_cpu_f32(ops::OpCall& call) { attention_backward_cpu<float>(call); }
void attention_backward_cpu_avx512(ops::OpCall& call) { attention_backward_cpu<float>(call, AttnIsa::avx512); }
void attention_backward_cpu_f64(ops::OpCall& call) { attention_backward_cpu<double>(call); }

size_t attention_cpu_scratch_bytes(const AttnConfig& c, size_t elem, bool backward, int threads) {
  const int64_t G = c.group(), nd = c.n + c.m - 1, tables = c.hq * nd + c.b * c.m;
  if (!backward && elem == 4 && !c.bucket_weights && c.dv % 16 == 0) {  // attention_cpu_fast.cpp
    const int64_t kt = c.b * c.hkv * c.dk * ((c.m + kAttnBc - 1) / kAttnBc * kAttnBc + 16);
    return size_t(tables + kt + threads * (kAttnBr * kAttnBc + G * kAttnBr * (c.dk + c.dv + 2))) * elem;
  }
  if (!backward) {
    int64_t per_thread = c.dk * kAttnBc + 2 * kAttnBc + G * kAttnBr * (c.dk + c.dv + 2 + c.nbw());
    return size_t(tables + threads * per_thread) * elem;
  }
  const int64_t pairs = c.b * c.hkv, S = backward_splits(c, threads);
  int64_t per_thread = (c.dk + c.dv) * kAttnBc * 2 + 2 * kAttnBc + c.dk + (c.rel == AttnRel::t5 ? G * nd : 0);
  if (elem == 4 && !attention_backward_fast_f32_declines(c)) per_thread = int64_t(FastBwdScratch::floats(c));
  int64_t parts = (S > 1 ? S : 0) * c.b * c.hq * c.n * c.dk;
  if (c.rel == AttnRel::shaw) parts += S * c.b * c.hq * c.n * c.nbw();
  int64_t t5 = c.rel == AttnRel::t5 ? pairs * S * G * nd : 0;
  return size_t(tables + c.b * c.hq * c.n + threads * per_thread + parts + t5) * elem;
}

}  // namespace qs::kernels
