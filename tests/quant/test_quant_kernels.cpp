// Integer quantisation kernels: hand-computed cases, every kernel (reference and
// optimised) on them, int4 packing, weight preparation, agreement with float math on
// dequantised values, and clear errors on bad input. The op-table harness
// (`qiusuo check --op qlinear` ...) compares reference and optimised bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/dnnl_util.h"
#include "kernels/cpu/lut_u8.h"
#include "kernels/cpu/transpose_u8.h"
#include "kernels/quant_epilogue.h"
#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/quant/int8.h"
#include "test_util.h"

namespace qs::quant {
namespace {

// The INT8 convolution's layout changes: 16x16 SSE2 blocks and the ragged edges, with
// padded strides and the wrapping add that moves s8 into u8.
TEST(QuantKernels, ByteTransposeMatchesThePlainLoop) {
  std::mt19937 g(3);
  for (int t = 0; t < 200; ++t) {
    const int64_t R = 1 + int64_t(g() % 70), C = 1 + int64_t(g() % 70), xs = C + int64_t(g() % 5), ys = R + int64_t(g() % 5);
    const auto add = uint8_t(g());
    std::vector<uint8_t> x(size_t(R * xs)), y(size_t(C * ys), 7), want(size_t(C * ys), 7);
    for (auto& v : x) v = uint8_t(g());
    kernels::transpose_u8(x.data(), R, C, xs, y.data(), ys, add);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) want[size_t(c * ys + r)] = uint8_t(x[size_t(r * xs + c)] + add);
    ASSERT_EQ(y, want) << R << "x" << C << " strides " << xs << ", " << ys;
  }
}

// qconv's chained-input requantisation table (lut_u8.h): every code 0-255, in blocks with and
// without bit 7, ragged tails, in place and not, against the plain lookup.
TEST(QuantKernels, ByteTableLookupMatchesThePlainLoop) {
  std::mt19937 g(4);
  for (int t = 0; t < 200; ++t) {
    uint8_t lut[256];
    for (auto& v : lut) v = uint8_t(g());
    const int64_t n = int64_t(g() % 300);
    const bool low = t % 2 == 0;  // half the arrays 7-bit codes only (the skipped upper sub-tables)
    std::vector<uint8_t> x(static_cast<size_t>(n)), want(static_cast<size_t>(n));
    for (auto& v : x) v = uint8_t(low ? g() % 128 : g());
    for (int64_t i = 0; i < n; ++i) want[size_t(i)] = lut[x[size_t(i)]];
    std::vector<uint8_t> y(static_cast<size_t>(n), 7);
    kernels::lut_u8(x.data(), n, lut, y.data());
    ASSERT_EQ(y, want) << "n = " << n;
    kernels::lut_u8(x.data(), n, lut, x.data());
    ASSERT_EQ(x, want) << "in place, n = " << n;
  }
  uint8_t lut[256], x[256], y[256];
  for (int i = 0; i < 256; ++i) lut[i] = uint8_t(255 - 3 * i), x[i] = uint8_t(i);
  kernels::lut_u8(x, 256, lut, y);
  for (int i = 0; i < 256; ++i) ASSERT_EQ(y[i], lut[i]) << "code " << i;
}

using testing::error_of;

QParams per_tensor(QDtype dt, float scale, int32_t zp) {
  QParams p;
  p.dtype = dt;
  p.scale = {scale};
  p.zero_point = {zp};
  return p;
}

// Runs op on every kernel it has (reference first, then each optimised one).
std::vector<std::vector<double>> every_kernel(ops::OpKind op, const std::vector<Tensor>& in, const Attrs& a) {
  std::vector<std::string> names = {"ref"};
  for (auto& k : ops::op_def(op).optimised) names.push_back(k.name);
  std::vector<std::vector<double>> outs;
  for (auto& name : names) {
    ops::OpCall call{op, in, a, {}};
    for (auto& s : ops::run_meta(call)) call.out.push_back(ops::empty_output(s));
    ops::run_kernel(call, name);
    outs.push_back(call.out[0].to_vector());
  }
  return outs;
}

Attrs qlinear_attrs(double x_scale, int64_t x_zp) {
  return Attrs().set("x_scale", x_scale).set("x_zp", x_zp).set("out", std::string("f32")).set("relu", false);
}

TEST(Quantize, HandComputedPerTensorAndPerChannel) {
  Tensor x = from_vector({-1.0, 0.0, 0.25, 0.3, 1000.0, -0.35}, {6});
  EXPECT_EQ(quantize(x, per_tensor(QDtype::s8, 0.1f, 0)).to_vector(),
            (std::vector<double>{-10, 0, 2, 3, 127, -4}));  // 2.5 -> 2, -3.5 -> -4 (half to even)
  EXPECT_EQ(quantize(x, per_tensor(QDtype::u8, 0.1f, 100)).to_vector(),
            (std::vector<double>{90, 100, 102, 103, 255, 96}));
  QParams pc;
  pc.dtype = QDtype::u8, pc.axis = 1, pc.scale = {1.0f, 0.5f}, pc.zero_point = {10, 0};
  Tensor x2 = from_vector({1.0, 1.0, -20.0, 3.25}, {2, 2});
  EXPECT_EQ(quantize(x2, pc).to_vector(), (std::vector<double>{11, 2, 0, 6}));  // 6.5 -> 6
  Tensor q = from_vector({0, 128, 255}, {3}, DType::u8);
  EXPECT_EQ(dequantize(q, per_tensor(QDtype::u8, 0.5f, 128)).to_vector(), (std::vector<double>{-64, 0, 63.5}));
  Tensor xs = from_vector({0.3, -0.26, 7.0}, {3});
  QParams s4 = per_tensor(QDtype::s4, 0.1f, 0);
  EXPECT_EQ(quantize(xs, s4).to_vector(), (std::vector<double>{3, -3, 7}));
  EXPECT_EQ(quantize(xs, s4).dtype(), DType::i8);
}

TEST(QLinear, HandComputed2x3OnEveryKernel) {
  Tensor x = from_vector({130, 128, 126, 0, 255, 128}, {2, 3}, DType::u8);
  Tensor w = from_vector({1, 2, 3, -1, 0, 4}, {2, 3}, DType::i8);
  Tensor ws = from_vector({0.25, 0.5}, {2}), b = from_vector({1, -1}, {2});
  // acc = [[-4, -10], [126, 128]]; y = acc * (0.5 * w_scale) + b
  for (auto& y : every_kernel(ops::OpKind::qlinear, {x, w, ws, b}, qlinear_attrs(0.5, 128)))
    EXPECT_EQ(y, (std::vector<double>{0.5, -3.5, 16.75, 31.0}));
  // requantised u8 with relu: [[0.5, 0], [16.75, 31]] / 0.5 + 10 = [[11, 10], [44 (33.5 -> 34), 72]]
  Attrs a = qlinear_attrs(0.5, 128).set("out", std::string("u8")).set("out_scale", 0.5).set("out_zp", int64_t(10));
  a.set("out_qmin", int64_t(0)).set("out_qmax", int64_t(255)).set("relu", true);
  for (auto& y : every_kernel(ops::OpKind::qlinear, {x, w, ws, b}, a)) EXPECT_EQ(y, (std::vector<double>{11, 10, 44, 72}));
  QOutput o;
  o.relu = true;
  o.out = per_tensor(QDtype::u8, 0.5f, 10);
  Tensor y = qlinear(x, per_tensor(QDtype::u8, 0.5f, 128), w, ws, b, o);
  EXPECT_EQ(y.dtype(), DType::u8);
  EXPECT_EQ(y.to_vector(), (std::vector<double>{11, 10, 44, 72}));
}

TEST(QLinear, FullRangeActivationsAreExact) {
  // u8 over [0, 255] against s8 over [-128, 127]: oneDNN's one-pass AVX2 kernel would
  // saturate here; the split keeps the sums exact.
  Generator g(7);
  Tensor x = randint(0, 256, {19, 300}, DType::u8, &g);
  x.select(0, 0).fill_(255);
  Tensor w = randint(-128, 128, {40, 300}, DType::i8, &g);
  w.select(0, 0).fill_(-128);
  Tensor ws = uniform({40}, 0.001, 0.01, DType::f32, &g);
  auto outs = every_kernel(ops::OpKind::qlinear, {x, w, ws, Tensor()}, qlinear_attrs(0.02, 0));
  ASSERT_GE(outs.size(), 1u);
  for (size_t k = 1; k < outs.size(); ++k) EXPECT_EQ(outs[k], outs[0]);
  // acc of row 0, column 0 is 255 * -128 * 300
  const float acc_scale = 0.02f * float(ws.to_vector()[0]);
  EXPECT_EQ(float(outs[0][0]), float(-255 * 128 * 300) * acc_scale);
}

TEST(QConv, MatchesFloatConvolutionOfDequantisedValues) {
  Generator g(3);
  for (int nsp : {2, 3}) {
    Shape xs = nsp == 2 ? Shape{2, 4, 7, 6} : Shape{1, 4, 5, 4, 5}, wsh = nsp == 2 ? Shape{6, 2, 3, 3} : Shape{6, 2, 3, 3, 3};
    Tensor xq = randint(0, 256, xs, DType::u8, &g), wq = randint(-127, 128, wsh, DType::i8, &g);
    Tensor ws = uniform({6}, 0.002, 0.01, DType::f32, &g), b = uniform({6}, -1, 1, DType::f32, &g);
    QParams xp = per_tensor(QDtype::u8, 0.03f, 120);
    QConvOptions opt;
    opt.padding = 1, opt.stride = 2, opt.groups = 2;
    Tensor y = qconv(xq, xp, wq, ws, b, opt);
    QParams wp;
    wp.axis = 0, wp.scale = std::vector<float>(6), wp.zero_point = std::vector<int32_t>(6, 0);
    for (int i = 0; i < 6; ++i) wp.scale[size_t(i)] = float(ws.to_vector()[size_t(i)]);
    Tensor xf = dequantize(xq, xp), wf = dequantize(wq, wp);
    Tensor want = nsp == 2 ? conv2d(xf, wf, b, 2, 1, 1, 2) : conv3d(xf, wf, b, 2, 1, 1, 2);
    auto got = y.to_vector(), ref = want.to_vector();
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-4 * (1 + std::abs(ref[i]))) << i;
  }
}

