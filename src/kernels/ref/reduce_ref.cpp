// Reference reductions: one pass over the input in row-major order, each element
// added (in double) to the output slot it reduces into.
#include "kernels/ref/ref_kernels.h"
#include "ops/reduce_util.h"

namespace qs::kernels {

namespace {
// acc[j] = sum of x over the reduced dims, j indexing the keepdim-shaped output.
std::vector<double> sum_into(const ops::OpCall& c, std::vector<int64_t>& dims) {
  const Tensor& x = c.in[0];
  dims = ops::reduce_dims(x, c.attrs, "sum");
  Shape kshape = ops::keepdim_shape(x.shape(), dims);
  Shape kstrides = contiguous_strides(kshape);
  for (int64_t d : dims) kstrides[size_t(d)] = 0;
  std::vector<double> acc(size_t(shape_numel(kshape)), 0.0);
  StridedIndex in_ix(x.shape(), x.strides()), out_ix(x.shape(), kstrides);
  for (int64_t i = 0; i < x.numel(); ++i)
    acc[size_t(out_ix.offset(i))] += load_as_double(x.raw_data(), x.dtype(), in_ix.offset(i));
  return acc;
}
}  // namespace

void sum_ref(ops::OpCall& c) {
  std::vector<int64_t> dims;
  auto acc = sum_into(c, dims);
  for (size_t j = 0; j < acc.size(); ++j) store_from_double(c.out[0].raw_data(), c.out[0].dtype(), int64_t(j), acc[j]);
}

void mean_ref(ops::OpCall& c) {
  std::vector<int64_t> dims;
  auto acc = sum_into(c, dims);
  double n = double(ops::reduced_count(c.in[0].shape(), dims));
  for (size_t j = 0; j < acc.size(); ++j)
    store_from_double(c.out[0].raw_data(), c.out[0].dtype(), int64_t(j), acc[j] / n);
}

}  // namespace qs::kernels
