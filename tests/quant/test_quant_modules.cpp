// Quantised modules: built from float layers, close to them, f32 in and out (codes are
// refused), and saved and loaded through safetensors with every tensor and every output
// bit-identical.
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/io/safetensors.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/quant/modules.h"
#include "test_util.h"

namespace qs::quant {
namespace {

using testing::error_of;

QParams act(QDtype dt, float scale, int32_t zp, int32_t lo = 0, int32_t hi = 0) {
  QParams p;
  p.dtype = dt, p.scale = {scale}, p.zero_point = {zp}, p.quant_min = lo, p.quant_max = hi;
  return p;
}

void expect_close(const Tensor& got, const Tensor& want, double tol) {
  auto a = got.to_vector(), b = want.to_vector();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol) << "element " << i;
}

// Saves m's state_dict (and its qparams JSON as metadata), loads it into `shell`, and
// checks that every tensor and the forward output on x are bit-identical.
template <class M> void round_trip(M& m, M& shell, const Tensor& x) {
  std::string path = testing::temp_dir("quant_modules") + "/m.safetensors";
  io::save_safetensors(path, m.state_dict(), {{"qparams", m.qparams_json()}});
  io::SafetensorsFile f = io::load_safetensors(path);
  EXPECT_EQ(f.metadata.at("qparams"), m.qparams_json());
  shell.load_state_dict(f.tensors);
  auto a = m.state_dict(), b = shell.state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.dtype(), b[i].second.dtype()) << a[i].first;
    EXPECT_EQ(a[i].second.to_vector(), b[i].second.to_vector()) << a[i].first;
  }
  EXPECT_EQ(m.forward(x).to_vector(), shell.forward(x).to_vector());
  EXPECT_EQ(m.qparams_json(), shell.qparams_json());
}

TEST(QuantizedLinear, CloseToFloatAndRoundTripsThroughSafetensors) {
  Generator g(1);
  nn::Linear lin(64, 24, true, g);
  Tensor x = uniform({5, 64}, -1, 1, DType::f32, &g);
  Tensor want;
  {
    NoGrad ng;
    want = lin.forward(x);
  }
  QParams in = act(QDtype::u8, 2.0f / 127, 64, 0, 127);  // 7-bit, the no-VNNI default
  QuantizedLinear q(lin, in);
  expect_close(q.forward(x), want, 0.05);
  QuantizedLinear q_out(lin, in, act(QDtype::u8, 0.05f, 128), true);
  Tensor y = q_out.forward(x);
  EXPECT_EQ(y.dtype(), DType::f32);
  expect_close(y, relu(want), 0.08);
  // No chained form: codes are refused (UnmarkedQuantisedInputIsRefused below).
  EXPECT_NE(error_of([&] { q_out.forward(quantize(x, in)); }).find("takes float activations"), std::string::npos);
  EXPECT_EQ(q.weight_bytes(), 24 * 64 + 24 * 4);
  // 1 byte per weight + a 4-byte scale per row: (K + 4) / 4K of f32, 26.6% at K = 64, 25.4% at K = 256.
  QuantizedLinear shell(64, 24, true, act(QDtype::s8, 1.0f, 0), act(QDtype::s8, 1.0f, 0), true);
  round_trip(q_out, shell, x);
}

TEST(QuantizedConv, TwoAndThreeDimensionsRoundTrip) {
  Generator g(2);
  nn::ConvOptions opt;
  opt.padding = 1;
  nn::Conv2d c2(3, 8, 3, opt, g);
  nn::Conv3d c3(2, 4, 3, opt, g);
  QParams in = act(QDtype::u8, 2.0f / 127, 64, 0, 127);
  for (nn::ConvNd* c : std::vector<nn::ConvNd*>{&c2, &c3}) {
    Shape xs = c == &c2 ? Shape{2, 3, 9, 9} : Shape{1, 2, 5, 6, 5};
    Tensor x = uniform(xs, -1, 1, DType::f32, &g);
    Tensor want;
    {
      NoGrad ng;
      want = c->forward(x);
    }
    QuantizedConv q(*c, in, act(QDtype::u8, 0.02f, 128));
    expect_close(q.forward(x), want, 0.05);
    QuantizedConv shell(c->weight().shape(), opt, act(QDtype::u8, 1.0f, 0), act(QDtype::u8, 1.0f, 0));
    round_trip(q, shell, x);
  }
}

// The buffer `name` of m (state_dict order is registration order).
Tensor buffer_of(const nn::Module& m, const std::string& name) {
  for (auto& [n, t] : m.state_dict())
    if (n == name) return t;
  ADD_FAILURE() << "no buffer " << name;
  return {};
}

