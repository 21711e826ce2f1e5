// safetensors against PyTorch: qiusuo's files load in torch (torch.frombuffer, see
// safetensors_oracle.py) with identical bits, and torch's files load in qiusuo.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "test_util.h"
#include "qiusuo/io/safetensors.h"

using namespace qs;
using namespace qs::testing;

namespace {

const std::string kScript = std::string(QS_SOURCE_DIR) + "/tests/io/safetensors_oracle.py";

template <class T, class F> Tensor make(const Shape& shape, F f) {
  Tensor t = empty(shape, dtype_of<T>::value);
  T* p = static_cast<T*>(t.raw_data());
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = f(i);
  return t;
}

// The same formulas as expected() in safetensors_oracle.py.
io::NamedTensors expected() {
  Tensor f32 = make<float>({3, 5, 7}, [](int64_t i) { return float(i - 52) / 3.0f; });
  f32.data_ptr<float>()[0] = -0.0f;
  f32.data_ptr<float>()[1] = std::numeric_limits<float>::infinity();
  Tensor f64 = make<double>({4, 6}, [](int64_t i) { return double(i - 12) / 7.0; });
  f64.data_ptr<double>()[5] = 1e300;
  auto small = [](int64_t i) { return float(i - 4) / 3.0f; };
  // f32_t is written from a transposed (non-contiguous) view.
  Tensor base = make<float>({5, 7}, [](int64_t i) { return float(i) / 7.0f; });
  return {{"f32", f32},
          {"f32_t", base.t()},
          {"f64", f64},
          {"bf16", make<bf16>({9}, [&](int64_t i) { return f32_to_bf16(small(i)); })},
          {"f16", make<f16>({9}, [&](int64_t i) { return f32_to_f16(small(i)); })},
          {"i64", make<int64_t>({2, 5}, [](int64_t i) { return i * 1000000007 - (int64_t(1) << 40); })},
          {"bool", make<bool>({7}, [](int64_t i) { return i % 3 == 0; })}};
}

int run_python(const std::string& args) {
  std::string cmd = "/usr/bin/python3 " + kScript + " " + args;
  return std::system(cmd.c_str());
}

bool have_torch() {
  static int rc = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1");
  return rc == 0;
}

}  // namespace

TEST(SafetensorsOracle, QiusuoFileLoadsInTorch) {
  if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 has no torch (apt-get install python3-torch)";
  std::string p = temp_dir("oracle_w") + "/qiusuo.safetensors";
  io::save_safetensors(p, expected(), {{"writer", "qiusuo"}});
  EXPECT_EQ(run_python("check " + p), 0) << "see the MISMATCH lines above";
}

TEST(SafetensorsOracle, TorchFileLoadsInQiusuo) {
  if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 has no torch (apt-get install python3-torch)";
  std::string p = temp_dir("oracle_r") + "/torch.safetensors";
  ASSERT_EQ(run_python("write " + p), 0);
  io::SafetensorsFile f = io::load_safetensors(p);
  EXPECT_EQ(f.metadata.at("writer"), "torch");
  io::NamedTensors exp = expected();
  ASSERT_EQ(f.tensors.size(), exp.size());
  for (const auto& [name, want] : exp) {
    auto it = std::find_if(f.tensors.begin(), f.tensors.end(), [&](const auto& kv) { return kv.first == name; });
    ASSERT_NE(it, f.tensors.end()) << name;
    const Tensor& got = it->second;
    Tensor w = want.contiguous();
    ASSERT_EQ(got.dtype(), w.dtype()) << name;
    ASSERT_EQ(got.shape(), w.shape()) << name;
    EXPECT_EQ(0, std::memcmp(got.raw_data(), w.raw_data(), size_t(w.numel()) * w.element_size()))
        << name << ": expected " << w << "\nfound " << got;
  }
}
