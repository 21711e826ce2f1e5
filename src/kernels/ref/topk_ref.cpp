// Reference top-k (torch.topk): every slice along dim is ranked in full with
// kernels/topk_order.h (largest or smallest first, NaN largest, ties to the lower
// index), and the first k are kept; unsorted output lists those k by ascending index.
#include <algorithm>

#include "kernels/ref/ref_kernels.h"
#include "kernels/topk_order.h"
#include "tensor/strided.h"

namespace qs::kernels {

void topk_ref(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  Tensor &values = c.out[0], &indices = c.out[1];
  const int64_t dim = c.attrs.i("dim"), k = c.attrs.i("k");
  const bool largest = c.attrs.b("largest"), sorted = c.attrs.b("sorted");
  const int64_t S = x.size(dim);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  StridedIndex xi(x.shape(), x.strides());
  std::vector<std::pair<double, int64_t>> slice(static_cast<size_t>(S));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      for (int64_t s = 0; s < S; ++s)
        slice[size_t(s)] = {load_as_double(x.raw_data(), x.dtype(), xi.offset((o * S + s) * inner + i)), s};
      std::sort(slice.begin(), slice.end(), [&](const auto& a, const auto& b) {
        return topk_before(a.first, a.second, b.first, b.second, largest);
      });
      if (!sorted)
        std::sort(slice.begin(), slice.begin() + k, [](const auto& a, const auto& b) { return a.second < b.second; });
      for (int64_t j = 0; j < k; ++j) {
        int64_t at = (o * k + j) * inner + i;
        store_from_double(values.raw_data(), values.dtype(), at, slice[size_t(j)].first);
        indices.data_ptr<int64_t>()[at] = slice[size_t(j)].second;
      }
    }
}

}  // namespace qs::kernels