// A convolution of one input channel into a channels-last u8 output (the CNN's first layer)
// takes the avx512-vnni-c1 kernel exactly where oneDNN runs AVX-512 VNNI (CI's
// ONEDNN_MAX_CPU_ISA=AVX2 pass takes onednn-int8), with the reference's bits either way.
TEST(QConv, OneInputChannelTakesTheVnniKernelWhereItExists) {
  Generator g(9);
  Tensor xq = randint(0, 256, {3, 1, 13, 10}, DType::u8, &g), wq = randint(-128, 128, {32, 1, 3, 3}, DType::i8, &g);
  Tensor ws = uniform({32}, 0.002, 0.01, DType::f32, &g), b = uniform({32}, -1, 1, DType::f32, &g);
  QConvOptions opt;
  opt.padding = 1, opt.channels_last_out = true;
  QOutput o;
  o.relu = true, o.out = per_tensor(QDtype::u8, 0.05f, 0);
  Tensor y;
  {
    ops::KernelLog log;
    y = qconv(xq, per_tensor(QDtype::u8, 0.03f, 77), wq, ws, b, opt, o);
    ASSERT_EQ(log.entries().size(), 1u);
    EXPECT_EQ(log.entries()[0].kernel,
              backend::avx512() && backend::exact_u8s8() ? "avx512-vnni-c1" : "onednn-int8");
  }
  Tensor want;
  {
    ops::ReferenceKernels only_ref;
    want = qconv(xq, per_tensor(QDtype::u8, 0.03f, 77), wq, ws, b, opt, o);
  }
  EXPECT_EQ(y.to_vector(), want.to_vector());
}

