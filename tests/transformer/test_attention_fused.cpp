// The fused attention op against the textbook one (qs::attention_explicit): outputs,
// weights, bucket weights and the gradients of q, k, v and rel_bias for every option
// combination, odd sizes, strided inputs, fully masked rows, and its memory footprint.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <sys/resource.h>

#ifdef QS_WITH_OPTIMISED
#include "kernels/cpu/attention_cpu.h"
#endif
#include "qiusuo/attention.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  auto x = a.to_vector(), y = b.to_vector();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

struct Case {
  int64_t b = 2, hq = 2, hkv = 2, n = 5, m = 7, dk = 4, dv = 3;
  bool packed = false;
  AttentionOptions o;
};

struct Inputs {
  Tensor q, k, v, rel;
};

Inputs make_inputs(const Case& c, DType dt, Generator& g) {
  Inputs in;
  if (c.packed) {
    Tensor qkv = randn({c.b, c.n, 3, c.hq, c.dk}, dt, &g).permute({2, 0, 3, 1, 4});
    in.q = qkv.select(0, 0), in.k = qkv.select(0, 1), in.v = qkv.select(0, 2);
  } else {
    in.q = randn({c.b, c.hq, c.n, c.dk}, dt, &g);
    in.k = randn({c.b, c.hkv, c.m, c.dk}, dt, &g);
    in.v = randn({c.b, c.hkv, c.m, c.dv}, dt, &g);
  }
  if (c.o.relative == RelativeBias::t5) in.rel = randn({c.hq, c.o.rel_num_buckets}, dt, &g);
  if (c.o.relative == RelativeBias::shaw) in.rel = randn({c.b, c.hq, c.n, 2 * c.o.rel_max_distance + 1}, dt, &g);
  for (Tensor* t : {&in.q, &in.k, &in.v, &in.rel})
    if (t->defined()) t->requires_grad_(true);
  return in;
}

// Runs one path and returns its outputs and the gradients of a randomly weighted loss.
struct Result {
  AttentionOutput r;
  std::vector<Tensor> grads;
};
Result run(bool fused, const Case& c, const Inputs& in, const std::vector<Tensor>& loss_w) {
  AttentionOptions o = c.o;
  o.rel_bias = in.rel;
  Result res;
  res.r = fused ? attention(in.q, in.k, in.v, o) : attention_explicit(in.q, in.k, in.v, o);
  Tensor loss = sum(res.r.out * loss_w[0]);
  if (res.r.bucket_weights.defined()) loss = loss + sum(res.r.bucket_weights * loss_w[1]);
  std::vector<Tensor> leaves = {in.q, in.k, in.v};
  if (in.rel.defined()) leaves.push_back(in.rel);
  res.grads = grad(loss, leaves);
  return res;
}

void compare_paths(const Case& c, DType dt, double tol, uint64_t seed = 1) {
  Generator g(seed);
  Inputs in = make_inputs(c, dt, g);
  std::vector<Tensor> w = {randn({c.b, c.hq, c.n, c.dv}, dt, &g),
                           randn({c.b, c.hq, c.n, 2 * c.o.rel_max_distance + 1}, dt, &g)};
  Result f = run(true, c, in, w), e = run(false, c, in, w);
  EXPECT_LE(max_abs_diff(f.r.out, e.r.out), tol) << "out";
  if (c.o.need_weights) EXPECT_LE(max_abs_diff(f.r.weights, e.r.weights), std::max(tol, 1e-6)) << "weights";
  if (!c.o.need_weights) EXPECT_FALSE(f.r.weights.defined());
  if (c.o.return_bucket_weights) EXPECT_LE(max_abs_diff(f.r.bucket_weights, e.r.bucket_weights), tol) << "bw";
  const char* names[] = {"dq", "dk", "dv", "drel_bias"};
  for (size_t i = 0; i < f.grads.size(); ++i)
    EXPECT_LE(max_abs_diff(f.grads[i], e.grads[i]), tol * 10) << names[i];
}