// Two QuantizedLinears hand over f32, and that is the integer chain exactly: the first
// layer's output codes, dequantised and quantised again in the same parameters, are the
// same codes. So QuantizedLinear needs no chain mark.
TEST(QuantizedModules, LinearsHandOverF32ExactlyAsTheIntegerChain) {
  Generator g(3);
  nn::Linear a(32, 16, true, g), b(16, 8, true, g);
  QParams in = act(QDtype::u8, 2.0f / 127, 64, 0, 127), mid = act(QDtype::u8, 0.02f, 0, 0, 127),
          out = act(QDtype::s8, 0.02f, 0);
  auto qa = std::make_shared<QuantizedLinear>(a, in, mid, true);
  auto qb = std::make_shared<QuantizedLinear>(b, mid, out);
  nn::Sequential chain{qa, qb};
  Tensor x = uniform({4, 32}, -1, 1, DType::f32, &g);
  Tensor y = chain.forward(x);
  EXPECT_EQ(y.dtype(), DType::f32);
  Tensor codes_a = qlinear(quantize(x, in), in, buffer_of(*qa, "weight"), buffer_of(*qa, "weight_scale"),
                           buffer_of(*qa, "bias"), QOutput{true, mid});
  Tensor codes_b = qlinear(codes_a, mid, buffer_of(*qb, "weight"), buffer_of(*qb, "weight_scale"),
                           buffer_of(*qb, "bias"), QOutput{false, out});
  EXPECT_EQ(y.to_vector(), dequantize(codes_b, out).to_vector());
  Tensor want;
  {
    NoGrad ng;
    want = b.forward(relu(a.forward(x)));
  }
  expect_close(y, want, 0.1);
  // Quantize / DeQuantize turn f32 into codes and back.
  Tensor q = Quantize(mid).forward(want);
  EXPECT_EQ(q.dtype(), DType::u8);
  EXPECT_EQ(DeQuantize(mid).forward(q).to_vector(), dequantize(quantize(want, mid), mid).to_vector());
}

// An unmarked quantised module takes float input: u8/i8 codes are refused by every module
// that takes activations, naming the module, what it found and the remedy.
TEST(QuantizedModules, UnmarkedQuantisedInputIsRefused) {
  Generator g(6);
  nn::Linear lin(32, 8, true, g);
  QParams in = act(QDtype::u8, 2.0f / 127, 64, 0, 127), s8 = act(QDtype::s8, 0.02f, 0);
  std::vector<std::shared_ptr<nn::Module>> mods{
      std::make_shared<QuantizedLinear>(lin, in), std::make_shared<QuantizedLinear>(lin, s8, in, true),
      std::make_shared<DynamicQuantizedLinear>(lin), std::make_shared<WeightOnlyLinear>(lin, 8),
      std::make_shared<WeightOnlyLinear>(lin, 4, 32)};
  Tensor x = uniform({3, 32}, -1, 1, DType::f32, &g);
  for (auto& m : mods) {
    for (Tensor codes : {quantize(x, in), quantize(x, s8)}) {
      std::string msg = error_of([&] { m->forward(codes); });
      EXPECT_EQ(msg.find(m->type_name() + ": got a " + dtype_name(codes.dtype()) + " input"), 0u) << msg;
      EXPECT_NE(msg.find("takes float activations (f32)"), std::string::npos) << msg;
      EXPECT_NE(msg.find("quant::dequantize"), std::string::npos) << msg;
    }
    EXPECT_EQ(m->forward(x).dtype(), DType::f32) << m->type_name();  // f32 still works
  }
}

TEST(DynamicAndWeightOnly, CloseToFloatAndRoundTrip) {
  Generator g(4);
  nn::Linear lin(256, 40, true, g);
  Tensor x = uniform({3, 256}, -1, 1, DType::f32, &g);
  Tensor want;
  {
    NoGrad ng;
    want = lin.forward(x);
  }
  DynamicQuantizedLinear d(lin);
  expect_close(d.forward(x), want, 0.03);
  DynamicQuantizedLinear dshell(256, 40, true);
  round_trip(d, dshell, x);
  WeightOnlyLinear w8(lin, 8);
  expect_close(w8.forward(x), want, 0.01);
  WeightOnlyLinear w8shell(256, 40, true, 8);
  round_trip(w8, w8shell, x);
  for (int64_t group : {32, 128}) {
    WeightOnlyLinear w4(lin, 4, group);
    expect_close(w4.forward(x), want, 0.1);
    EXPECT_EQ(w4.weight_bytes(), 40 * 128 + 40 * (256 / group) * 4);
    WeightOnlyLinear shell(256, 40, true, 4, group);
    round_trip(w4, shell, x);
  }
  EXPECT_LE(double(w8.weight_bytes()), 0.26 * 256 * 40 * 4);
}

TEST(QuantizedModules, BadParametersNameTheBuffer) {
  Generator g(5);
  nn::Linear lin(8, 4, true, g);
  QuantizedLinear q(lin, act(QDtype::u8, 0.1f, 0));
  auto sd = q.state_dict();
  for (auto& [name, t] : sd)
    if (name == "input_scale") t = zeros({1});
  QuantizedLinear shell(8, 4, true, act(QDtype::u8, 0.1f, 0));
  shell.load_state_dict(sd);
  EXPECT_NE(error_of([&] { shell.forward(zeros({1, 8})); }).find("input_scale"), std::string::npos);
  nn::StateDict missing(sd.begin() + 1, sd.end());
  EXPECT_NE(error_of([&] { shell.load_state_dict(missing); }).find("weight"), std::string::npos);
  EXPECT_NE(error_of([&] { QuantizedLinear(lin, act(QDtype::s4, 0.1f, 0)); }).find("per tensor u8 or s8"),
            std::string::npos);
  EXPECT_NE(error_of([&] { WeightOnlyLinear(lin, 4, 3); }).find("group_size 3"), std::string::npos);
  EXPECT_NE(error_of([&] { QuantizedLinear(lin, act(QDtype::u8, 0.1f, 300)); }).find("zero_point[0] = 300"),
            std::string::npos);
}

}  // namespace
}  // namespace qs::quant
