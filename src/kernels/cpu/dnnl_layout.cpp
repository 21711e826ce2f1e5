#include "kernels/cpu/dnnl_layout.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "kernels/kernel.h"

namespace qs::kernels {

namespace {

// bf16 activations between plain N C spatial and oneDNN's 16-channel blocks (aBcd16b,
// aBcde16b: [N][C/16][spatial][16], channels padded with zeros to a multiple of 16), which
// its AVX-512 bf16 convolutions take and give on every call. oneDNN's jit:uni reorder
// moves bf16 at half the speed it moves f32 (Zen 5, 2 threads, [128, 64, 14, 14]: 0.25 ms
// each way against 0.12 for f32, the same bytes twice over); this one transposes 16 x 16
// tiles of 16-bit values in AVX2 registers. Taken only for exactly these dense layouts
// (checked from the descriptors: dims, padding, strides, the one inner block, no offset);
// everything else goes to oneDNN.

// out[j] = (r[0][j], ..., r[15][j]) for 16 rows of 16 16-bit values (unpack in three
// stages within 128-bit lanes, then join the lanes).
inline void transpose16x16_u16(const __m256i r[16], __m256i out[16]) {
  __m256i a[16], b[16], c[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm256_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm256_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
  }
  // a[2i + h]: rows 2i, 2i + 1 at columns 8L + 4h + k (k < 4) of lane L, as 32-bit pairs
  for (int j = 0; j < 4; ++j)
    for (int h = 0; h < 2; ++h) {
      b[4 * j + 2 * h] = _mm256_unpacklo_epi32(a[4 * j + h], a[4 * j + 2 + h]);
      b[4 * j + 2 * h + 1] = _mm256_unpackhi_epi32(a[4 * j + h], a[4 * j + 2 + h]);
    }
  // b[4j + q]: rows 4j .. 4j + 3 at columns 8L + 2q + k (k < 2) of lane L, as 64-bit units
  for (int m = 0; m < 2; ++m)
    for (int q = 0; q < 4; ++q) {
      c[8 * m + 2 * q] = _mm256_unpacklo_epi64(b[8 * m + q], b[8 * m + 4 + q]);
      c[8 * m + 2 * q + 1] = _mm256_unpackhi_epi64(b[8 * m + q], b[8 * m + 4 + q]);
    }
  // c[8m + k]: rows 8m .. 8m + 7 at column 8L + k of lane L
  for (int k = 0; k < 8; ++k) {
    out[k] = _mm256_permute2x128_si256(c[k], c[8 + k], 0x20);
    out[8 + k] = _mm256_permute2x128_si256(c[k], c[8 + k], 0x31);
  }
}

// plain [N][C][S] <-> blocked [N][Cb][S][16] of 16-bit values.
void plain_to_16c(const uint16_t* src, uint16_t* dst, int64_t N, int64_t C, int64_t S) {
  const int64_t Cb = (C + 15) / 16;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t cb = 0; cb < Cb; ++cb) {
      const uint16_t* sp = src + (n * C + cb * 16) * S;
      uint16_t* dp = dst + (n * Cb + cb) * S * 16;
      const int64_t nc = std::min<int64_t>(16, C - cb * 16);
      int64_t s0 = 0;
      for (; s0 + 16 <= S; s0 += 16) {
        __m256i r[16], t[16];
        for (int c = 0; c < 16; ++c)
          r[c] = c < nc ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sp + c * S + s0)) : _mm256_setzero_si256();
        transpose16x16_u16(r, t);
        for (int j = 0; j < 16; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dp + (s0 + j) * 16), t[j]);
      }
      for (; s0 < S; ++s0)
        for (int64_t c = 0; c < 16; ++c) dp[s0 * 16 + c] = c < nc ? sp[c * S + s0] : 0;
    }
}
void blocked16c_to_plain(const uint16_t* src, uint16_t* dst, int64_t N, int64_t C, int64_t S) {
  const int64_t Cb = (C + 15) / 16;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t cb = 0; cb < Cb; ++cb) {
      const uint16_t* sp = src + (n * Cb + cb) * S * 16;
      uint16_t* dp = dst + (n * C + cb * 16) * S;
      const int64_t nc = std::min<int64_t>(16, C - cb * 16);
      int64_t s0 = 0;
      for (; s0 + 16 <= S; s0 += 16) {
        __m256i r[16], t[16];
        for (int j = 0; j < 16; ++j) r[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sp + (s0 + j) * 16));
        transpose16x16_u16(r, t);
        for (int64_t c = 0; c < nc; ++c) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dp + c * S + s0), t[c]);
      }
      for (; s0 < S; ++s0)
        for (int64_t c = 0; c < nc; ++c) dp[c * S + s0] = sp[s0 * 16 + c];
    }
}