Tensor padding_for(const Case& c) {
  std::vector<double> p(size_t(c.b * c.m), 0.0);
  p[0] = 1.0;                                                  // batch 0: key 0 (causal row 0 sees nothing)
  for (int64_t j = 0; j < c.m; ++j) p[size_t(c.m + j)] = 1.0;  // batch 1: every key
  return from_vector(p, {c.b, c.m}, DType::b8);
}

TEST(AttentionFused, EveryOptionCombinationMatchesExplicitF64) {
  for (int causal = 0; causal < 2; ++causal)
    for (int pad = 0; pad < 2; ++pad)
      for (int alibi = 0; alibi < 2; ++alibi)
        for (int rel = 0; rel < 4; ++rel)
          for (int64_t hkv : {2, 1}) {
            Case c;
            c.hkv = hkv;
            c.o.causal = causal;
            if (pad) c.o.key_padding_mask = padding_for(c);
            if (alibi) c.o.alibi_slopes = alibi_slopes(c.hq);
            c.o.relative = rel == 0 ? RelativeBias::none : rel == 3 ? RelativeBias::shaw : RelativeBias::t5;
            c.o.rel_num_buckets = 8, c.o.rel_max_distance = rel == 3 ? 2 : 5, c.o.rel_bidirectional = rel == 2;
            c.o.return_bucket_weights = rel == 3;
            c.o.need_weights = true;
            SCOPED_TRACE(fmt::format("causal {} pad {} alibi {} rel {} hkv {}", causal, pad, alibi, rel, hkv));
            compare_paths(c, DType::f64, 1e-12);
          }
}

TEST(AttentionFused, OddSizesAndKvCacheOffset) {
  for (int64_t n : {1, 3, 17, 33, 127})
    for (int64_t extra : {0, 5}) {
      Case c;
      c.b = 1, c.hq = 4, c.hkv = 2, c.n = n, c.m = n + extra, c.dk = 17, c.dv = 9;
      c.o.causal = true;
      c.o.need_weights = n <= 33;
      SCOPED_TRACE(fmt::format("n {} m {}", c.n, c.m));
      compare_paths(c, DType::f64, 1e-12);
      compare_paths(c, DType::f32, 1e-5);
    }
}

TEST(AttentionFused, F32RealisticShapesWithEveryBias) {
  Case c;
  c.b = 2, c.hq = 4, c.hkv = 2, c.n = 127, c.m = 127, c.dk = 32, c.dv = 32;
  c.o.causal = true;
  c.o.alibi_slopes = alibi_slopes(c.hq);
  c.o.relative = RelativeBias::t5;
  c.o.need_weights = true;
  compare_paths(c, DType::f32, 1e-5);
  c.o.relative = RelativeBias::shaw, c.o.rel_max_distance = 16, c.o.return_bucket_weights = true;
  compare_paths(c, DType::f32, 1e-5);
}

TEST(AttentionFused, MlaShapesSharedKvHead) {
  Case c;
  c.b = 1, c.hq = 4, c.hkv = 1, c.n = 33, c.m = 70, c.dk = 192, c.dv = 128;
  c.o.causal = true;
  compare_paths(c, DType::f64, 1e-12);
  compare_paths(c, DType::f32, 1e-5);
}

TEST(AttentionFused, StridedPackedQkvAndOutputLayout) {
  Case c;
  c.b = 2, c.hq = 3, c.hkv = 3, c.n = 33, c.m = 33, c.dk = 8, c.dv = 8, c.packed = true;
  c.o.causal = true;
  compare_paths(c, DType::f64, 1e-12);
  compare_paths(c, DType::f32, 1e-5);
  Tensor q = randn({2, 3, 5, 8});
  Tensor out = attention(q, q, q).out;
  EXPECT_EQ(out.shape(), (Shape{2, 3, 5, 8}));
  EXPECT_TRUE(out.transpose(1, 2).is_contiguous());  // so transpose(1, 2).reshape(b, n, h d) is free
  Tensor flat = out.transpose(1, 2).reshape({2, 5, 24});
  EXPECT_EQ(flat.storage().get(), out.storage().get());
}

