// Indexing and joining primitives (embedding, index_select, gather, scatter_add, cat):
// shape rules with index range checks, gradients, samples, and the functional API
// with the composites built on them (stack, split, chunk).
#include "kernels/ref/ref_kernels.h"
#include "ops/functional_internal.h"
#include "ops/samples.h"
#include "qiusuo/autograd.h"
#include "tensor/strided.h"

namespace qs::ops {

namespace {

void check_index_dtype(const Tensor& index, const char* op) {
  QS_CHECK(index.dtype() == DType::i64, "{}: indices must be i64, got {}; hint: convert with .to(DType::i64)", op,
           dtype_name(index.dtype()));
}

// Every index in [0, limit); the error names the first bad one, where it is and the bound.
// Expanded (stride-0) dims repeat the same values, so only one slice of each is read: the
// expanded row index of a backward scatter is checked without copying it out in full.
void check_index_range(const Tensor& index, int64_t limit, const char* op, const char* what) {
  Tensor distinct = index;
  for (int64_t d = 0; d < index.dim(); ++d)
    if (index.stride(d) == 0 && index.size(d) > 1) distinct = distinct.narrow(d, 0, 1);
  Tensor ic = distinct.contiguous();
  const int64_t* p = ic.data_ptr<int64_t>();
  int64_t n = ic.numel(), bad = -1;
  for (int64_t i = 0; i < n && bad < 0; ++i)
    if (p[i] < 0 || p[i] >= limit) bad = i;
  if (bad < 0) return;
  int64_t flat = 0, rest = bad;  // the bad element's row-major position in the full index
  Shape coord(size_t(index.dim()));
  for (int64_t d = index.dim() - 1; d >= 0; --d) {
    coord[size_t(d)] = rest % ic.size(d);
    rest /= ic.size(d);
  }
  for (int64_t d = 0; d < index.dim(); ++d) flat = flat * index.size(d) + coord[size_t(d)];
  QS_FAIL("{}: index {} (element {} of the indices) is out of range for {} {} (valid: 0..{})", op, p[bad], flat, what,
          limit, limit - 1);
}

int64_t checked_dim(const OpCall& c, int64_t rank, const char* op) {
  int64_t d = c.attrs.i("dim");
  QS_CHECK(d >= 0 && d < rank, "{}: dim {} is out of range for a tensor of rank {}", op, d, rank);
  return d;
}

// ---- embedding
std::vector<TensorSpec> embedding_meta(const OpCall& c) {
  const Tensor &w = c.in[0], &idx = c.in[1];
  QS_CHECK(w.dim() == 2 && w.is_floating_point(), "embedding: weight must be a floating-point [V, D] matrix, got {} {}",
           dtype_name(w.dtype()), shape_str(w.shape()));
  check_index_dtype(idx, "embedding");
  int64_t pad = c.attrs.i("padding_idx", -1);
  QS_CHECK(pad < w.size(0), "embedding: padding_idx {} is out of range for V = {}", pad, w.size(0));
  check_index_range(idx, w.size(0), "embedding", "a table of V =");
  Shape s = idx.shape();
  s.push_back(w.size(1));
  return {{s, w.dtype()}};
}
std::vector<Tensor> embedding_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  if (!c.needs_grad[0]) return {Tensor(), Tensor()};
  Attrs a = Attrs().set("num_weights", c.in_spec[0].shape[0]).set("padding_idx", c.attrs.i("padding_idx", -1));
  return {dispatch1(OpKind::embedding_dense_backward, {g[0], c.in[1]}, a), Tensor()};
}
std::vector<Sample> embedding_samples(DType dt, Generator& g) {
  auto sample = [&](Tensor w, Shape ishape, std::string label) {
    return Sample{{w, randint(0, w.size(0), ishape, DType::i64, &g)}, Attrs().set("padding_idx", -1), std::move(label)};
  };
  // No padding_idx sample here: its zero gradient is a convention finite differences
  // cannot confirm. embedding_dense_backward's samples and tests/nn cover it.
  std::vector<Sample> s;
  s.push_back(sample(sample_uniform({17, 7}, dt, g), {33}, "17x7 n=33 (repeats)"));
  s.push_back(sample(sample_uniform({1, 3}, dt, g), {5}, "V=1"));
  s.push_back(sample(sample_uniform({127, 1}, dt, g), {3, 7}, "D=1, 2-d indices"));
  s.push_back(sample(sample_transposed({33, 17}, dt, g), {7}, "transposed weight"));
  s.push_back(sample(sample_uniform({1000, 64}, dt, g), {8, 32}, "1000x64 B=8 T=32"));
  return s;
}

std::vector<TensorSpec> embedding_dense_backward_meta(const OpCall& c) {
  const Tensor &g = c.in[0], &idx = c.in[1];
  check_index_dtype(idx, "embedding_dense_backward");
  int64_t V = c.attrs.i("num_weights");
  QS_CHECK(g.is_floating_point() && g.dim() == idx.dim() + 1 &&
               Shape(g.shape().begin(), g.shape().end() - 1) == idx.shape(),
           "embedding_dense_backward: grad must be indices.shape + [D] = {} + [D], got {}", shape_str(idx.shape()),
           shape_str(g.shape()));
  check_index_range(idx, V, "embedding_dense_backward", "a table of V =");
  return {{{V, g.size(-1)}, g.dtype()}};
}
std::vector<Sample> embedding_dense_backward_samples(DType dt, Generator& g) {
  auto sample = [&](Tensor grad, Shape ishape, int64_t V, int64_t pad, std::string label) {
    Tensor idx = randint(0, V, ishape, DType::i64, &g);
    return Sample{{grad, idx}, Attrs().set("num_weights", V).set("padding_idx", pad), std::move(label)};
  };
  std::vector<Sample> s;
  s.push_back(sample(sample_uniform({33, 7}, dt, g), {33}, 17, -1, "n=33 V=17 (repeats)"));
  s.push_back(sample(sample_uniform({127, 3}, dt, g), {127}, 1, -1, "V=1"));
  s.push_back(sample(sample_uniform({3, 5, 7}, dt, g), {3, 5}, 7, 2, "padding_idx=2"));
  s.push_back(sample(sample_transposed({17, 33}, dt, g), {17}, 127, -1, "strided grad"));
  s.push_back(sample(sample_uniform({8, 32, 64}, dt, g), {8, 32}, 1000, 0, "B=8 T=32 V=1000 D=64"));
  return s;
}

// ---- index_select
std::vector<TensorSpec> index_select_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &idx = c.in[1];
  int64_t d = checked_dim(c, x.dim(), "index_select");
  check_index_dtype(idx, "index_select");
  QS_CHECK(idx.dim() == 1, "index_select: index must be 1-d, got shape {}", shape_str(idx.shape()));
  check_index_range(idx, x.size(d), "index_select", "a dim of size");
  Shape s = x.shape();
  s[size_t(d)] = idx.numel();
  return {{s, x.dtype()}};
}
std::vector<Tensor> index_select_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  const TensorSpec& xs = c.in_spec[0];
  int64_t d = c.attrs.i("dim");
  Shape ishape(xs.shape.size(), 1);
  ishape[size_t(d)] = c.in[1].numel();
  Tensor idx = c.in[1].reshape(ishape).expand(g[0].shape());
  return {scatter_add(zeros(xs.shape, g[0].dtype()), d, idx, g[0]), Tensor()};
}
std::vector<Sample> index_select_samples(DType dt, Generator& g) {
  auto sample = [&](Tensor x, int64_t dim, int64_t n, std::string label) {
    return Sample{{x, randint(0, x.size(dim), {n}, DType::i64, &g)}, Attrs().set("dim", dim), std::move(label)};
  };
  std::vector<Sample> s;
  s.push_back(sample(sample_uniform({7, 17}, dt, g), 0, 33, "rows, repeats"));
  s.push_back(sample(sample_uniform({7, 17}, dt, g), 1, 3, "cols"));
  s.push_back(sample(sample_uniform({3, 7, 5}, dt, g), 1, 1, "3-d middle"));
  s.push_back(sample(sample_transposed({17, 7}, dt, g), 0, 5, "transposed x"));
  Sample strided_idx = sample(sample_uniform({33, 3}, dt, g), 0, 14, "strided index");
  strided_idx.in[1] = strided_idx.in[1].slice(0, 0, 14, 2);
  s.push_back(strided_idx);
  s.push_back(sample(sample_uniform({512, 64}, dt, g), 0, 127, "512x64 rows"));
  return s;
}

