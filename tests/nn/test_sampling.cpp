// Token sampling: greedy and its limits, the kept distribution against empirical
// frequencies, seed determinism, errors.
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/nn/sampling.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

using nn::SamplingOptions;

Tensor logits_of_probs(const std::vector<double>& p) {
  std::vector<double> l;
  for (double v : p) l.push_back(std::log(v));
  return from_vector(l, {int64_t(p.size())});
}

// Pearson's statistic of n draws against probabilities want (cells with want 0 must be empty).
double chi_square(const SamplingOptions& o, const Tensor& logits, const std::vector<double>& want, int n,
                  uint64_t seed) {
  Generator g(seed);
  std::vector<int> count(want.size(), 0);
  for (int i = 0; i < n; ++i) ++count[size_t(nn::sample_token(logits, o, g))];
  double chi = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0) {
      EXPECT_EQ(count[i], 0) << "token " << i << " should never be drawn";
      continue;
    }
    double e = want[i] * n;
    chi += (count[i] - e) * (count[i] - e) / e;
  }
  return chi;
}

TEST(Sampling, GreedyTakesTheLowestIdAmongTies) {
  Generator g(1);
  Tensor l = from_vector({1, 5, 5, 2}, {4});
  SamplingOptions o;
  o.temperature = 0;
  EXPECT_EQ(nn::sample_token(l, o, g), 1);
  EXPECT_EQ(nn::sample_token(from_vector({-INFINITY, -3, -INFINITY}, {3}), o, g), 1);
}

TEST(Sampling, TopKOneAndTinyTopPAreGreedy) {
  Generator data(2), g(3);
  for (int trial = 0; trial < 20; ++trial) {
    Tensor l = randn({50}, DType::f32, &data) * 3.0;
    int64_t best = argmax(l).to_vector_as<int64_t>()[0];
    SamplingOptions k1;
    k1.top_k = 1;
    EXPECT_EQ(nn::sample_token(l, k1, g), best);
    SamplingOptions p0;
    p0.top_p = 1e-9;
    p0.temperature = 1.7;
    EXPECT_EQ(nn::sample_token(l, p0, g), best);
  }
}

TEST(Sampling, FrequenciesMatchTheRenormalisedDistribution) {
  // chi-square critical values at p = 0.001: 2 dof 13.8, 4 dof 18.5.
  Tensor l = logits_of_probs({0.1, 0.3, 0.05, 0.4, 0.15});
  SamplingOptions plain;
  EXPECT_LT(chi_square(plain, l, {0.1, 0.3, 0.05, 0.4, 0.15}, 20000, 11), 18.5);
  // top_k = 4 drops token 2; of the rest (0.95), top_p = 0.8 keeps 0.4, 0.3 and 0.15
  // (cumulative 0.42, 0.74, 0.89 of 0.95): renormalised over 0.85.
  SamplingOptions kp;
  kp.top_k = 4;
  kp.top_p = 0.8;
  EXPECT_LT(chi_square(kp, l, {0, 0.3 / 0.85, 0, 0.4 / 0.85, 0.15 / 0.85}, 20000, 12), 13.8);
  // temperature 2 on log p: p^(1/2), renormalised.
  SamplingOptions t2;
  t2.temperature = 2.0;
  std::vector<double> want = {0.1, 0.3, 0.05, 0.4, 0.15};
  double z = 0;
  for (double& v : want) z += v = std::sqrt(v);
  for (double& v : want) v /= z;
  EXPECT_LT(chi_square(t2, l, want, 20000, 13), 18.5);
}

TEST(Sampling, SeedReproducesASequenceWithOneDrawPerCall) {
  Generator data(4);
  Tensor l = randn({3, 100}, DType::f32, &data);
  SamplingOptions o;
  o.top_k = 20;
  o.top_p = 0.9;
  o.temperature = 0.8;
  auto run = [&](uint64_t seed) {
    Generator g(seed);
    std::vector<int64_t> seq;
    for (int i = 0; i < 30; ++i)
      for (int64_t t : nn::sample_tokens(l, o, g)) seq.push_back(t);
    return seq;
  };
  EXPECT_EQ(run(9), run(9));
  EXPECT_NE(run(9), run(10));
  Generator a(5), b(5);
  nn::sample_token(l.select(0, 0), o, a);
  b.next_double();
  EXPECT_EQ(a.next_u64(), b.next_u64());
}

TEST(Sampling, RowsAreSampledIndependently) {
  Generator g(6);
  Tensor l = from_vector({0, 9, 1, 7, 0, 0, 2, 3, 8}, {3, 3});
  SamplingOptions o;
  o.temperature = 0;
  EXPECT_EQ(nn::sample_tokens(l, o, g), (std::vector<int64_t>{1, 0, 2}));
}

TEST(Sampling, BadOptionsAndLogitsAreClearErrors) {
  Generator g(7);
  Tensor l = from_vector({0.1, 0.2, 0.3}, {3});
  auto msg = [&](SamplingOptions o, const Tensor& x) {
    try {
      nn::sample_token(x, o, g);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  SamplingOptions o;
  o.temperature = -0.5;
  EXPECT_NE(msg(o, l).find("temperature"), std::string::npos);
  o = {};
  o.temperature = NAN;
  EXPECT_NE(msg(o, l).find("temperature"), std::string::npos);
  o = {};
  o.top_p = 0;
  EXPECT_NE(msg(o, l).find("top_p must be in (0, 1]"), std::string::npos);
  o.top_p = 1.5;
  EXPECT_NE(msg(o, l).find("top_p must be in (0, 1]"), std::string::npos);
  o = {};
  o.top_k = -1;
  EXPECT_NE(msg(o, l).find("top_k"), std::string::npos);
  o = {};
  EXPECT_NE(msg(o, from_vector({0.1, NAN, 0.3}, {3})).find("token 1"), std::string::npos);
  EXPECT_NE(msg(o, from_vector({-INFINITY, -INFINITY}, {2})).find("-inf"), std::string::npos);
  EXPECT_NE(msg(o, zeros({2, 3})).find("1-d"), std::string::npos);
  EXPECT_THROW(nn::sample_tokens(l, o, g), Error);
}

}  // namespace
}  // namespace qs
