// Positional encodings against their papers' formulas: sinusoidal values, RoPE's
// relative-position property, NTK-aware and YaRN frequencies, names and limits.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "qiusuo/nn/positional.h"
#include "qiusuo/ops.h"

namespace qs::nn {
namespace {

TEST(Positional, NamesRoundTripAndUnknownNamesAreErrors) {
  // The names are a file format (checkpoints store them) and the order is the experiment's.
  const std::vector<std::string> names = {"none", "sinusoidal", "learned", "shaw", "t5", "rope", "alibi"};
  EXPECT_EQ(position_encoding_names(), names);
  for (const std::string& n : names) EXPECT_EQ(position_encoding_name(parse_position_encoding(n)), n);
  for (const char* n : {"none", "ntk", "yarn"}) EXPECT_EQ(rope_scaling_name(parse_rope_scaling(n)), n);
  try {
    parse_position_encoding("rotary");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown position encoding 'rotary'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("alibi"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_rope_scaling("linear"), Error);
}

TEST(Positional, SinusoidalMatchesVaswani) {
  const int64_t d = 8;
  auto pe = sinusoidal_table(5, 3, d, DType::f64).to_vector();  // positions 5, 6, 7
  for (int64_t p = 0; p < 3; ++p)
    for (int64_t i = 0; i < d / 2; ++i) {
      double angle = double(5 + p) / std::pow(10000.0, 2.0 * double(i) / double(d));
      EXPECT_NEAR(pe[size_t(p * d + 2 * i)], std::sin(angle), 1e-12);
      EXPECT_NEAR(pe[size_t(p * d + 2 * i + 1)], std::cos(angle), 1e-12);
    }
  EXPECT_NEAR(sinusoidal_table(0, 1, 4).to_vector()[1], 1.0, 1e-7);  // cos(0)
}

// Su et al.: <R(p) q, R(p') k> depends on p - p' only.
TEST(Positional, RopeDotProductDependsOnRelativePositionOnly) {
  PositionConfig cfg;
  for (RopeScaling s : {RopeScaling::none, RopeScaling::ntk, RopeScaling::yarn}) {
    cfg.rope_scaling = s;
    cfg.rope_factor = s == RopeScaling::none ? 1.0 : 4.0;
    cfg.max_len = 64;
    RotaryEmbedding rot(16, cfg);
    Generator g(7);
    Tensor q = randn({1, 16}, DType::f64, &g), k = randn({1, 16}, DType::f64, &g);
    auto dot = [&](int64_t p, int64_t pk) { return sum(rot.apply(q, p) * rot.apply(k, pk)).item(); };
    for (auto [p, pk] : {std::pair<int64_t, int64_t>{3, 1}, {10, 10}, {2, 9}}) {
      double base = dot(p, pk);
      for (int64_t shift : {1, 17, 250}) EXPECT_NEAR(dot(p + shift, pk + shift), base, 1e-10) << p << " " << pk;
    }
    EXPECT_GT(std::abs(dot(3, 1) - dot(3, 2)), 1e-6);  // and it does depend on it
  }
}

TEST(Positional, RopeRotatesPairsByPositionTimesFrequency) {
  PositionConfig cfg;
  cfg.rope_base = 500.0;
  RotaryEmbedding rot(4, cfg);
  Tensor x = from_vector({1, 2, 3, 4}, {1, 4}, DType::f64);
  auto y = rot.apply(x, 5).to_vector();
  for (int i = 0; i < 2; ++i) {
    double a = 5.0 * std::pow(500.0, -2.0 * i / 4.0), x1 = 1.0 + i, x2 = 3.0 + i;
    EXPECT_NEAR(y[size_t(i)], x1 * std::cos(a) - x2 * std::sin(a), 1e-12);
    EXPECT_NEAR(y[size_t(i + 2)], x1 * std::sin(a) + x2 * std::cos(a), 1e-12);
  }
}

TEST(Positional, NtkAwareBase) {
  PositionConfig cfg;
  cfg.rope_scaling = RopeScaling::ntk;
  cfg.rope_factor = 8.0;
  const int64_t d = 32;
  auto inv = rope_inv_freq(d, cfg);
  const double base = 10000.0 * std::pow(8.0, 32.0 / 30.0);
  for (int64_t i = 0; i < d / 2; ++i) EXPECT_NEAR(inv[size_t(i)], std::pow(base, -2.0 * i / d), 1e-15);
  // NTK's point: the highest frequency is kept, the lowest interpolated by exactly s.
  cfg.rope_scaling = RopeScaling::none;
  auto plain = rope_inv_freq(d, cfg);
  EXPECT_DOUBLE_EQ(inv[0], 1.0);
  EXPECT_NEAR(inv.back(), plain.back() / 8.0, 1e-15);
}

TEST(Positional, YarnRampAndTemperature) {
  PositionConfig cfg;
  cfg.rope_scaling = RopeScaling::yarn;
  cfg.rope_factor = 4.0;
  cfg.max_len = 2048;
  const int64_t d = 64;
  auto inv = rope_inv_freq(d, cfg);
  // Peng et al.: dim i has wavelength 2 pi base^(2i/d); it makes r = L / wavelength rotations
  // over the original length. r > beta_fast: keep (extrapolate); r < beta_slow: divide by s.
  auto dim_of = [&](double rot) { return d * std::log(2048.0 / (rot * 2 * std::numbers::pi)) / (2 * std::log(1e4)); };
  const double low = std::floor(dim_of(32.0)), high = std::ceil(dim_of(1.0));
  EXPECT_EQ(low, 8.0);
  EXPECT_EQ(high, 21.0);
  for (int64_t i = 0; i < d / 2; ++i) {
    double theta = std::pow(1e4, -2.0 * i / d);
    double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    EXPECT_NEAR(inv[size_t(i)], theta * (1 - ramp) + theta / 4.0 * ramp, 1e-15) << i;
    if (i <= low) {
      EXPECT_DOUBLE_EQ(inv[size_t(i)], theta);
    }
    if (i >= high) {
      EXPECT_NEAR(inv[size_t(i)], theta / 4.0, 1e-18);
    }
  }
  EXPECT_NEAR(yarn_mscale(cfg), 0.1 * std::log(4.0) + 1.0, 1e-15);
  RotaryEmbedding rot(d, cfg);
  EXPECT_NEAR(rot.logit_scale(), std::pow(0.1 * std::log(4.0) + 1.0, 2), 1e-15);
  cfg.rope_scaling = RopeScaling::ntk;
  EXPECT_EQ(yarn_mscale(cfg), 1.0);
}

TEST(Positional, SupportedLengthsAndValidation) {
  PositionConfig cfg;
  cfg.max_len = 100;
  EXPECT_EQ(cfg.max_supported_length(), 100);  // plain rope
  cfg.rope_scaling = RopeScaling::yarn;
  cfg.rope_factor = 2.5;
  EXPECT_EQ(cfg.max_supported_length(), 250);
  cfg.kind = PositionEncoding::learned;
  EXPECT_EQ(cfg.max_supported_length(), 100);
  for (auto k : {PositionEncoding::none, PositionEncoding::sinusoidal, PositionEncoding::alibi, PositionEncoding::t5,
                 PositionEncoding::shaw}) {
    cfg.kind = k;
    EXPECT_EQ(cfg.max_supported_length(), std::numeric_limits<int64_t>::max());
  }
  cfg.kind = PositionEncoding::rope;
  cfg.rope_factor = 0.5;
  EXPECT_THROW(cfg.validate(), Error);
  EXPECT_THROW(RotaryEmbedding(7, PositionConfig{}), Error);  // odd rotary dim
}

}  // namespace
}  // namespace qs::nn
