// The textbook attention against loops written from its formula, and the position
// helpers against the values of their published implementations.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "qiusuo/attention.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

TEST(T5Bucket, MatchesHuggingFaceFormula) {
  // Values from Hugging Face's T5Attention._relative_position_bucket (32 buckets, 128).
  std::vector<int64_t> rel = {0, -1, -15, -16, -17, -20, -31, -32, -64, -100, -127, -128, -1000, 5};
  std::vector<int64_t> uni = {0, 1, 15, 16, 16, 17, 21, 21, 26, 30, 31, 31, 31, 0};
  for (size_t i = 0; i < rel.size(); ++i) EXPECT_EQ(t5_relative_bucket(rel[i], false, 32, 128), uni[i]) << rel[i];
  std::vector<int64_t> rb = {0, -1, -7, -8, -9, -20, -127, -128, 1, 7, 8, 20, 200};
  std::vector<int64_t> bi = {0, 1, 7, 8, 8, 10, 15, 15, 17, 23, 24, 26, 31};
  for (size_t i = 0; i < rb.size(); ++i) EXPECT_EQ(t5_relative_bucket(rb[i], true, 32, 128), bi[i]) << rb[i];
}

TEST(Alibi, SlopesOfPressEtAl) {
  auto s8 = alibi_slopes(8).to_vector();
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(s8[size_t(i)], std::pow(2.0, -(i + 1.0)), 1e-7);
  // 12 heads: the 8 slopes of 8 heads, then slopes 1, 3, 5, 7 (0-based 0, 2, 4, 6) of 16 heads.
  auto s12 = alibi_slopes(12).to_vector();
  ASSERT_EQ(s12.size(), 12u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(s12[size_t(8 + i)], std::pow(2.0, -0.5 * (2 * i + 1)), 1e-7);
}

// Loops from the formula for one (b, h): causal + ALiBi + padding.
TEST(AttentionExplicit, MatchesLoops) {
  Generator g(3);
  const int64_t b = 2, hq = 4, hkv = 2, n = 3, m = 5, d = 4;
  Tensor q = randn({b, hq, n, d}, DType::f64, &g), k = randn({b, hkv, m, d}, DType::f64, &g),
         v = randn({b, hkv, m, d}, DType::f64, &g);
  AttentionOptions o;
  o.causal = true;
  o.alibi_slopes = alibi_slopes(hq);
  std::vector<double> pad(size_t(b * m), 0.0);
  pad[1] = 1.0;  // batch 0, key 1 is padding
  o.key_padding_mask = from_vector(pad, {b, m}, DType::b8);
  o.need_weights = true;
  AttentionOutput r = attention_explicit(q, k, v, o);
  auto Q = q.to_vector(), K = k.to_vector(), V = v.to_vector(), O = r.out.to_vector(), W = r.weights.to_vector();
  auto slopes = o.alibi_slopes.to_vector();
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t h = 0; h < hq; ++h)
      for (int64_t i = 0; i < n; ++i) {
        int64_t g2 = h / (hq / hkv), pos = i + m - n;
        std::vector<double> l(size_t(m), -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j <= pos; ++j) {
          if (bi == 0 && j == 1) continue;
          double s = 0;
          for (int64_t x = 0; x < d; ++x)
            s += Q[size_t(((bi * hq + h) * n + i) * d + x)] * K[size_t(((bi * hkv + g2) * m + j) * d + x)];
          l[size_t(j)] = s / 2.0 - slopes[size_t(h)] * double(pos - j);
          mx = std::max(mx, l[size_t(j)]);
        }
        double z = 0;
        for (auto& e : l) z += e == -INFINITY ? 0 : std::exp(e - mx);
        for (int64_t x = 0; x < d; ++x) {
          double o2 = 0;
          for (int64_t j = 0; j < m; ++j)
            if (l[size_t(j)] != -INFINITY)
              o2 += std::exp(l[size_t(j)] - mx) / z * V[size_t(((bi * hkv + g2) * m + j) * d + x)];
          EXPECT_NEAR(O[size_t(((bi * hq + h) * n + i) * d + x)], o2, 1e-12);
        }
        for (int64_t j = 0; j < m; ++j) {
          double w = l[size_t(j)] == -INFINITY ? 0.0 : std::exp(l[size_t(j)] - mx) / z;
          EXPECT_NEAR(W[size_t(((bi * hq + h) * n + i) * m + j)], w, 1e-12);
        }
      }
}

TEST(AttentionExplicit, FullyMaskedRowIsZeroWithFiniteGradient) {
  Tensor q = randn({1, 1, 2, 3}, DType::f64).requires_grad_(), k = randn({1, 1, 2, 3}, DType::f64),
         v = randn({1, 1, 2, 3}, DType::f64);
  AttentionOptions o;
  o.key_padding_mask = from_vector({1, 1}, {1, 2}, DType::b8);
  Tensor out = attention_explicit(q, k, v, o).out;
  for (double x : out.to_vector()) EXPECT_EQ(x, 0.0);
  sum(out).backward();
  for (double x : q.grad().to_vector()) EXPECT_EQ(x, 0.0);
}

}  // namespace
}  // namespace qs
