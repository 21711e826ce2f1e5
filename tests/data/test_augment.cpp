// data::random_hflip: each sample mirrored or kept whole, by coins drawn from the seed.
#include <gtest/gtest.h>

#include "qiusuo/data/augment.h"
#include "test_util.h"

using namespace qs;

TEST(Augment, RandomHflipMirrorsWholeSamplesBySeed) {
  const int64_t N = 64, C = 2, H = 3, W = 5;
  Tensor x = arange(0, double(N * C * H * W)).reshape({N, C, H, W});
  Tensor y = data::random_hflip(x, 42);
  ASSERT_EQ(y.shape(), x.shape());
  auto in = x.to_vector(), out = y.to_vector();
  int flipped = 0;
  for (int64_t n = 0; n < N; ++n) {
    bool same = true, mirrored = true;
    for (int64_t r = 0; r < C * H; ++r)
      for (int64_t w = 0; w < W; ++w) {
        const size_t base = size_t((n * C * H + r) * W);
        same = same && out[base + size_t(w)] == in[base + size_t(w)];
        mirrored = mirrored && out[base + size_t(w)] == in[base + size_t(W - 1 - w)];
      }
    EXPECT_TRUE(same != mirrored) << "sample " << n << " must be kept or mirrored as a whole";
    flipped += mirrored;
  }
  EXPECT_GT(flipped, 16);  // about half of 64
  EXPECT_LT(flipped, 48);
  EXPECT_EQ(data::random_hflip(x, 42).to_vector(), out);   // the same seed, the same coins
  EXPECT_NE(data::random_hflip(x, 43).to_vector(), out);   // another seed, other coins
  EXPECT_EQ(x.to_vector(), in);                            // the input is not written
}

TEST(Augment, RandomHflipRefusesWhatIsNotAnImageBatch) {
  EXPECT_NE(qs::testing::error_of([] { data::random_hflip(zeros({4, 5}), 1); }).find("[N, C, H, W]"), std::string::npos);
  EXPECT_NE(qs::testing::error_of([] { data::random_hflip(zeros({1, 1, 2, 2}, DType::i64), 1); }).find("f32 or f64"),
            std::string::npos);
}
