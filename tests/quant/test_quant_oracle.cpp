// Oracle: fake quantisation and observers against PyTorch 1.13 on the same data
// (tests/oracle/quant_oracle.py). Fake-quantised values are compared exactly (the same
// f32 rounding rule); STE gradients exactly; LSQ scale gradients with atol 1e-4 over
// sums of a few hundred terms (PyTorch sums in f32, we in f64); observer qparams exactly,
// except the histogram observer: after one batch (the same histogram up to bin-edge
// rounding) scale within 0.5% and zero point within 1; after several batches (PyTorch
// 1.13 re-bins by upsampling over int()-truncated ranges, we by proportional overlap)
// scale within 5%, zero point within 4.
#include <gtest/gtest.h>

#include <map>

#include "oracle/oracle_util.h"
#include "qiusuo/io/safetensors.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/fake_quant.h"
#include "qiusuo/quant/observer.h"

using namespace qs;
using namespace qs::quant;
using qs::testing::all_close;

namespace {

std::map<std::string, Tensor>& oracle() {
  static std::map<std::string, Tensor> t = [] {
    std::string path = qs::testing::temp_dir("quant_oracle") + "/quant_oracle.safetensors";
    qs::testing::run_oracle("quant_oracle.py", path);
    auto file = io::load_safetensors(path);
    return std::map<std::string, Tensor>(file.tensors.begin(), file.tensors.end());
  }();
  return t;
}
const Tensor& T(const std::string& k) { return oracle().at(k); }
Tensor vec(double v) { return from_vector({v}, {1}); }
Tensor ivec(double v) { return from_vector({v}, {1}, DType::i32); }

}  // namespace

TEST(QuantOracle, FakeQuantizeForwardAndStraightThroughMatchPyTorch) {
  Tensor x = T("fq.x").detach().requires_grad_(true);
  Tensor y = fake_quantize(x, vec(0.03125), ivec(100), -1, 0, 255);
  EXPECT_TRUE(all_close(y, T("fq.pt.y"), 0, 0));
  sum(y * T("fq.w")).backward();
  EXPECT_TRUE(all_close(x.grad(), T("fq.pt.dx"), 0, 0));
  Tensor yc = fake_quantize(T("fq.x"), T("fq.pc.scale"), T("fq.pc.zp"), 1, -128, 127);
  EXPECT_TRUE(all_close(yc, T("fq.pc.y"), 0, 0));
}

TEST(QuantOracle, LearnableScaleAndZeroPointGradientsMatchPyTorch) {
  for (auto [tag, s0, z0] : {std::tuple{"lsq", 0.05, 3.0}, std::tuple{"lsq2", 0.2, 6.0}}) {
    SCOPED_TRACE(tag);
    std::string t = tag;
    Tensor x = T("fq.x").detach().requires_grad_(true);
    Tensor s = vec(s0).requires_grad_(true), z = vec(z0).requires_grad_(true);
    Tensor y = fake_quantize(x, s, z, -1, -128, 127);
    EXPECT_TRUE(all_close(y, T(t + ".y"), 0, 0));
    sum(y * T("fq.w")).backward();
    EXPECT_TRUE(all_close(x.grad(), T(t + ".dx"), 0, 0));
    EXPECT_TRUE(all_close(s.grad(), T(t + ".ds"), 1e-4, 1e-5));
    EXPECT_TRUE(all_close(z.grad(), T(t + ".dz"), 1e-5, 1e-5));
  }
  Tensor x = T("fq.x").detach().requires_grad_(true);
  Tensor s = T("fq.pc.scale").detach().clone().requires_grad_(true);
  Tensor z = abs(T("fq.pc.zp").to(DType::f32)).requires_grad_(true);
  Tensor y = fake_quantize(x, s, z, 1, -128, 127);
  EXPECT_TRUE(all_close(y, T("lsqpc.y"), 0, 0));
  sum(y * T("fq.w")).backward();
  EXPECT_TRUE(all_close(x.grad(), T("lsqpc.dx"), 0, 0));
  EXPECT_TRUE(all_close(s.grad(), T("lsqpc.ds"), 1e-4, 1e-5));
  EXPECT_TRUE(all_close(z.grad(), T("lsqpc.dz"), 1e-5, 1e-5));
}

namespace {
void expect_qparams(Observer& o, const std::string& tag, double rtol = 0, int zp_tol = 0) {
  SCOPED_TRACE(tag);
  for (int i = 0; i < 3; ++i) o.observe(T("obs.batch" + std::to_string(i)));
  QParams qp = o.qparams();
  std::vector<double> s = T("obs." + tag + ".scale").to_vector(), z = T("obs." + tag + ".zp").to_vector();
  ASSERT_EQ(qp.scale.size(), s.size());
  for (size_t c = 0; c < s.size(); ++c) {
    if (rtol == 0)
      EXPECT_EQ(qp.scale[c], float(s[c])) << "channel " << c;
    else
      EXPECT_NEAR(qp.scale[c], s[c], rtol * s[c]) << "channel " << c;
    EXPECT_NEAR(qp.zero_point[c], z[c], zp_tol) << "channel " << c;
  }
}
ObserverOptions opts(QDtype d, bool sym, bool rr = false, int64_t channels = 1) {
  ObserverOptions o;
  o.dtype = d, o.symmetric = sym, o.reduce_range = rr, o.axis = 1, o.channels = channels;
  return o;
}
}  // namespace

TEST(QuantOracle, MinMaxObserversMatchPyTorch) {
  MinMaxObserver a(opts(QDtype::u8, false));
  expect_qparams(a, "minmax_u8");
  MinMaxObserver b(opts(QDtype::s8, true));
  expect_qparams(b, "minmax_s8_sym");
  MinMaxObserver c(opts(QDtype::u8, false, true));
  expect_qparams(c, "minmax_u8_rr");
  EXPECT_EQ(c.qparams().qmax(), 127);
  MinMaxObserver d(opts(QDtype::u8, true));
  expect_qparams(d, "minmax_u8_sym");
  MovingAverageMinMaxObserver e(opts(QDtype::u8, false));
  expect_qparams(e, "ma_u8");
  PerChannelMinMaxObserver f(opts(QDtype::s8, true, false, 4));
  expect_qparams(f, "pc_s8_sym");
  PerChannelMinMaxObserver g(opts(QDtype::u8, false, false, 4));
  expect_qparams(g, "pc_u8");
  MovingAveragePerChannelMinMaxObserver h(opts(QDtype::s8, true, false, 4));
  expect_qparams(h, "mapc_s8_sym");
}

TEST(QuantOracle, HistogramObserverMatchesPyTorch) {
  HistogramObserver one(opts(QDtype::u8, false));
  one.observe(T("obs.hist_batch"));
  QParams qp = one.qparams();
  double s = T("obs.hist1.scale").item(), z = T("obs.hist1.zp").item();
  EXPECT_NEAR(qp.scale[0], s, 0.005 * s);
  EXPECT_NEAR(qp.zero_point[0], z, 1);
  HistogramObserver three(opts(QDtype::u8, false));
  expect_qparams(three, "hist3", 0.05, 4);
}
