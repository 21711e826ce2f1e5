// Hand-checked values for convolution, pooling and batch normalisation, and the errors
// they raise on bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#ifdef QS_WITH_OPTIMISED
#include "backend/dnnl_util.h"
#include "kernels/cpu/dnnl_layout.h"
#endif

namespace qs {
namespace {

void expect_values(const Tensor& t, const std::vector<double>& want, double tol = 1e-5) {
  auto got = t.contiguous().to_vector();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

// x = 0..15 as one 4x4 image.
Tensor image4() { return arange(0, 16).reshape({1, 1, 4, 4}); }

TEST(Conv, OnesKernelSumsNeighbourhoods) {
  Tensor y = conv2d(image4(), ones({1, 1, 3, 3}), full({1}, 0.5), 1, 1);
  ASSERT_EQ(y.shape(), (Shape{1, 1, 4, 4}));
  // (0,0): 0+1+4+5; (1,1): 0+1+2+4+5+6+8+9+10; (3,3): 10+11+14+15; plus the bias.
  auto v = y.to_vector();
  EXPECT_NEAR(v[0], 10.5, 1e-5);
  EXPECT_NEAR(v[5], 45.5, 1e-5);
  EXPECT_NEAR(v[15], 50.5, 1e-5);
  Tensor valid = conv2d(image4(), ones({1, 1, 3, 3}));  // no padding: 2x2
  expect_values(valid, {45, 54, 81, 90});
}

TEST(Conv, StrideDilationGroups) {
  Tensor x = from_vector({1, 2, 3, 4, 5}, {1, 1, 5});
  expect_values(conv1d(x, from_vector({1, -1}, {1, 1, 2}), Tensor(), 2), {-1, -1});
  expect_values(conv1d(x, from_vector({1, 1}, {1, 1, 2}), Tensor(), 1, 0, 2), {4, 6, 8});  // x[i] + x[i+2]
  Tensor y = conv2d(ones({1, 2, 3, 3}), from_vector({2, 3}, {2, 1, 1, 1}), Tensor(), 1, 0, 1, 2);
  expect_values(y, {2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3});
}

TEST(Conv, Conv3dMatchesSumOfSlices) {
  // A 3x3x3 ones kernel with padding 1 at the centre of a 3x3x3 ones volume sees 27 ones.
  Tensor y = conv3d(ones({1, 1, 3, 3, 3}), ones({1, 1, 3, 3, 3}), Tensor(), 1, 1);
  auto v = y.to_vector();
  EXPECT_NEAR(v[13], 27, 1e-5);
  EXPECT_NEAR(v[0], 8, 1e-5);
}

TEST(Conv, GradientCountsWindowsPerInput) {
  Tensor x = ones({1, 1, 3, 3});
  Tensor w = ones({1, 1, 3, 3});
  Tensor b = zeros({1});
  x.requires_grad_(true);
  w.requires_grad_(true);
  b.requires_grad_(true);
  sum(conv2d(x, w, b, 1, 1)).backward();
  expect_values(x.grad(), {4, 6, 4, 6, 9, 6, 4, 6, 4});
  expect_values(w.grad(), {4, 6, 4, 6, 9, 6, 4, 6, 4});  // by symmetry
  expect_values(b.grad(), {9});
}

TEST(Conv, Bf16InputsGiveF32Output) {
  Tensor x = randn({2, 3, 6, 6}), w = randn({4, 3, 3, 3});
  Tensor want = conv2d(x.to(DType::bf16).to(DType::f32), w.to(DType::bf16).to(DType::f32), Tensor(), 1, 1);
  Tensor got = conv2d(x.to(DType::bf16), w.to(DType::bf16), Tensor(), 1, 1);
  EXPECT_EQ(got.dtype(), DType::f32);
  expect_values(got, want.to_vector(), 1e-4);
}

TEST(Conv, BadInputsRaise) {
  EXPECT_THROW(conv2d(ones({1, 3, 5, 5}), ones({4, 2, 3, 3})), Error);  // channel mismatch
  EXPECT_THROW(conv2d(ones({1, 1, 2, 2}), ones({1, 1, 5, 5}), Tensor(), 1, 1), Error);  // 5 > 2 + 2
  EXPECT_THROW(conv2d(ones({1, 4, 5, 5}), ones({3, 2, 3, 3}), Tensor(), 1, 0, 1, 2), Error);  // 3 % 2
  EXPECT_THROW(conv2d(ones({1, 1, 5, 5}), ones({2, 1, 3, 3}), ones({3})), Error);  // bias [3] for 2 outputs
  EXPECT_THROW(conv2d(ones({1, 5, 5}), ones({1, 1, 3, 3})), Error);  // rank
  EXPECT_THROW(conv2d(ones({1, 1, 5, 5}), ones({1, 1, 3, 3}), Tensor(), {1, 1, 1}), Error);  // 3 strides for 2-D
}

TEST(Pool, MaxPoolValuesAndIndices) {
  Tensor x = from_vector({1, 5, 2, 0, 3, 4, 8, 7, 9, 0, 1, 1, 2, 6, 3, 3}, {1, 1, 4, 4});
  auto [y, idx] = max_pool2d_with_indices(x, 2);
  expect_values(y, {5, 8, 9, 3});
  expect_values(idx, {1, 6, 8, 14});  // ties keep the first maximum (14, not 15)
  EXPECT_EQ(idx.dtype(), DType::i64);
  x.requires_grad_(true);
  sum(max_pool2d(x, 2) * from_vector({1, 2, 3, 4}, {1, 1, 2, 2})).backward();
  expect_values(x.grad(), {0, 1, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0, 4, 0});
}

// The vectorised 2-wide windows (2x2, 2x2x2) against the reference on ties (values
// rounded to a few levels), NaNs, and widths that leave a partial group of 8 outputs.
TEST(Pool, MaxPoolPairsMatchReferenceOnTiesAndNaN) {
  Generator g(3);
  for (DType dt : {DType::f32, DType::bf16})  // bf16: the pair loop widens as it loads
  for (Shape xs : {Shape{2, 3, 6, 5}, Shape{1, 2, 9, 19}, Shape{2, 2, 28, 28}, Shape{1, 2, 4, 6, 33}}) {
    std::vector<double> v = rand(xs, DType::f32, &g).to_vector();
    for (double& e : v) e = std::round(e * 3.0);
    for (size_t i = 7; i < v.size(); i += 23) v[i] = std::nan("");
    Tensor x = from_vector(v, xs).to(dt);
    Attrs a = Attrs().set("kernel", Shape{2}).set("stride", Shape{2}).set("padding", Shape{0});
    auto fast = ops::dispatch(ops::OpKind::max_pool, {x}, a);
    ops::OpCall ref{ops::OpKind::max_pool, {x}, a, {empty_like(fast[0]), empty_like(fast[1])}};
    ops::op_def(ops::OpKind::max_pool).impl->ref(ref);
    auto fv = fast[0].to_vector(), rv = ref.out[0].to_vector();
    for (size_t i = 0; i < fv.size(); ++i)
      EXPECT_TRUE(fv[i] == rv[i] || (std::isnan(fv[i]) && std::isnan(rv[i]))) << shape_str(xs) << " output " << i;
    EXPECT_EQ(fast[1].to_vector(), ref.out[1].to_vector()) << shape_str(xs);
  }
}

// Padded windows (a ResNet stem's 3 x 3, stride 2, pad 1, and others): the interior runs in
// SIMD rows, the border window by window; both match the reference on ties, NaN and -inf
// (padding never wins), f32 and bf16, 2-D and 3-D.
TEST(Pool, PaddedMaxPoolInteriorAndBorderMatchReference) {
  Generator g(4);
  struct Case {
    Shape x, k, s, p;
  };
  for (DType dt : {DType::f32, DType::bf16})
    for (const Case& c : {Case{{2, 3, 17, 16}, {3}, {2}, {1}}, Case{{1, 2, 9, 33}, {3, 5}, {1, 2}, {1, 2}},
                          Case{{1, 2, 5, 6, 7}, {3}, {2}, {1}}, Case{{1, 1, 4, 4}, {3}, {1}, {1}}}) {
      std::vector<double> v = rand(c.x, DType::f32, &g).to_vector();
      for (double& e : v) e = std::round(e * 3.0);
      for (size_t i = 5; i < v.size(); i += 19) v[i] = std::nan("");
      for (size_t i = 11; i < v.size(); i += 29) v[i] = -INFINITY;
      Tensor x = from_vector(v, c.x).to(dt);
      Attrs a = Attrs().set("kernel", c.k).set("stride", c.s).set("padding", c.p);
      auto fast = ops::dispatch(ops::OpKind::max_pool, {x}, a);
      ops::OpCall ref{ops::OpKind::max_pool, {x}, a, {empty_like(fast[0]), empty_like(fast[1])}};
      ops::op_def(ops::OpKind::max_pool).impl->ref(ref);
      auto fv = fast[0].to_vector(), rv = ref.out[0].to_vector();
      for (size_t i = 0; i < fv.size(); ++i)
        EXPECT_TRUE(fv[i] == rv[i] || (std::isnan(fv[i]) && std::isnan(rv[i]))) << shape_str(c.x) << " output " << i;
      EXPECT_EQ(fast[1].to_vector(), ref.out[1].to_vector()) << shape_str(c.x);
    }
}

TEST(Pool, MaxPoolPaddingNeverWins) {
  Tensor x = full({1, 1, 2, 2}, -3.0);
  auto [y, idx] = max_pool2d_with_indices(x, 3, 1, 1);
  expect_values(y, {-3, -3, -3, -3});
  expect_values(idx, {0, 0, 0, 0});
}

TEST(Pool, AvgPoolCountIncludePad) {
  Tensor x = ones({1, 1, 3, 3});
  expect_values(avg_pool2d(x, 3, 1, 1, true), {4. / 9, 6. / 9, 4. / 9, 6. / 9, 1, 6. / 9, 4. / 9, 6. / 9, 4. / 9});
  expect_values(avg_pool2d(x, 3, 1, 1, false), {1, 1, 1, 1, 1, 1, 1, 1, 1});
  expect_values(avg_pool3d(arange(0, 8).reshape({1, 1, 2, 2, 2}), 2), {3.5});
}

TEST(Pool, AdaptiveAvgPoolWindows) {
  Tensor x = from_vector({1, 2, 3, 4, 5}, {1, 1, 5});
  expect_values(adaptive_avg_pool1d(x, 3), {1.5, 3, 4.5});  // [0,2) [1,4) [3,5)
  expect_values(adaptive_avg_pool2d(image4(), 1), {7.5});
  x.requires_grad_(true);
  sum(adaptive_avg_pool1d(x, 3)).backward();
  expect_values(x.grad(), {0.5, 0.5 + 1. / 3, 1. / 3, 1. / 3 + 0.5, 0.5});
}

TEST(Pool, BadInputsRaise) {
  EXPECT_THROW(max_pool2d(ones({1, 1, 4, 4}), 2, 2, 2), Error);  // padding > kernel / 2
  EXPECT_THROW(max_pool2d(ones({1, 1, 1, 4}), 2), Error);        // window larger than input
  EXPECT_THROW(max_pool2d(ones({1, 4, 4}), 2), Error);           // rank
}

TEST(BatchNorm, RunningStatisticsAfterTwoSteps) {
  Tensor rm = zeros({1}), rv = ones({1});
  Tensor x1 = from_vector({1, 2, 3, 4}, {2, 1, 2});  // mean 2.5, biased var 1.25, unbiased 5/3
  Tensor y1 = batch_norm(x1, rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5);
  double s = std::sqrt(1.25 + 1e-5);
  expect_values(y1, {-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s});
  expect_values(rm, {0.25});
  expect_values(rv, {0.9 + 0.1 * 5.0 / 3.0});
  Tensor x2 = from_vector({2, 4, 6, 8}, {2, 1, 2});  // mean 5, unbiased var 20 / 3
  batch_norm(x2, rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5);
  expect_values(rm, {0.9 * 0.25 + 0.5});
  expect_values(rv, {0.9 * (0.9 + 0.1 * 5.0 / 3.0) + 0.1 * 20.0 / 3.0});
  // Eval uses the running statistics, and leaves them alone.
  Tensor y = batch_norm(from_vector({1.725}, {1, 1}), rm, rv, full({1}, 2.0), full({1}, 0.5), false, 0.1, 1e-5);
  expect_values(y, {2.0 / std::sqrt(rv.item() + 1e-5) + 0.5});
  expect_values(rm, {0.725});
}

TEST(BatchNorm, GradientsOfTrainingMode) {
  // Training-mode output is invariant to shifting x, so the x gradient of sum(y) is 0
  // and the bias gradient is the count.
  Tensor x = randn({4, 3, 5}), w = ones({3}), b = zeros({3});
  x.requires_grad_(true);
  w.requires_grad_(true);
  b.requires_grad_(true);
  sum(batch_norm(x, Tensor(), Tensor(), w, b, true)).backward();
  for (double g : x.grad().to_vector()) EXPECT_NEAR(g, 0.0, 1e-5);
  expect_values(b.grad(), {20, 20, 20});
  expect_values(w.grad(), {0, 0, 0}, 1e-4);  // sum of xhat is 0
}

// batch_norm_relu is relu(batch_norm(...)): the same output, running statistics and
// gradients (x, weight, bias), on the optimised kernel (contiguous f32) and the reference
// (a transposed x).
TEST(BatchNorm, FusedReluMatchesBatchNormThenRelu) {
  Generator gen(5);
  for (bool transposed : {false, true}) {
    Tensor base = randn({6, 4, 5, 3}, DType::f32, &gen);
    Tensor x0 = transposed ? base.transpose(2, 3) : base, gy = randn(x0.shape(), DType::f32, &gen);
    std::vector<std::vector<double>> got[2];
    for (int fused = 0; fused < 2; ++fused) {
      Tensor x = x0.detach().requires_grad_(true), w = full({4}, 1.5).requires_grad_(true);
      Tensor b = from_vector({0.2, -0.3, 0.0, 0.5}, {4}).requires_grad_(true), rm = zeros({4}), rv = ones({4});
      Tensor y = fused ? batch_norm_relu(x, rm, rv, w, b, true) : relu(batch_norm(x, rm, rv, w, b, true));
      sum(y * gy).backward();
      got[fused] = {y.to_vector(), rm.to_vector(), rv.to_vector(), x.grad().to_vector(), w.grad().to_vector(),
                    b.grad().to_vector()};
    }
    for (size_t k = 0; k < got[0].size(); ++k) {
      ASSERT_EQ(got[0][k].size(), got[1][k].size());
      for (size_t i = 0; i < got[0][k].size(); ++i)
        EXPECT_NEAR(got[1][k][i], got[0][k][i], 1e-5) << "transposed " << transposed << " result " << k << " at " << i;
    }
  }
}

TEST(BatchNorm, BadInputsRaise) {
  EXPECT_THROW(batch_norm(ones({2, 3, 4}), Tensor(), Tensor(), Tensor(), Tensor(), false), Error);  // eval needs stats
  EXPECT_THROW(batch_norm(ones({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);  // 1 value per channel
  EXPECT_THROW(batch_norm(ones({2, 3, 4}), zeros({4}), ones({4}), Tensor(), Tensor(), false), Error);  // [4] for C=3
}

// Values printed by PyTorch 1.13 (torch.nn.functional.interpolate) for x = 0..5 as 2x3.
TEST(Interpolate, MatchesPyTorch) {
  Tensor x = arange(0, 6).reshape({1, 1, 2, 3});
  expect_values(interpolate(x, {3, 4}, "bilinear"), {0, 0.625, 1.375, 2, 1.5, 2.125, 2.875, 3.5, 3, 3.625, 4.375, 5});
  expect_values(interpolate(x, {3, 4}, "bilinear", true),
                {0, 2. / 3, 4. / 3, 2, 1.5, 13. / 6, 17. / 6, 3.5, 3, 11. / 3, 13. / 3, 5});
  expect_values(interpolate(x, {3, 5}), {0, 0, 1, 1, 2, 0, 0, 1, 1, 2, 3, 3, 4, 4, 5});
  expect_values(interpolate_scale(x, 1.5, "bilinear"),
                {0, 0.5, 7. / 6, 11. / 6, 1.5, 2, 8. / 3, 10. / 3, 3, 3.5, 25. / 6, 29. / 6});
  expect_values(interpolate(from_vector({1, 4, 2}, {1, 1, 3}), 5, "linear"), {1, 2.2, 4, 2.8, 2});
  Tensor v = interpolate(arange(0, 8).reshape({1, 1, 2, 2, 2}), 3, "trilinear", true);
  auto got = v.to_vector();
  std::vector<double> want{0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5);
  Tensor xg = arange(0, 6).reshape({1, 1, 2, 3});
  xg.requires_grad_(true);
  sum(interpolate(xg, {3, 4}, "bilinear")).backward();
  expect_values(xg.grad(), {2.0625, 1.875, 2.0625, 2.0625, 1.875, 2.0625});
}

TEST(Interpolate, BadInputsRaise) {
  EXPECT_THROW(interpolate(ones({1, 1, 4, 4}), 8, "trilinear"), Error);     // mode vs rank
  EXPECT_THROW(interpolate(ones({1, 1, 4, 4}), 8, "nearest", true), Error);  // align_corners with nearest
  EXPECT_THROW(interpolate(ones({1, 1, 4, 4}), {8, 8, 8}, "bilinear"), Error);
  EXPECT_THROW(interpolate(ones({4, 4}), 8), Error);
}

}  // namespace
}  // namespace qs

#ifdef QS_WITH_OPTIMISED
namespace qs {
namespace {

// The layouts oneDNN may keep a gradient in: plain, 8-channel blocks (AVX2) and 16-channel
// blocks (AVX-512); reorders run on every CPU, so each can be made here.
std::vector<dnnl::memory::desc> gradient_layouts(const Tensor& gy) {
  using tag = dnnl::memory::format_tag;
  dnnl::memory::dims d(gy.shape().begin(), gy.shape().end());
  bool three = gy.dim() == 5;
  std::vector<dnnl::memory::desc> out;
  for (tag k : {three ? tag::ncdhw : tag::nchw, three ? tag::nCdhw8c : tag::nChw8c, three ? tag::nCdhw16c : tag::nChw16c})
    out.emplace_back(d, dnnl::memory::data_type::f32, k);
  return out;
}

// Convolution backward inside its StableOperands scope, where the gradient's conversions
// are kept for the next op: whatever layouts are kept already (as oneDNN's backward-data
// leaves one: 8c on AVX2, 16c on AVX-512), each kernel gets the layout it asked for and
// the results equal the reference's. direct8 (8-channel blocks) takes the weights where
// oneDNN runs AVX2.
// Our bf16 reorder between plain and 16-channel blocks gives oneDNN's bytes, padding
// channels included, both ways: channel counts that are and are not multiples of 16,
// spatial sizes with and without a tail of 16, 2-D and 3-D.
TEST(ConvLayouts, OwnBf16BlockReorderEqualsOneDnns) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  Generator g(22);
  for (dnnl::memory::dims d : {dnnl::memory::dims{3, 37, 5, 7}, {2, 32, 4, 4}, {2, 16, 1, 1}, {1, 5, 3, 6},
                               {2, 20, 3, 4, 5}, {1, 48, 2, 4, 4}, {1, 16, 32, 64}}) {  // the last: oneDNN's (4 KiB rows)
    SCOPED_TRACE(::testing::PrintToString(d));
    const bool five = d.size() == 5;
    dnnl::memory::desc plain(d, dt::bf16, five ? tag::abcde : tag::abcd);
    dnnl::memory::desc blocked(d, dt::bf16, five ? tag::aBcde16b : tag::aBcd16b);
    auto& eng = backend::dnnl_engine();
    dnnl::memory src(plain, eng), ours(blocked, eng), theirs(blocked, eng), back_ours(plain, eng), back_theirs(plain, eng);
    Tensor vals = randn({int64_t(plain.get_size() / 2)}, DType::f32, &g).to(DType::bf16);
    std::memcpy(src.get_data_handle(), vals.raw_data(), plain.get_size());
    std::memset(ours.get_data_handle(), 0xff, blocked.get_size());  // padding must be written
    kernels::reorder(src, ours, true);
    kernels::reorder(src, theirs, false);
    backend::dnnl_stream().wait();
    EXPECT_EQ(std::memcmp(ours.get_data_handle(), theirs.get_data_handle(), blocked.get_size()), 0);
    kernels::reorder(theirs, back_ours, true);
    kernels::reorder(theirs, back_theirs, false);
    backend::dnnl_stream().wait();
    EXPECT_EQ(std::memcmp(back_ours.get_data_handle(), back_theirs.get_data_handle(), plain.get_size()), 0);
    EXPECT_EQ(std::memcmp(back_ours.get_data_handle(), src.get_data_handle(), plain.get_size()), 0);
  }
}

TEST(ConvLayouts, BackwardKernelsReadTheirOwnLayoutWhateverIsKept) {
  for (bool three : {false, true}) {
    SCOPED_TRACE(three ? "3-D" : "2-D");
    Generator g(21);
    Shape xs = three ? Shape{2, 16, 5, 6, 7} : Shape{2, 16, 9, 10}, ws = three ? Shape{32, 16, 3, 3, 3} : Shape{32, 16, 3, 3};
    Tensor x = randn(xs, DType::f32, &g), w = randn(ws, DType::f32, &g);
    Shape gs = xs;
    gs[1] = 32;
    Tensor gy = randn(gs, DType::f32, &g);
    Attrs a = Attrs().set("stride", std::vector<int64_t>{1}).set("padding", std::vector<int64_t>{1})
                  .set("dilation", std::vector<int64_t>{1}).set("groups", int64_t(1));
    Attrs ad = a, aw = a;
    ad.set("input_shape", x.shape());
    aw.set("weight_shape", w.shape());
    Tensor gx_ref, gw_ref, gb_ref;
    {
      ops::ReferenceKernels ref;
      gx_ref = ops::dispatch1(ops::OpKind::convolution_backward_data, {gy, w}, ad);
      auto r = ops::dispatch(ops::OpKind::convolution_backward_weight, {gy, x}, aw);
      gw_ref = r[0];
      gb_ref = r[1];
    }
    auto layouts = gradient_layouts(gy);
    for (size_t kept = 0; kept <= layouts.size(); ++kept) {  // kept == size: all of them
      SCOPED_TRACE("kept layout " + std::to_string(kept));
      ops::StableOperands scope;
      for (size_t k = 0; k < layouts.size(); ++k)
        if (k == kept || kept == layouts.size()) {
          kernels::Layouts io;
          dnnl::memory m = io.in_operand(backend::plain_md(gy), gy.raw_data(), layouts[k]);
          io.finish();
          EXPECT_TRUE(m.get_desc() == layouts[k]);
        }
      ops::KernelLog log;
      Tensor gx = ops::dispatch1(ops::OpKind::convolution_backward_data, {gy, w}, ad);
      auto r = ops::dispatch(ops::OpKind::convolution_backward_weight, {gy, x}, aw);
      ASSERT_EQ(log.entries().size(), 2u);
      // direct8 steps aside where oneDNN runs AVX-512 (CI's ONEDNN_MAX_CPU_ISA=AVX2 pass runs it).
      EXPECT_EQ(log.entries()[1].kernel, backend::avx512() ? "onednn" : "direct8");
      expect_values(gx, gx_ref.to_vector(), 1e-3);
      expect_values(r[0], gw_ref.to_vector(), 1e-3);
      expect_values(r[1], gb_ref.to_vector(), 1e-3);
    }
  }
}
}  // namespace
}  // namespace qs
#endif