// Whether md is the dense plain layout (blocked16 false) or the dense 16-channel-blocked
// one (true) of its dims; S gets the product of the spatial dims.
bool dense_layout(const dnnl::memory::desc& md, bool blocked16, int64_t& S) {
  const auto& d = md.data;
  if (d.format_kind != dnnl_blocked || (d.ndims != 4 && d.ndims != 5) || d.offset0 != 0 || d.extra.flags != 0)
    return false;
  const auto& b = d.format_desc.blocking;
  S = 1;
  for (int i = 2; i < d.ndims; ++i) {
    if (d.padded_dims[i] != d.dims[i]) return false;
    S *= d.dims[i];
  }
  const int64_t N = d.dims[0], C = d.dims[1], inner = blocked16 ? 16 : 1;
  if (d.padded_dims[0] != N) return false;
  if (blocked16 ? (b.inner_nblks != 1 || b.inner_blks[0] != 16 || b.inner_idxs[0] != 1 ||
                   d.padded_dims[1] != (C + 15) / 16 * 16)
                : (b.inner_nblks != 0 || d.padded_dims[1] != C))
    return false;
  const int64_t Cp = d.padded_dims[1];
  int64_t stride = inner;  // spatial strides, innermost first
  for (int i = d.ndims - 1; i >= 2; --i) {
    if (b.strides[i] != stride) return false;
    stride *= d.dims[i];
  }
  if (b.strides[1] != (blocked16 ? S * 16 : S)) return false;
  return b.strides[0] == Cp * S;
}

// Our reorder where it applies (bf16, plain <-> 16-channel blocks, same dims): true if done.
bool own_reorder(const dnnl::memory& from, const dnnl::memory& to) {
  const auto f = from.get_desc(), t = to.get_desc();
  const auto bf = dnnl::memory::data_type::bf16;
  if (f.data_type() != bf || t.data_type() != bf || f.dims() != t.dims()) return false;
  int64_t S = 0, S2 = 0;
  const bool to_blocked = dense_layout(f, false, S) && dense_layout(t, true, S2);
  if (!to_blocked && !(dense_layout(f, true, S) && dense_layout(t, false, S2))) return false;
  // Channel rows a multiple of 4 KiB apart (the 3-D CNN's 16^3 and 32^3 planes) stay with
  // oneDNN: with ours there the 3-D CNN's bf16 step took 15.6-17.3 ms against 12-13 (Zen 5),
  // though alone the reorder is 4-6x faster than oneDNN's. Those rows share cache sets, but
  // reading whole lines per row or staging rows through an L1 tile did not help: the cause
  // is not understood.
  if (S * 2 % 4096 == 0) return false;
  const int64_t N = f.dims()[0], C = f.dims()[1];
  const auto* src = static_cast<const uint16_t*>(from.get_data_handle());
  auto* dst = static_cast<uint16_t*>(to.get_data_handle());
  backend::dnnl_stream().wait();  // what oneDNN was writing into `from` is there
  if (to_blocked)
    plain_to_16c(src, dst, N, C, S);
  else
    blocked16c_to_plain(src, dst, N, C, S);
  return true;
}

}  // namespace