// ---- gather and scatter_add
void check_index_fits(const Tensor& idx, const Tensor& t, int64_t dim, bool including_dim, const char* op,
                      const char* what) {
  QS_CHECK(idx.dim() == t.dim(), "{}: index must have the rank of {} ({}), got {}", op, what, t.dim(), idx.dim());
  for (int64_t d = 0; d < t.dim(); ++d)
    QS_CHECK((d == dim && !including_dim) || idx.size(d) <= t.size(d),
             "{}: index size {} at dim {} exceeds the size {} of {} (index {}, {} {})", op, idx.size(d), d, t.size(d),
             what, shape_str(idx.shape()), what, shape_str(t.shape()));
}
std::vector<TensorSpec> gather_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &idx = c.in[1];
  int64_t d = checked_dim(c, x.dim(), "gather");
  check_index_dtype(idx, "gather");
  check_index_fits(idx, x, d, false, "gather", "x");
  check_index_range(idx, x.size(d), "gather", "a dim of size");
  return {{idx.shape(), x.dtype()}};
}
std::vector<Tensor> gather_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  return {scatter_add(zeros(c.in_spec[0].shape, g[0].dtype()), c.attrs.i("dim"), c.in[1], g[0]), Tensor()};
}
std::vector<TensorSpec> scatter_add_meta(const OpCall& c) {
  const Tensor &x = c.in[0], &idx = c.in[1], &src = c.in[2];
  int64_t d = checked_dim(c, x.dim(), "scatter_add");
  check_index_dtype(idx, "scatter_add");
  QS_CHECK(x.dtype() == src.dtype() && x.is_floating_point(), "scatter_add: x and src must share a float dtype, got {} and {}",
           dtype_name(x.dtype()), dtype_name(src.dtype()));
  check_index_fits(idx, x, d, false, "scatter_add", "x");
  check_index_fits(idx, src, d, true, "scatter_add", "src");
  check_index_range(idx, x.size(d), "scatter_add", "a dim of size");
  return {{x.shape(), x.dtype()}};
}
std::vector<Tensor> scatter_add_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  Tensor gsrc;
  if (c.needs_grad[2]) {
    gsrc = gather(g[0], c.attrs.i("dim"), c.in[1]);
    const Shape& ss = c.in_spec[2].shape;
    if (gsrc.shape() != ss) {  // src positions the index does not cover get no gradient
      Tensor full_g = zeros(ss, gsrc.dtype());
      Tensor window = full_g;
      for (int64_t d = 0; d < gsrc.dim(); ++d) window = window.narrow(d, 0, gsrc.size(d));
      window.copy_(gsrc);
      gsrc = full_g;
    }
  }
  return {c.needs_grad[0] ? g[0] : Tensor(), Tensor(), gsrc};
}
std::vector<Sample> gather_samples(DType dt, Generator& g) {
  auto sample = [&](Tensor x, int64_t dim, Shape ishape, std::string label) {
    return Sample{{x, randint(0, x.size(dim), ishape, DType::i64, &g)}, Attrs().set("dim", dim), std::move(label)};
  };
  return {sample(sample_uniform({7, 17}, dt, g), 1, {7, 33}, "dim 1, repeats"),
          sample(sample_uniform({7, 17}, dt, g), 0, {3, 17}, "dim 0"),
          sample(sample_uniform({3, 7, 5}, dt, g), 2, {3, 1, 5}, "3-d, smaller index"),
          sample(sample_transposed({17, 7}, dt, g), 1, {17, 3}, "transposed x"),
          sample(sample_uniform({64, 1000}, dt, g), 1, {64, 1}, "64x1000 pick one"),
          sample(sample_uniform({64, 1000}, dt, g), 1, {64, 520}, "64x1000 pick 520 (threaded)")};
}
std::vector<Sample> scatter_add_samples(DType dt, Generator& g) {
  // index_select's backward: one index per row along dim, expanded over the other dims.
  auto row_sample = [&](Tensor x, int64_t dim, Tensor src, std::string label) {
    Shape one(size_t(x.dim()), 1);
    one[size_t(dim)] = src.size(dim);
    Tensor idx = randint(0, x.size(dim), one, DType::i64, &g).expand(src.shape());
    return Sample{{x, idx, src}, Attrs().set("dim", dim), std::move(label)};
  };
  auto sample = [&](Tensor x, int64_t dim, Tensor src, Shape ishape, std::string label) {
    return Sample{{x, randint(0, x.size(dim), ishape, DType::i64, &g), src}, Attrs().set("dim", dim), std::move(label)};
  };
  return {sample(sample_uniform({7, 17}, dt, g), 1, sample_uniform({7, 33}, dt, g), {7, 33}, "dim 1, repeats"),
          sample(sample_uniform({7, 17}, dt, g), 0, sample_uniform({5, 17}, dt, g), {3, 17}, "src larger than index"),
          sample(sample_uniform({3, 7, 5}, dt, g), 1, sample_uniform({3, 7, 5}, dt, g), {3, 7, 5}, "3-d"),
          sample(sample_transposed({17, 7}, dt, g), 1, sample_transposed({17, 3}, dt, g), {17, 3}, "transposed"),
          sample(sample_uniform({64, 127}, dt, g), 0, sample_uniform({256, 127}, dt, g), {256, 127}, "64x127 rows"),
          row_sample(sample_uniform({17, 33}, dt, g), 0, sample_uniform({40, 33}, dt, g), "row index (expanded), repeats"),
          row_sample(sample_uniform({3, 7, 5}, dt, g), 1, sample_transposed({9, 3, 5}, dt, g).transpose(0, 1),
                     "row index, middle dim, strided src"),
          row_sample(sample_uniform({64, 127}, dt, g), 0, sample_uniform({256, 127}, dt, g), "row index 256x127 (threaded)")};
}

