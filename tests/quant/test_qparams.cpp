// QParams and the shared rounding helper (src/kernels/quant_math.h).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/quant_math.h"
#include "qiusuo/quant/qparams.h"
#include "test_util.h"

namespace qs::quant {
namespace {

TEST(QuantMath, RoundsHalfToEvenThenSaturates) {
  EXPECT_EQ(quantize_value(2.5f, 1.0f, 0, -128, 127), 2);
  EXPECT_EQ(quantize_value(3.5f, 1.0f, 0, -128, 127), 4);
  EXPECT_EQ(quantize_value(-2.5f, 1.0f, 0, -128, 127), -2);
  EXPECT_EQ(quantize_value(0.5f, 1.0f, 10, 0, 255), 10);
  EXPECT_EQ(quantize_value(1000.0f, 1.0f, 0, -128, 127), 127);
  EXPECT_EQ(quantize_value(-1e30f, 1.0f, 0, -128, 127), -128);
  EXPECT_EQ(quantize_value(std::numeric_limits<float>::infinity(), 1.0f, 3, 0, 255), 255);
  EXPECT_EQ(quantize_value(std::nanf(""), 1.0f, 3, 0, 255), 3);
  EXPECT_EQ(quantize_value(0.3f, inv_scale(0.1f), 0, -128, 127), 3);
  EXPECT_FLOAT_EQ(dequantize_value(13, 0.5f, 3), 5.0f);
  // acc 10 * 0.25 + 1 = 3.5, relu keeps it, / 0.5 = 7 (+ zp 1) = 8
  EXPECT_EQ(requantize(10, 0.25f, 1.0f, true, inv_scale(0.5f), 1, 0, 255), 8);
  EXPECT_EQ(requantize(-10, 0.25f, 0.0f, true, inv_scale(0.5f), 1, 0, 255), 1);  // relu -> zp
  EXPECT_FLOAT_EQ(dequantize_acc(-10, 0.25f, 0.5f, false), -2.0f);
}

TEST(QParams, RangesAndValidation) {
  QParams p;
  p.scale = {0.1f}, p.zero_point = {0};
  EXPECT_EQ(p.qmin(), -128);
  EXPECT_EQ(p.qmax(), 127);
  EXPECT_TRUE(p.symmetric());
  p.validate();
  p.dtype = QDtype::u8, p.quant_min = 0, p.quant_max = 127;
  EXPECT_EQ(p.qmax(), 127);
  EXPECT_FALSE(p.symmetric());
  p.dtype = QDtype::s4, p.quant_min = p.quant_max = 0;
  EXPECT_EQ(p.qmin(), -8);
  EXPECT_EQ(p.qmax(), 7);
  EXPECT_EQ(parse_qdtype(qdtype_name(QDtype::u8)), QDtype::u8);
  EXPECT_NE(testing::error_of([] { parse_qdtype("s16"); }).find("s16"), std::string::npos);
  QParams bad;
  bad.scale = {0.0f}, bad.zero_point = {0};
  EXPECT_NE(testing::error_of([&] { bad.validate(); }).find("scale[0]"), std::string::npos);
  bad.scale = {1.0f}, bad.zero_point = {300};
  EXPECT_NE(testing::error_of([&] { bad.validate(); }).find("zero_point[0]"), std::string::npos);
  bad.scale = {1.0f, 2.0f}, bad.zero_point = {0};
  EXPECT_NE(testing::error_of([&] { bad.validate(); }).find("2 scales but 1"), std::string::npos);
}

}  // namespace
}  // namespace qs::quant
