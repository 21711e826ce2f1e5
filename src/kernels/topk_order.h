// The order topk ranks elements in, shared by the reference and the optimised kernel:
// largest first (or smallest first), NaN counted as larger than any number (as
// torch.topk), equal values in ascending index order.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace qs::kernels {

// Whether value a (at index ia) ranks before value b (at index ib).
template <class T> bool topk_before(T a, int64_t ia, T b, int64_t ib, bool largest) {
  if constexpr (std::is_floating_point_v<T>) {
    bool na = std::isnan(a), nb = std::isnan(b);
    if (na || nb) {
      if (na && nb) return ia < ib;
      return largest ? na : nb;  // NaN is the largest
    }
  }
  if (a != b) return largest ? a > b : a < b;
  return ia < ib;
}

}  // namespace qs::kernels