TEST(Int4, PackUnpackRoundTripAndLayout) {
  EXPECT_EQ(pack_int4(from_vector({1, -1, 7}, {3}, DType::i8)).to_vector(), (std::vector<double>{0xF1, 0x07}));
  Generator g(5);
  Tensor q = randint(-8, 8, {5, 7}, DType::i8, &g);
  Tensor p = pack_int4(q);
  EXPECT_EQ(p.shape(), (Shape{5, 4}));
  EXPECT_EQ(unpack_int4(p, 7).to_vector(), q.to_vector());
  EXPECT_NE(error_of([&] { pack_int4(from_vector({8}, {1}, DType::i8)); }).find("[-8, 7]"), std::string::npos);
  EXPECT_NE(error_of([&] { unpack_int4(p, 9); }).find("9 elements"), std::string::npos);
}

TEST(WeightPrep, PerChannelAndInt4GroupsStayWithinHalfAStep) {
  Generator g(11);
  Tensor w = randn({9, 64}, DType::f32, &g);
  auto [q, s] = quantize_weight_per_channel(w);
  EXPECT_EQ(q.dtype(), DType::i8);
  auto wv = w.to_vector(), qv = q.to_vector(), sv = s.to_vector();
  for (int64_t n = 0; n < 9; ++n) {
    double amax = 0;
    for (int64_t k = 0; k < 64; ++k) amax = std::max(amax, std::abs(wv[size_t(n * 64 + k)]));
    EXPECT_FLOAT_EQ(float(sv[size_t(n)]), float(amax) / 127.0f);
    for (int64_t k = 0; k < 64; ++k) {
      EXPECT_LE(std::abs(qv[size_t(n * 64 + k)]), 127);
      EXPECT_LE(std::abs(qv[size_t(n * 64 + k)] * sv[size_t(n)] - wv[size_t(n * 64 + k)]), sv[size_t(n)] * 0.5001);
    }
  }
  for (int64_t group : {32, 128}) {
    Tensor w2 = randn({5, 256}, DType::f32, &g);
    auto [p4, s4] = quantize_weight_int4_groups(w2, group);
    EXPECT_EQ(p4.shape(), (Shape{5, 128}));
    EXPECT_EQ(s4.shape(), (Shape{5, 256 / group}));
    auto q4 = unpack_int4(p4, 256).to_vector(), s4v = s4.to_vector(), w2v = w2.to_vector();
    for (int64_t n = 0; n < 5; ++n)
      for (int64_t k = 0; k < 256; ++k) {
        double sc = s4v[size_t(n * (256 / group) + k / group)];
        EXPECT_LE(std::abs(q4[size_t(n * 256 + k)] * sc - w2v[size_t(n * 256 + k)]), sc * 0.5001);
      }
  }
  Tensor conv_w = randn({4, 3, 3, 3}, DType::f32, &g);
  EXPECT_EQ(quantize_weight_per_channel(conv_w).scale.shape(), (Shape{4}));
}

