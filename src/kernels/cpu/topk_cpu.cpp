// Optimised top-k: each slice along dim is scanned once keeping its best k (small k) or
// partially sorted (std::partial_sort, O(S log k)) instead of sorted in full; slices
// are split across OpenMP threads. The rank order is the reference's
// (kernels/topk_order.h), so values and indices match it exactly.
#include <omp.h>

#include <algorithm>
#include <numeric>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/topk_order.h"

namespace qs::kernels {

namespace {

constexpr int64_t kParallelGrain = 16384;  // elements below which threads cost more than they save

const char* topk_supports(const ops::OpCall& c) {
  DType t = c.in[0].dtype();
  if (t != DType::f32 && t != DType::f64 && t != DType::i64) return "dtype is not f32/f64/i64";
  return nullptr;
}

// Element offset of slice (o, i): o indexes the dims before `dim`, i those after it.
int64_t slice_offset(const Tensor& x, int64_t dim, int64_t o, int64_t i) {
  int64_t off = 0;
  for (int64_t d = x.dim() - 1; d > dim; --d) {
    off += (i % x.size(d)) * x.stride(d);
    i /= x.size(d);
  }
  for (int64_t d = dim - 1; d >= 0; --d) {
    off += (o % x.size(d)) * x.stride(d);
    o /= x.size(d);
  }
  return off;
}

// Small k (a router's 8 of 256 experts): one pass keeping the best k seen so far in rank
// order; most elements lose to the current k-th after one comparison.
template <class T>
void best_k_by_insertion(const T* row, int64_t stride, int64_t S, int64_t k, bool largest, T* bv, int64_t* bi) {
  int64_t n = 0;
  for (int64_t s = 0; s < S; ++s) {
    const T v = row[s * stride];
    if (n == k && !topk_before(v, s, bv[k - 1], bi[k - 1], largest)) continue;
    int64_t j = n < k ? n++ : k - 1;
    for (; j > 0 && topk_before(v, s, bv[j - 1], bi[j - 1], largest); --j) bv[j] = bv[j - 1], bi[j] = bi[j - 1];
    bv[j] = v;
    bi[j] = s;
  }
}

// Large k: order the slice's positions, only the first k of them fully (O(S log k)).
template <class T>
void best_k_by_partial_sort(const T* row, int64_t stride, int64_t S, int64_t k, bool largest, std::vector<T>& vals,
                            std::vector<int64_t>& order, T* bv, int64_t* bi) {
  for (int64_t s = 0; s < S; ++s) vals[size_t(s)] = row[s * stride];
  std::iota(order.begin(), order.end(), int64_t(0));
  auto before = [&](int64_t a, int64_t b) { return topk_before(vals[size_t(a)], a, vals[size_t(b)], b, largest); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
  for (int64_t j = 0; j < k; ++j) bv[j] = vals[size_t(order[size_t(j)])], bi[j] = order[size_t(j)];
}

constexpr int64_t kInsertionMaxK = 32;

template <class T>
void topk_slices(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  const int64_t dim = c.attrs.i("dim"), k = c.attrs.i("k");
  const bool largest = c.attrs.b("largest"), sorted = c.attrs.b("sorted");
  const int64_t S = x.size(dim), stride = x.stride(dim);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  const T* xp = x.data_ptr<T>();
  T* vp = c.out[0].data_ptr<T>();
  int64_t* ip = c.out[1].data_ptr<int64_t>();
  const int64_t slices = outer * inner;
  if (k == 0) return;
  const bool insertion = k <= kInsertionMaxK;
#pragma omp parallel if (slices > 1 && slices * S > kParallelGrain)
  {
    std::vector<T> vals(static_cast<size_t>(insertion ? 0 : S)), bv(static_cast<size_t>(k));
    std::vector<int64_t> order(static_cast<size_t>(insertion ? 0 : S)), bi(static_cast<size_t>(k)), by_index;
#pragma omp for
    for (int64_t sl = 0; sl < slices; ++sl) {
      const int64_t o = sl / inner, i = sl % inner;
      const T* row = xp + slice_offset(x, dim, o, i);
      if (insertion)
        best_k_by_insertion(row, stride, S, k, largest, bv.data(), bi.data());
      else
        best_k_by_partial_sort(row, stride, S, k, largest, vals, order, bv.data(), bi.data());
      by_index.resize(size_t(k));
      std::iota(by_index.begin(), by_index.end(), int64_t(0));  // ranks, reordered by index when unsorted
      if (!sorted)
        std::sort(by_index.begin(), by_index.end(),
                  [&](int64_t a, int64_t b) { return bi[size_t(a)] < bi[size_t(b)]; });
      for (int64_t j = 0; j < k; ++j) {
        const int64_t at = (o * k + j) * inner + i;
        vp[at] = bv[size_t(by_index[size_t(j)])];
        ip[at] = bi[size_t(by_index[size_t(j)])];
      }
    }
  }
}

void topk_cpu(ops::OpCall& c) {
  switch (c.in[0].dtype()) {
    case DType::f32:
      return topk_slices<float>(c);
    case DType::f64:
      return topk_slices<double>(c);
    default:
      return topk_slices<int64_t>(c);
  }
}

}  // namespace

void register_topk_cpu(ops::KernelTable& t) {
  ops::add_kernel(t, ops::OpKind::topk, {"cpu", topk_supports, topk_cpu});
}

}  // namespace qs::kernels