TEST(AttentionFused, FullyMaskedRowsAreZeroWithZeroGradient) {
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor q = randn({2, 2, 3, 4}, dt).requires_grad_(), k = randn({2, 2, 3, 4}, dt).requires_grad_(),
           v = randn({2, 2, 3, 4}, dt).requires_grad_();
    AttentionOptions o;
    o.key_padding_mask = from_vector({1, 1, 1, 0, 0, 0}, {2, 3}, DType::b8);  // batch 0 sees nothing
    o.need_weights = true;
    AttentionOutput r = attention(q, k, v, o);
    sum(r.out * randn(r.out.shape(), dt)).backward();
    for (double x : r.out.select(0, 0).to_vector()) EXPECT_EQ(x, 0.0);
    for (double x : r.weights.select(0, 0).to_vector()) EXPECT_EQ(x, 0.0);
    for (Tensor t : {q.grad(), k.grad(), v.grad()})
      for (double x : t.select(0, 0).to_vector()) EXPECT_EQ(x, 0.0);
    for (double x : q.grad().select(0, 1).to_vector()) EXPECT_TRUE(std::isfinite(x));
  }
}

TEST(AttentionFused, ErrorsNameWhatWasExpected) {
  Tensor q = randn({1, 3, 4, 8}), k = randn({1, 2, 4, 8});
  try {
    attention(q, k, k);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple"), std::string::npos) << e.what();
  }
  AttentionOptions o;
  o.relative = RelativeBias::t5;  // rel_bias missing
  EXPECT_THROW(attention(q, q, q, o), Error);
  o = {};
  o.causal = true;
  EXPECT_THROW(attention(randn({1, 1, 5, 8}), randn({1, 1, 3, 8}), randn({1, 1, 3, 8}), o), Error);
}

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}

// n = 4096, b = 1, h = 2, d = 32: one head's [n, n] f32 matrix alone is 64 MiB. The fused
// forward + backward must stay O(n): its scratch (as the kernels size it) grows linearly
// and the process's peak resident memory grows by far less than one such matrix.
TEST(AttentionFused, MemoryIsLinearInSequenceLength) {
  const int64_t n = 4096, d = 32;
  const int64_t nn_bytes = n * n * 4;
#ifdef QS_WITH_OPTIMISED
  auto scratch = [&](int64_t len, bool bwd) {
    kernels::AttnConfig c{1, 2, 2, len, len, d, d, 0.1, true, kernels::AttnRel::none, 32, 128, false, false};
    return int64_t(kernels::attention_cpu_scratch_bytes(c, 4, bwd, 2));
  };
  for (bool bwd : {false, true}) {
    EXPECT_LT(scratch(n, bwd), nn_bytes / 16) << "backward " << bwd;
    EXPECT_LT(scratch(2 * n, bwd), 2 * scratch(n, bwd) + 65536) << "not linear, backward " << bwd;
  }
#endif
  Generator g(5);
  Tensor q = randn({1, 2, n, d}, DType::f32, &g).requires_grad_(), k = randn({1, 2, n, d}, DType::f32, &g).requires_grad_(),
         v = randn({1, 2, n, d}, DType::f32, &g).requires_grad_();
  Tensor dout = randn({1, 2, n, d}, DType::f32, &g);
  const int64_t before = peak_rss_bytes();
  AttentionOptions o;
  o.causal = true;
  attention(q, k, v, o).out.backward(dout);
  const int64_t grown = peak_rss_bytes() - before;
  EXPECT_LT(grown, nn_bytes / 2) << "peak resident memory grew by " << grown << " bytes";
  EXPECT_TRUE(q.grad().defined() && k.grad().defined() && v.grad().defined());
}

}  // namespace
}  // namespace qs
