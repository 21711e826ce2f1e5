// Reference reductions. Each output element j (of the keepdim-shaped output, row-major)
// gathers the input values that reduce into it, in row-major order; the formula of the
// op is then applied to that group, in double.
#include <cmath>
#include <limits>

#include "kernels/ref/ref_kernels.h"
#include "kernels/reduce_util.h"

namespace qs::kernels {

namespace {
using Groups = std::vector<std::vector<double>>;

// groups[j] = values of x over the reduced dims `dims`, for output element j.
Groups gather_groups(const Tensor& x, const std::vector<int64_t>& dims) {
  Shape kshape = ops::keepdim_shape(x.shape(), dims);
  Shape kstrides = contiguous_strides(kshape);
  for (int64_t d : dims) kstrides[size_t(d)] = 0;
  Groups g(size_t(shape_numel(kshape)));
  StridedIndex in_ix(x.shape(), x.strides()), out_ix(x.shape(), kstrides);
  for (int64_t i = 0; i < x.numel(); ++i)
    g[size_t(out_ix.offset(i))].push_back(load_as_double(x.raw_data(), x.dtype(), in_ix.offset(i)));
  return g;
}
Groups gather_groups(const ops::OpCall& c, const char* op) { return gather_groups(c.in[0], ops::reduce_dims(c.in[0], c.attrs, op)); }

// The dims of a single-dim reduction ("dim" attr); a 0-d tensor reduces nothing.
std::vector<int64_t> single_dim(const Tensor& x, const Attrs& a, const char* op) {
  if (x.dim() == 0) return {};
  return {wrap_dim(a.i("dim"), x.dim(), op)};
}

template <class F> void store_each(Tensor& out, const Groups& g, F f) {
  for (size_t j = 0; j < g.size(); ++j) store_from_double(out.raw_data(), out.dtype(), int64_t(j), f(g[j]));
}

double group_sum(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e;
  return s;
}
// max (or min) of a group; NaN propagates as in torch.amax.
double group_extreme(const std::vector<double>& v, bool is_max) {
  double m = is_max ? -INFINITY : INFINITY;
  for (double e : v) {
    if (std::isnan(e)) return e;
    if (is_max ? e > m : e < m) m = e;
  }
  return m;
}
// Index of the first maximum (minimum); the first NaN wins, as in torch.
int64_t group_arg(const std::vector<double>& v, bool is_max) {
  int64_t best = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isnan(v[i])) return int64_t(i);
    if (is_max ? v[i] > v[size_t(best)] : v[i] < v[size_t(best)]) best = int64_t(i);
  }
  return best;
}
}  // namespace

void sum_ref(ops::OpCall& c) { store_each(c.out[0], gather_groups(c, "sum"), group_sum); }

void mean_ref(ops::OpCall& c) {
  store_each(c.out[0], gather_groups(c, "mean"), [](const std::vector<double>& v) { return group_sum(v) / double(v.size()); });
}

// var = sum (x - mean)^2 / (N - correction)   (torch.var; correction 1 is Bessel's)
void var_ref(ops::OpCall& c) {
  double corr = c.attrs.f("correction", 1.0);
  store_each(c.out[0], gather_groups(c, "var"), [corr](const std::vector<double>& v) {
    double m = group_sum(v) / double(v.size()), ss = 0;
    for (double e : v) ss += (e - m) * (e - m);
    return ss / (double(v.size()) - corr);
  });
}

void amax_ref(ops::OpCall& c) {
  store_each(c.out[0], gather_groups(c, "amax"), [](const std::vector<double>& v) { return group_extreme(v, true); });
}
void amin_ref(ops::OpCall& c) {
  store_each(c.out[0], gather_groups(c, "amin"), [](const std::vector<double>& v) { return group_extreme(v, false); });
}

// logsumexp = m + log sum exp(x - m), m = max (0 if m is infinite, so that all -inf
// gives -inf and a +inf gives +inf).
void logsumexp_ref(ops::OpCall& c) {
  store_each(c.out[0], gather_groups(c, "logsumexp"), [](const std::vector<double>& v) {
    double m = group_extreme(v, true);
    if (std::isinf(m)) m = 0;
    double s = 0;
    for (double e : v) s += std::exp(e - m);
    return m + std::log(s);
  });
}

namespace {
// values and int64 indices along one dim (torch.max(x, dim)).
void extreme_dim_ref(ops::OpCall& c, bool is_max, const char* op) {
  const Tensor& x = c.in[0];
  Groups g = gather_groups(x, single_dim(x, c.attrs, op));
  for (size_t j = 0; j < g.size(); ++j) {
    int64_t k = group_arg(g[j], is_max);
    store_from_double(c.out[0].raw_data(), c.out[0].dtype(), int64_t(j), g[j][size_t(k)]);
    c.out[1].data_ptr<int64_t>()[j] = k;
  }
}
}  // namespace

void max_dim_ref(ops::OpCall& c) { extreme_dim_ref(c, true, "max"); }
void min_dim_ref(ops::OpCall& c) { extreme_dim_ref(c, false, "min"); }

// argmax over one dim, or over the flattened tensor when "dim" is absent.
void argmax_ref(ops::OpCall& c) {
  const Tensor& x = c.in[0];
  std::vector<int64_t> dims;
  if (c.attrs.has("dim")) {
    dims = single_dim(x, c.attrs, "argmax");
  } else {
    for (int64_t d = 0; d < x.dim(); ++d) dims.push_back(d);
  }
  Groups g = gather_groups(x, dims);
  for (size_t j = 0; j < g.size(); ++j) c.out[0].data_ptr<int64_t>()[j] = group_arg(g[j], true);
}

}  // namespace qs::kernels