void reorder(const dnnl::memory& from, const dnnl::memory& to, bool own) {
  if (own && own_reorder(from, to)) return;
  std::string key = "reorder|" + md_key(from.get_desc()) + "|" + md_key(to.get_desc());
  const auto& cp = backend::cached_primitive(key, [&] {
    dnnl::reorder::primitive_desc pd(backend::dnnl_engine(), from.get_desc(), backend::dnnl_engine(), to.get_desc());
    return backend::CachedPrimitive{dnnl::reorder(pd), pd, pd.impl_info_str()};
  });
  cp.prim.execute(backend::dnnl_stream(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

std::string md_key(const dnnl::memory::desc& md) {
  const auto& d = md.data;
  std::string s = std::to_string(int(d.data_type)) + ":" + std::to_string(int(d.format_kind)) + ":";
  for (int i = 0; i < d.ndims; ++i) s += std::to_string(d.dims[i]) + "/" + std::to_string(d.padded_dims[i]) + ",";
  if (d.format_kind == dnnl_blocked) {
    const auto& b = d.format_desc.blocking;
    for (int i = 0; i < d.ndims; ++i) s += std::to_string(b.strides[i]) + ",";
    for (int i = 0; i < b.inner_nblks; ++i) s += std::to_string(b.inner_blks[i]) + "@" + std::to_string(b.inner_idxs[i]);
  }
  return s + "+" + std::to_string(d.offset0) + "x" + std::to_string(int(d.extra.flags));
}

void* Layouts::scratch(size_t bytes) {
  thread_local std::vector<std::unique_ptr<Storage>> slots;
  size_t i = size_t(slot_++);
  if (slots.size() <= i) slots.resize(i + 1);
  if (!slots[i] || slots[i]->nbytes() < bytes) slots[i] = std::make_unique<Storage>(bytes);
  return slots[i]->data();
}

namespace {
// Conversions made inside an ops::StableOperands scope, kept for the next op of the scope
// that reads the same buffer in the same layouts. The buffers outlive their scope and are
// reused by later scopes (a training step reorders the same shapes each time); at most
// kMemo of them per thread.
struct Memo {
  std::string key;  // user and wanted layouts
  const void* ptr = nullptr;
  uint64_t scope = 0;
  dnnl::memory mem;  // owns its buffer
};
constexpr size_t kMemo = 8;

dnnl::memory memo_in(uint64_t scope, const dnnl::memory& u, const void* ptr, const dnnl::memory::desc& want) {
  thread_local std::vector<Memo> memo;
  std::string key = md_key(u.get_desc()) + "|" + md_key(want);
  Memo* slot = nullptr;
  for (auto& m : memo) {
    if (m.key != key) continue;
    if (m.scope == scope && m.ptr == ptr) return m.mem;
    if (m.scope != scope && !slot) slot = &m;  // a stale buffer of the right layout
  }
  if (!slot) {
    if (memo.size() >= kMemo) {  // evict one from an older scope, if any
      for (auto& m : memo)
        if (m.scope != scope) {
          slot = &m;
          break;
        }
      if (!slot) return dnnl::memory();  // all belong to this scope: convert without keeping
    } else {
      slot = &memo.emplace_back();
    }
    slot->mem = dnnl::memory(want, backend::dnnl_engine());
    slot->key = key;
  }
  reorder(u, slot->mem);
  slot->ptr = ptr;
  slot->scope = scope;
  return slot->mem;
}
}  // namespace

dnnl::memory Layouts::in_operand(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want) {
  if (uint64_t scope = ops::stable_operands_scope(); scope && !(user == want)) {
    dnnl::memory u(user, backend::dnnl_engine(), ptr);
    if (dnnl::memory m = memo_in(scope, u, ptr, want)) return m;
  }
  return in(user, ptr, want);
}

dnnl::memory Layouts::in(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want) {
  dnnl::memory u(user, backend::dnnl_engine(), ptr);
  if (user == want) return u;
  dnnl::memory m(want, backend::dnnl_engine(), scratch(want.get_size()));
  reorder(u, m);
  return m;
}

dnnl::memory Layouts::out(const dnnl::memory::desc& user, void* ptr, const dnnl::memory::desc& want) {
  dnnl::memory u(user, backend::dnnl_engine(), ptr);
  if (user == want) return u;
  dnnl::memory m(want, backend::dnnl_engine(), scratch(want.get_size()));
  pending_.emplace_back(m, u);
  return m;
}

void Layouts::finish() {
  for (auto& [from, to] : pending_) reorder(from, to);
  pending_.clear();
  backend::dnnl_stream().wait();
}

}  // namespace qs::kernels