// ---- cat
std::vector<TensorSpec> cat_meta(const OpCall& c) {
  QS_CHECK(!c.in.empty(), "cat: expected at least one tensor, got none");
  const Tensor& a = c.in[0];
  int64_t d = checked_dim(c, a.dim(), "cat");
  Shape s = a.shape();
  s[size_t(d)] = 0;
  for (size_t k = 0; k < c.in.size(); ++k) {
    const Tensor& x = c.in[k];
    QS_CHECK(x.dtype() == a.dtype(), "cat: tensor {} has dtype {}, tensor 0 has {}", k, dtype_name(x.dtype()),
             dtype_name(a.dtype()));
    bool ok = x.dim() == a.dim();
    for (int64_t i = 0; ok && i < a.dim(); ++i) ok = i == d || x.size(i) == a.size(i);
    QS_CHECK(ok, "cat: tensor {} has shape {}, expected tensor 0's shape {} except at dim {}", k, shape_str(x.shape()),
             shape_str(a.shape()), d);
    s[size_t(d)] += x.size(d);
  }
  return {{s, a.dtype()}};
}
std::vector<Tensor> cat_backward(const GradCtx& c, const std::vector<Tensor>& g) {
  int64_t d = c.attrs.i("dim"), start = 0;
  std::vector<Tensor> out(c.in_spec.size());
  for (size_t k = 0; k < out.size(); ++k) {
    int64_t n = c.in_spec[k].shape[size_t(d)];
    if (c.needs_grad[k]) out[k] = g[0].narrow(d, start, n);
    start += n;
  }
  return out;
}
std::vector<Sample> cat_samples(DType dt, Generator& g) {
  auto at = [](int64_t d) { return Attrs().set("dim", d); };
  return {{{sample_uniform({3, 5}, dt, g), sample_uniform({4, 5}, dt, g)}, at(0), "two, dim 0"},
          {{sample_uniform({2, 1, 3}, dt, g), sample_uniform({2, 7, 3}, dt, g), sample_uniform({2, 0, 3}, dt, g),
            sample_uniform({2, 17, 3}, dt, g)}, at(1), "four, middle dim, one empty"},
          {{sample_uniform({33}, dt, g)}, at(0), "one"},
          {{sample_transposed({7, 3}, dt, g), sample_uniform({7, 5}, dt, g)}, at(1), "transposed"},
          {{sample_uniform({8, 32, 64}, dt, g), sample_uniform({8, 32, 64}, dt, g)}, at(2), "8x32x64 last dim"}};
}

}  // namespace