TEST(DynamicLinear, EqualsFloatLinearOfDequantisedRows) {
  Generator g(13);
  Tensor x = uniform({5, 64}, -2, 3, DType::f32, &g);
  Tensor w = randn({17, 64}, DType::f32, &g), b = uniform({17}, -1, 1, DType::f32, &g);
  auto [wq, ws] = quantize_weight_per_channel(w);
  QParams wp;
  wp.axis = 0, wp.zero_point.assign(17, 0);
  for (double v : ws.to_vector()) wp.scale.push_back(float(v));
  Tensor wf = dequantize(wq, wp);
  for (bool rr : {false, true}) {
    Tensor y = dynamic_linear(x, wq, ws, b, "token", rr);
    // The same per-row parameters, applied by quantize/dequantize, then a float linear.
    std::vector<Tensor> rows;
    for (int64_t m = 0; m < 5; ++m) {
      Tensor r = x.select(0, m);
      auto v = r.to_vector();
      auto p = dynamic_qparams(float(*std::min_element(v.begin(), v.end())), float(*std::max_element(v.begin(), v.end())),
                               rr ? 127 : 255);
      QParams xp = per_tensor(QDtype::u8, p.scale, p.zp);
      xp.quant_min = 0, xp.quant_max = rr ? 127 : 255;
      rows.push_back(dequantize(quantize(r, xp), xp).unsqueeze(0));
    }
    Tensor want = linear(cat(rows, 0), wf, b);
    auto got = y.to_vector(), ref = want.to_vector(), plain = linear(x, wf, b).to_vector();
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], ref[i], 1e-4 * (1 + std::abs(ref[i])));
      EXPECT_NEAR(got[i], plain[i], rr ? 0.3 : 0.15);  // activation rounding only
    }
  }
  Tensor yt = dynamic_linear(x, wq, ws, b, "tensor", false);
  EXPECT_EQ(yt.shape(), (Shape{5, 17}));
}

TEST(WeightOnlyLinear, EqualsFloatLinearOfDequantisedWeights) {
  Generator g(17);
  Tensor x = uniform({3, 256}, -1, 1, DType::f32, &g);
  Tensor w = randn({33, 256}, DType::f32, &g), b = uniform({33}, -1, 1, DType::f32, &g);
  auto [q8, s8] = quantize_weight_per_channel(w);
  Tensor w8 = q8.to(DType::f32) * s8.unsqueeze(1);
  auto check = [&](const Tensor& got, const Tensor& want) {
    auto a = got.to_vector(), r = want.to_vector();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], r[i], 1e-4 * (1 + std::abs(r[i])));
  };
  check(woq_linear(x, q8, s8, b, 8), linear(x, w8, b));
  for (int64_t group : {32, 128}) {
    auto [p4, s4] = quantize_weight_int4_groups(w, group);
    Tensor scale_full = s4.unsqueeze(2).expand({33, 256 / group, group}).reshape({33, 256});
    Tensor w4 = unpack_int4(p4, 256).to(DType::f32) * scale_full;
    check(woq_linear(x, p4, s4, b, 4, group), linear(x, w4, b));
    check(woq_linear(x.select(0, 1), p4, s4, Tensor(), 4, group), linear(x.select(0, 1).unsqueeze(0), w4, Tensor()).squeeze(0));
  }
}

