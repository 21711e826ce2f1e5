// Harness samples of the integer quantisation rows: full-range 8-bit activations (which
// oneDNN's AVX2 u8 x s8 path cannot take in one pass without saturating), 7-bit ones
// (reduce_range), u8 and s8, per-channel scales, odd sizes, groups, 3-D, strided inputs.
// Integer inputs do not depend on the harness dtype: they are made once, for f32.
#include <cmath>

#include "ops/quant_ops.h"
#include "ops/samples.h"
#include "qiusuo/ops.h"

namespace qs::ops {

namespace {

// Integers uniform in [lo, hi] of dtype dt; `transposed`: a view with dims 0 and 1 swapped.
Tensor ints(const Shape& shape, int64_t lo, int64_t hi, DType dt, Generator& g, bool transposed = false) {
  if (!transposed) return randint(lo, hi + 1, shape, dt, &g);
  Shape s(shape);
  std::swap(s[0], s[1]);
  return randint(lo, hi + 1, s, dt, &g).transpose(0, 1);
}
Tensor floats(const std::vector<double>& v) { return from_vector(v, {int64_t(v.size())}, DType::f32); }
Tensor zps(const std::vector<double>& v) { return from_vector(v, {int64_t(v.size())}, DType::i32); }

// An activation description: dtype and range of its integers, and its zero point.
struct Act {
  DType dt;
  int64_t lo, hi, zp;
  const char* name;
};
const Act kU8{DType::u8, 0, 255, 128, "u8"};
const Act kU8r{DType::u8, 0, 127, 61, "u8 7-bit"};
const Act kS8{DType::i8, -128, 127, 3, "s8"};
const Act kS8r{DType::i8, -64, 63, -2, "s8 7-bit"};

// Output attributes: "f32", or a requantised u8/s8 output whose scale spreads the results
// of a K-long dot product over the integer range.
Attrs out_attrs(const std::string& out, bool relu, int64_t K) {
  Attrs a;
  a.set("x_scale", 0.02).set("x_zp", int64_t(0)).set("out", out).set("relu", relu);
  if (out == "f32") return a;
  a.set("out_scale", 0.02 * 0.006 * 5000.0 * std::sqrt(double(K)) / 40.0);
  if (out == "u8") a.set("out_zp", int64_t(relu ? 0 : 128)).set("out_qmin", int64_t(0)).set("out_qmax", int64_t(255));
  if (out == "s8") a.set("out_zp", int64_t(relu ? -128 : -5)).set("out_qmin", int64_t(-128)).set("out_qmax", int64_t(127));
  return a;
}

Tensor w_scales(int64_t N, Generator& g) { return uniform({N}, 0.002, 0.01, DType::f32, &g); }

// The chained form (include/qiusuo/quant/modules.h): channels-last u8 inputs (the view of a
// contiguous [N, H, W, C]), requantised from another layer's parameters (x_from_*), and
// channels-last outputs (channels_last_out), alone and together.
std::vector<Sample> chained_qconv_samples(Generator& g) {
  struct Case {
    Shape x, w;
    int64_t pad;
    bool cl_in, remap, cl_out;
    const char* out;
    const char* label;
    bool full_range = false;  // 8-bit codes in and out of the requantisation (x_qmax 255)
  };
  std::vector<Case> cases = {
      {{2, 32, 6, 6}, {16, 32, 3, 3}, 1, true, true, true, "u8", "chained 3x3"},
      {{1, 33, 5, 7}, {7, 33, 3, 3}, 1, true, false, false, "f32", "channels-last x C=33"},
      {{2, 3, 5, 5}, {4, 3, 3, 3}, 0, false, true, true, "u8", "requantised x, channels-last out"},
      {{1, 17, 4, 5}, {9, 17, 1, 1}, 0, true, true, false, "s8", "1x1 requantised x C=17"},
      {{3, 5, 7}, {6, 5, 3}, 1, true, true, true, "u8", "1d chained"},
      {{8, 32, 14, 14}, {64, 32, 3, 3}, 1, true, true, true, "u8", "cnn conv2 chained (8 images)"},
      {{2, 16, 9, 9}, {8, 16, 3, 3}, 1, true, true, false, "u8", "chained 8-bit codes", true},
  };
  std::vector<Sample> s;
  for (auto& k : cases) {
    Shape phys{k.x[0]}, back{0, int64_t(k.x.size()) - 1};  // [N, sp..., C] -> [N, C, sp...]
    for (size_t d = 2; d < k.x.size(); ++d) phys.push_back(k.x[d]), back.push_back(int64_t(d) - 1);
    phys.push_back(k.x[1]);
    const int64_t top = k.full_range ? 256 : 128;
    Tensor x = k.cl_in ? randint(0, top, phys, DType::u8, &g).permute(back) : randint(0, top, k.x, DType::u8, &g);
    int64_t K = k.w[1];
    for (size_t i = 2; i < k.w.size(); ++i) K *= k.w[i];
    Attrs a = out_attrs(k.out, true, K).set("x_zp", int64_t(3));
    a.set("stride", Shape{1}).set("padding", Shape{k.pad}).set("dilation", Shape{1}).set("groups", int64_t(1));
    if (k.remap)
      a.set("x_from_scale", k.full_range ? 0.019 : 0.031).set("x_from_zp", int64_t(5)).set("x_qmin", int64_t(0))
          .set("x_qmax", int64_t(top - 1));
    if (k.cl_out) a.set("channels_last_out", true);
    s.push_back({{x, ints(k.w, -128, 127, DType::i8, g), w_scales(k.w[0], g), uniform({k.w[0]}, -1, 1, DType::f32, &g)},
                 a, fmt::format("{} -> {}", k.label, k.out)});
  }
  return s;
}

}  // namespace

std::vector<Sample> quantize_samples(DType dt, Generator& g) {
  std::vector<Sample> s;
  auto per_tensor = [](const char* dtype, int64_t lo, int64_t hi) {
    return Attrs().set("axis", int64_t(-1)).set("dtype", std::string(dtype)).set("qmin", lo).set("qmax", hi);
  };
  for (int64_t n : odd_sizes())
    s.push_back({{sample_uniform({n}, dt, g, -3, 3), floats({0.02}), zps({0})}, per_tensor("s8", -128, 127),
                 fmt::format("s8 n={}", n)});
  // Exact halves (round half to even) and values far outside the range (saturation).
  Tensor halves = from_vector({-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 1e6, -1e6, 127.5, 128.5, -128.5, 0.0}, {12}, dt);
  s.push_back({{halves, floats({1.0}), zps({0})}, per_tensor("s8", -128, 127), "halves and saturation s8"});
  s.push_back({{halves, floats({0.5}), zps({100})}, per_tensor("u8", 0, 255), "halves u8 zp 100"});
  // The same, NaN (-> the zero point) and infinities among them, 40 long: the 8- and 16-lane
  // loops of the optimised kernel and their tails.
  std::vector<double> edge;
  for (int r = 0; r < 3; ++r)
    for (double v : {-2.5, 0.5, 1.5, 1e6, -1e6, 127.5, -128.5, std::nan(""), double(INFINITY), -double(INFINITY), 3.25, -0.75, 0.0})
      edge.push_back(v + (std::isfinite(v) ? 0.125 * r : 0.0));
  edge.push_back(std::nan(""));
  s.push_back({{from_vector(edge, {int64_t(edge.size())}, dt), floats({0.5}), zps({3})}, per_tensor("u8", 0, 255),
               "NaN, infinities, halves, saturation u8 n=40"});
  s.push_back({{from_vector(edge, {int64_t(edge.size())}, dt), floats({0.25}), zps({-5})}, per_tensor("s8", -128, 127),
               "NaN, infinities, halves, saturation s8 n=40"});
  s.push_back({{sample_uniform({7, 17}, dt, g, -1, 3), floats({0.013}), zps({61})}, per_tensor("u8", 0, 127),
               "u8 reduce_range"});
  Tensor sc = uniform({7}, 0.005, 0.05, DType::f32, &g);
  s.push_back({{sample_uniform({7, 33}, dt, g), sc, zps({0, 0, 0, 0, 0, 0, 0})},
               Attrs().set("axis", int64_t(0)).set("dtype", std::string("s8")).set("qmin", int64_t(-127)).set("qmax", int64_t(127)),
               "per channel axis 0"});
  s.push_back({{sample_transposed({17, 7}, dt, g), sc, zps({1, 2, 3, 4, 5, 6, 7})},
               Attrs().set("axis", int64_t(1)).set("dtype", std::string("u8")).set("qmin", int64_t(0)).set("qmax", int64_t(255)),
               "per channel axis 1, transposed"});
  s.push_back({{sample_uniform({3, 7, 5}, dt, g), sc, zps({-8, -4, 0, 1, 2, 3, 7})},
               Attrs().set("axis", int64_t(1)).set("dtype", std::string("s8")).set("qmin", int64_t(-8)).set("qmax", int64_t(7)),
               "s4 range, 3-D axis 1"});
  s.push_back({{sample_uniform({64, 256}, dt, g), floats({0.016}), zps({0})}, per_tensor("s8", -128, 127), "64x256"});
  return s;
}

std::vector<Sample> dequantize_samples(DType dt, Generator& g) {
  if (dt != DType::f32) return {};
  std::vector<Sample> s;
  for (int64_t n : odd_sizes())
    s.push_back({{ints({n}, 0, 255, DType::u8, g), floats({0.05}), zps({128})}, Attrs().set("axis", int64_t(-1)),
                 fmt::format("u8 n={}", n)});
  Tensor sc = uniform({7}, 0.005, 0.05, DType::f32, &g);
  s.push_back({{ints({7, 33}, -128, 127, DType::i8, g), sc, zps({0, 0, 0, 0, 0, 0, 0})},
               Attrs().set("axis", int64_t(0)), "s8 per channel axis 0"});
  s.push_back({{ints({17, 7}, -128, 127, DType::i8, g, true), sc, zps({-3, -2, -1, 0, 1, 2, 3})},
               Attrs().set("axis", int64_t(1)), "s8 per channel axis 1, transposed"});
  s.push_back({{ints({64, 256}, 0, 255, DType::u8, g), floats({0.01}), zps({3})}, Attrs().set("axis", int64_t(-1)),
               "64x256"});
  return s;
}

std::vector<Sample> qlinear_samples(DType dt, Generator& g) {
  if (dt != DType::f32) return {};
  struct Case {
    Shape x;
    int64_t N;
    Act act;
    const char* out;
    bool relu, bias, transposed;
  };
  std::vector<Case> cases = {
      {{1, 17}, 3, kU8, "f32", false, true, false},     {{3, 33}, 7, kU8, "u8", false, true, false},
      {{7, 127}, 17, kU8, "s8", true, true, false},     {{17, 3}, 33, kU8r, "u8", true, false, false},
      {{33, 7}, 1, kS8, "f32", false, true, false},     {{5, 33}, 9, kS8, "s8", false, true, false},
      {{6, 17}, 5, kS8r, "u8", false, false, false},    {{2, 3, 17}, 4, kU8, "u8", true, true, false},
      {{7, 33}, 6, kU8, "u8", false, true, true},       {{64, 256}, 128, kU8r, "u8", true, true, false},
      {{32, 256}, 96, kU8, "f32", false, true, false},
  };
  std::vector<Sample> s;
  for (auto& k : cases) {
    int64_t K = k.x.back();
    Tensor x = ints(k.x, k.act.lo, k.act.hi, k.act.dt, g, k.transposed);
    Tensor w = ints({k.N, K}, -128, 127, DType::i8, g);
    Tensor b = k.bias ? uniform({k.N}, -1, 1, DType::f32, &g) : Tensor();
    Attrs a = out_attrs(k.out, k.relu, K).set("x_zp", k.act.zp);
    s.push_back({{x, w, w_scales(k.N, g), b}, a,
                 fmt::format("{} {}x{} -> {} {}{}{}", k.act.name, shape_str(k.x), k.N, k.out, k.relu ? " relu" : "",
                             k.bias ? "" : " no bias", k.transposed ? " transposed" : "")});
  }
  // Weights given as a transposed view (the packing reads any strides).
  Tensor wt = ints({33, 10}, -128, 127, DType::i8, g).t();
  s.push_back({{ints({5, 33}, 0, 255, DType::u8, g), wt, w_scales(10, g), Tensor()},
               out_attrs("s8", false, 33).set("x_zp", int64_t(100)), "u8 [5, 33]x10 transposed weights -> s8"});
  return s;
}

std::vector<Sample> qconv_samples(DType dt, Generator& g) {
  if (dt != DType::f32) return {};
  struct Case {
    Shape x, w;
    std::vector<int64_t> stride, padding, dilation;
    int64_t groups;
    Act act;
    const char* out;
    bool relu, bias, transposed;
    const char* label;
    bool full_range = false;  // 8-bit codes in and out of the requantisation (x_qmax 255)
  };
  std::vector<Case> cases = {
      {{2, 3, 5, 5}, {4, 3, 3, 3}, {1}, {1}, {1}, 1, kU8, "u8", false, true, false, "2d 3x3 pad 1"},
      {{2, 3, 7, 6}, {4, 3, 2, 3}, {2, 1}, {0, 1}, {2, 1}, 1, kS8, "f32", false, true, false, "2d stride 2 dilation 2"},
      {{1, 4, 5, 6}, {6, 2, 3, 3}, {1}, {1}, {1}, 2, kU8r, "s8", true, false, false, "2d groups 2 no bias"},
      {{1, 8, 9, 9}, {8, 1, 3, 3}, {1}, {1}, {1}, 8, kU8, "u8", true, true, false, "depthwise"},
      {{3, 2, 17}, {4, 2, 3}, {2}, {1}, {1}, 1, kU8, "u8", false, true, false, "1d stride 2"},
      {{1, 2, 5, 4, 5}, {3, 2, 3, 3, 3}, {1}, {1}, {1}, 1, kU8, "u8", true, true, false, "3d pad 1"},
      {{1, 3, 7, 5, 6}, {5, 3, 2, 3, 3}, {2, 1, 2}, {0, 1, 1}, {1}, 1, kS8r, "s8", false, true, false, "3d strides"},
      {{2, 3, 5, 5}, {3, 3, 3, 3}, {1}, {1}, {1}, 1, kU8r, "f32", false, true, true, "2d strided x"},
      {{8, 32, 14, 14}, {64, 32, 3, 3}, {1}, {1}, {1}, 1, kU8r, "u8", true, true, false, "cnn conv2 (8 images)"},
      {{2, 16, 8, 8, 8}, {32, 16, 3, 3, 3}, {1}, {1}, {1}, 1, kU8, "u8", true, true, false, "cnn3d conv2"},
      // Sizes where oneDNN picks its brgemm kernels, with source and output zero points: the
      // requantisation inside oneDNN (kernels/cpu/quant_pack.h) against the reference.
      {{8, 32, 14, 14}, {64, 32, 3, 3}, {1}, {0}, {1}, 1, kU8, "s8", false, true, false, "brgemm src zp"},
      {{8, 64, 7, 7}, {128, 64, 1, 1}, {1}, {0}, {1}, 1, kS8, "u8", false, true, false, "brgemm 1x1 out zp"},
      {{16, 64, 14, 14}, {64, 64, 3, 3}, {1}, {1}, {1}, 1, kU8r, "u8", false, false, false, "brgemm padded"},
  };
  std::vector<Sample> s;
  for (auto& k : cases) {
    int64_t K = k.w[1];
    for (size_t i = 2; i < k.w.size(); ++i) K *= k.w[i];
    Tensor x = ints(k.x, k.act.lo, k.act.hi, k.act.dt, g, k.transposed);
    Tensor w = ints(k.w, -128, 127, DType::i8, g);
    Tensor b = k.bias ? uniform({k.w[0]}, -1, 1, DType::f32, &g) : Tensor();
    Attrs a = out_attrs(k.out, k.relu, K).set("x_zp", k.act.zp);
    a.set("stride", k.stride).set("padding", k.padding).set("dilation", k.dilation).set("groups", k.groups);
    s.push_back({{x, w, w_scales(k.w[0], g), b}, a, fmt::format("{} {} -> {}", k.label, k.act.name, k.out)});
  }
  for (auto& c : chained_qconv_samples(g)) s.push_back(std::move(c));
  // One input channel into channels-last outputs: the avx512-vnni-c1 kernel (kernel rows of up
  // to 4 taps as one 32-bit load, padding worth the zero point, s8 inputs offset into u8).
  struct C1 {
    Shape x, w;
    std::vector<int64_t> stride, padding;
    Act act;
    const char* out;
    bool relu, bias;
    const char* label;
  };
  const std::vector<C1> c1 = {
      {{4, 1, 28, 28}, {32, 1, 3, 3}, {1}, {1}, kU8r, "u8", true, true, "c1 cnn conv1 3x3 pad 1"},
      {{2, 1, 9, 11}, {16, 1, 2, 4}, {2}, {0}, kS8, "s8", false, false, "c1 2x4 stride 2 no bias"},
      {{3, 1, 7, 8}, {48, 1, 4, 3}, {1, 2}, {2, 1}, kU8, "f32", false, true, "c1 4x3 strides 1,2 pad 2,1"},
      {{2, 1, 6, 5}, {64, 1, 3, 3}, {1}, {1}, kU8, "u8", false, true, "c1 64 channels"},
  };
  for (auto& k : c1) {
    const int64_t K = k.w[2] * k.w[3];
    Tensor b = k.bias ? uniform({k.w[0]}, -1, 1, DType::f32, &g) : Tensor();
    Attrs a = out_attrs(k.out, k.relu, K).set("x_zp", k.act.zp);
    a.set("stride", k.stride).set("padding", k.padding).set("dilation", std::vector<int64_t>{1}).set("groups", int64_t(1));
    a.set("channels_last_out", true);
    s.push_back({{ints(k.x, k.act.lo, k.act.hi, k.act.dt, g), ints(k.w, -128, 127, DType::i8, g), w_scales(k.w[0], g), b},
                 a, fmt::format("{} {} -> {} channels-last", k.label, k.act.name, k.out)});
  }
  return s;
}

std::vector<Sample> dynamic_linear_samples(DType dt, Generator& g) {
  if (dt != DType::f32) return {};
  std::vector<Sample> s;
  auto add = [&](Tensor x, int64_t N, const char* gran, bool rr, bool bias, const std::string& label) {
    int64_t K = x.size(-1);
    Tensor b = bias ? uniform({N}, -1, 1, DType::f32, &g) : Tensor();
    s.push_back({{x, ints({N, K}, -127, 127, DType::i8, g), w_scales(N, g), b},
                 Attrs().set("granularity", std::string(gran)).set("reduce_range", rr),
                 fmt::format("{} {}{} -> {}", label, gran, rr ? " reduce_range" : "", N)});
  };
  for (int64_t m : {1, 3, 7, 17, 33}) add(sample_uniform({m, 2 * m + 3}, dt, g, -1, 3), m + 2, "token", false, true, "x");
  add(sample_uniform({7, 33}, dt, g), 17, "tensor", false, true, "x");
  add(sample_uniform({7, 33}, dt, g), 17, "token", true, false, "x");
  add(sample_uniform({2, 3, 17}, dt, g), 5, "tensor", true, true, "3-D x");
  add(sample_transposed({9, 17}, dt, g), 6, "token", false, true, "transposed x");
  Tensor x = sample_uniform({4, 33}, dt, g);
  x.select(0, 1).fill_(0.0);  // an all-zero row and an all-positive constant row
  x.select(0, 2).fill_(0.75);
  add(x, 7, "token", false, true, "zero and constant rows");
  add(sample_uniform({64, 256}, dt, g), 128, "token", false, true, "64x256");
  return s;
}

std::vector<Sample> woq_linear_samples(DType dt, Generator& g) {
  if (dt != DType::f32) return {};
  std::vector<Sample> s;
  auto add = [&](Tensor x, int64_t N, int64_t bits, int64_t group, bool bias, const std::string& label,
                 const std::string& act = "f32") {
    int64_t K = x.size(-1);
    Tensor w = bits == 8 ? ints({N, K}, -128, 127, DType::i8, g) : ints({N, K / 2}, 0, 255, DType::u8, g);
    Tensor sc = bits == 8 ? uniform({N}, 0.001, 0.01, DType::f32, &g)
                          : uniform({N, K / group}, 0.01, 0.1, DType::f32, &g);
    Tensor b = bias ? uniform({N}, -1, 1, DType::f32, &g) : Tensor();
    s.push_back({{x, w, sc, b}, Attrs().set("bits", bits).set("group_size", group).set("activations", act),
                 fmt::format("int{} {}{} {}x{}{}", bits, act == "q8" ? "q8 " : "", label, shape_str(x.shape()), N,
                             bias ? "" : " no bias")});
  };
  // q8 activations: every batch size of the GEMV (1..8) and the prefill GEMM (> 8 rows: tiles
  // of 6 rows, panels of 32 columns, both with remainders), row counts that leave 1-3 rows
  // after the GEMV's passes of 4, K with a partial last block (int8), int4 groups of 32, 64
  // and 128, an all-zero block and blocks of very different magnitudes, a NaN.
  for (int64_t m : {1, 2, 5, 8}) add(sample_uniform({m, 96}, dt, g), 4 * m + 3, 8, 0, m % 2 == 1, "", "q8");
  add(sample_uniform({3, 77}, dt, g), 10, 8, 0, true, "tail", "q8");
  add(sample_uniform({1, 5}, dt, g), 6, 8, 0, true, "short", "q8");
  add(sample_transposed({4, 256}, dt, g), 9, 8, 0, false, "transposed", "q8");
  add(sample_uniform({12, 160}, dt, g), 37, 8, 0, true, "prefill", "q8");
  add(sample_uniform({10, 77}, dt, g), 33, 8, 0, false, "prefill tail", "q8");
  add(sample_uniform({13, 128}, dt, g), 70, 4, 64, true, "prefill g64", "q8");
  for (int64_t group : {32, 64, 128})
    for (int64_t m : {1, 3, 9}) add(sample_uniform({m, 256}, dt, g), 13, 4, group, m != 3, fmt::format("g{}", group), "q8");
  add(sample_uniform({2, 64}, dt, g), 5, 4, 16, true, "g16", "q8");
  {
    Tensor x = sample_uniform({2, 128}, dt, g);
    x.narrow(1, 0, 32).fill_(0.0);
    x.narrow(1, 32, 32).copy_(x.narrow(1, 32, 32) * 1e4);
    x.narrow(1, 64, 32).copy_(x.narrow(1, 64, 32) * 1e-30);
    x.narrow(1, 96, 32).copy_(x.narrow(1, 96, 32) * 1e-40);  // subnormal: 1 / d overflows
    add(x, 11, 8, 0, true, "zero/large/tiny/subnormal blocks", "q8");
    add(x.clone(), 11, 4, 32, true, "zero/large/tiny/subnormal blocks", "q8");
    Tensor xn = x.clone();
    xn.select(0, 1).narrow(0, 100, 1).fill_(std::nan(""));
    add(xn, 7, 8, 0, false, "NaN in one block", "q8");
  }
  for (int64_t m : {1, 3, 7}) add(sample_uniform({m, 17 * m + 10}, dt, g), 2 * m + 1, 8, 0, true, "");
  add(sample_uniform({2, 3, 33}, dt, g), 9, 8, 0, false, "3-D");
  add(sample_transposed({5, 127}, dt, g), 17, 8, 0, true, "transposed");
  add(sample_uniform({1, 512}, dt, g), 256, 8, 0, true, "gemv");
  for (int64_t m : {1, 3, 5}) add(sample_uniform({m, 64}, dt, g), 7 * m, 4, 32, true, "g32");
  add(sample_transposed({6, 256}, dt, g), 33, 4, 128, false, "g128 transposed");
  add(sample_uniform({1, 512}, dt, g), 256, 4, 128, true, "gemv g128");
  add(sample_uniform({9, 256}, dt, g), 40, 4, 32, true, "prefill g32");
  add(sample_uniform({33, 127}, dt, g), 300, 8, 0, true, "prefill");
  add(sample_transposed({17, 256}, dt, g), 260, 4, 128, false, "prefill g128 transposed");
  return s;
}

}  // namespace qs::ops