const OpImpl embedding_impl{embedding_meta, kernels::embedding_ref, embedding_backward, embedding_samples, nullptr};
const OpImpl embedding_dense_backward_impl{embedding_dense_backward_meta, kernels::embedding_dense_backward_ref,
                                           nullptr, embedding_dense_backward_samples, nullptr};
const OpImpl index_select_impl{index_select_meta, kernels::index_select_ref, index_select_backward,
                               index_select_samples, nullptr};
const OpImpl gather_impl{gather_meta, kernels::gather_ref, gather_backward, gather_samples, nullptr};
const OpImpl scatter_add_impl{scatter_add_meta, kernels::scatter_add_ref, scatter_add_backward, scatter_add_samples,
                              nullptr};
const OpImpl cat_impl{cat_meta, kernels::cat_ref, cat_backward, cat_samples, nullptr};

}  // namespace qs::ops

// ---- functional API
namespace qs {
using ops::dispatch1;
using ops::OpKind;

Tensor embedding(const Tensor& indices, const Tensor& weight, int64_t padding_idx) {
  return dispatch1(OpKind::embedding, {weight, indices}, Attrs().set("padding_idx", padding_idx < 0 ? -1 : padding_idx));
}
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  return dispatch1(OpKind::index_select, {x, index}, Attrs().set("dim", wrap_dim(dim, x.dim(), "index_select")));
}
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  return dispatch1(OpKind::gather, {x, index}, Attrs().set("dim", wrap_dim(dim, x.dim(), "gather")));
}
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  return dispatch1(OpKind::scatter_add, {x, index, src}, Attrs().set("dim", wrap_dim(dim, x.dim(), "scatter_add")));
}
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  QS_CHECK(!tensors.empty(), "cat: expected at least one tensor, got none");
  return dispatch1(OpKind::cat, tensors, Attrs().set("dim", wrap_dim(dim, tensors[0].dim(), "cat")));
}
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  QS_CHECK(!tensors.empty(), "stack: expected at least one tensor, got none");
  int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t k = 0; k < tensors.size(); ++k) {
    QS_CHECK(tensors[k].shape() == tensors[0].shape(), "stack: tensor {} has shape {}, tensor 0 has {}", k,
             shape_str(tensors[k].shape()), shape_str(tensors[0].shape()));
    parts.push_back(tensors[k].unsqueeze(d));
  }
  return cat(parts, d);
}
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  int64_t d = wrap_dim(dim, x.dim(), "split"), total = 0;
  for (int64_t s : sizes) {
    QS_CHECK(s >= 0, "split: sizes must be non-negative, got {}", shape_str(sizes));
    total += s;
  }
  QS_CHECK(total == x.size(d), "split: sizes {} sum to {}, but dim {} has size {}", shape_str(sizes), total, d, x.size(d));
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(d, start, s));
    start += s;
  }
  return out;
}
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  QS_CHECK(split_size > 0, "split: split_size must be positive, got {}", split_size);
  int64_t n = x.size(wrap_dim(dim, x.dim(), "split"));
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < n; start += split_size) sizes.push_back(std::min(split_size, n - start));
  if (sizes.empty()) sizes.push_back(0);
  return split(x, sizes, dim);
}
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  QS_CHECK(chunks > 0, "chunk: chunks must be positive, got {}", chunks);
  int64_t n = x.size(wrap_dim(dim, x.dim(), "chunk"));
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), dim);
}

}  // namespace qs