TEST(PackedWeights, InPlaceRewriteIsSeen) {
  Generator g(19);
  Tensor x = randint(0, 128, {4, 64}, DType::u8, &g);
  Tensor w = randint(-127, 128, {8, 64}, DType::i8, &g), ws = full({8}, 0.01);
  QParams xp = per_tensor(QDtype::u8, 0.1f, 0);
  Tensor y1 = qlinear(x, xp, w, ws, Tensor());
  w.copy_(neg(w.to(DType::f32)).to(DType::i8));  // in place, same storage
  Tensor y2 = qlinear(x, xp, w, ws, Tensor());
  auto a = y1.to_vector(), b = y2.to_vector();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(float(a[i]), -float(b[i]));
  clear_packed_weights();
  EXPECT_EQ(qlinear(x, xp, w, ws, Tensor()).to_vector(), b);
}

TEST(QuantErrors, SayWhatWasExpected) {
  Tensor xq = zeros({2, 3}, DType::u8), wq = zeros({4, 3}, DType::i8), ws = ones({4});
  QParams xp = per_tensor(QDtype::u8, 0.1f, 0);
  EXPECT_NE(error_of([&] { qlinear(zeros({2, 3}), xp, wq, ws, Tensor()); }).find("xq is f32"), std::string::npos);
  EXPECT_NE(error_of([&] { qlinear(xq, xp, zeros({4, 5}, DType::i8), ws, Tensor()); }).find("qlinear: expected xq"),
            std::string::npos);
  EXPECT_NE(error_of([&] { qlinear(xq, xp, wq, ones({5}), Tensor()); }).find("w_scale must be f32 [4]"), std::string::npos);
  EXPECT_NE(error_of([&] { qlinear(xq, xp, wq.to(DType::u8), ws, Tensor()); }).find("weights must be i8"),
            std::string::npos);
  EXPECT_NE(error_of([&] { qlinear(xq, per_tensor(QDtype::u8, 0.1f, 300), wq, ws, Tensor()); }).find("zero_point[0] = 300"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ops::dispatch1(ops::OpKind::qlinear, {xq, wq, ws, Tensor()}, qlinear_attrs(0.1, 256)); })
                .find("x_zp 256"), std::string::npos);
  EXPECT_NE(error_of([&] { qlinear(xq, xp, wq, ws, ones({3})); }).find("bias must be f32 [4]"), std::string::npos);
  QParams pc;
  pc.axis = 1, pc.scale = {0.1f, 0.1f}, pc.zero_point = {0, 0};
  EXPECT_NE(error_of([&] { quantize(zeros({2, 3}), pc); }).find("expected 3 scales"), std::string::npos);
  pc.axis = 2;
  EXPECT_NE(error_of([&] { quantize(zeros({2, 3}), pc); }).find("axis 2 for a tensor of rank 2"), std::string::npos);
  EXPECT_NE(error_of([&] { quantize(zeros({2}, DType::i32), xp); }).find("x must be f32 or f64"), std::string::npos);
  EXPECT_NE(error_of([&] { dequantize(zeros({2}, DType::i8), xp); }).find("q is i8 but its parameters say u8"),
            std::string::npos);
  EXPECT_NE(error_of([&] { qconv(zeros({1, 3, 4, 4}, DType::u8), xp, zeros({2, 2, 3, 3}, DType::i8), ones({2}), Tensor()); })
                .find("channels"), std::string::npos);
  EXPECT_NE(error_of([&] { woq_linear(zeros({1, 64}), zeros({4, 32}, DType::u8), ones({4, 3}), Tensor(), 4, 24); })
                .find("group_size 24"), std::string::npos);
  EXPECT_NE(error_of([&] { dynamic_linear(zeros({2, 3}), wq, ws, Tensor(), "row"); }).find("granularity 'row'"),
            std::string::npos);
}

}  // namespace
}  // namespace qs::quant
