// The kernel interface below the op table (src/kernels/kernel.h): names, the registry of
// optimised kernels the table is built from, and a kernel running another by name.
#include <gtest/gtest.h>

#include "kernels/kernel.h"
#include "ops/op.h"
#include "qiusuo/ops.h"

namespace qs {
namespace {

TEST(KernelInterface, OpNamesAreTheRowsOfOpsDef) {
  EXPECT_STREQ(ops::op_name(ops::OpKind::relu), "relu");
  EXPECT_STREQ(ops::op_name(ops::OpKind::convolution), "convolution");
  for (int k = 0; k < ops::kNumOps; ++k)
    EXPECT_STREQ(ops::op_name(ops::OpKind(k)), ops::op_def(ops::OpKind(k)).name);
}

TEST(KernelInterface, TheOpTableOffersExactlyTheRegisteredKernelsInOrder) {
  const ops::KernelTable& reg = ops::optimised_kernels();
  ASSERT_EQ(reg.size(), size_t(ops::kNumOps));
  for (int k = 0; k < ops::kNumOps; ++k) {
    const auto& offered = ops::op_def(ops::OpKind(k)).optimised;
    ASSERT_EQ(offered.size(), reg[size_t(k)].size()) << ops::op_name(ops::OpKind(k));
    for (size_t i = 0; i < offered.size(); ++i) {
      EXPECT_STREQ(offered[i].name, reg[size_t(k)][i].name);
      EXPECT_EQ(offered[i].run, reg[size_t(k)][i].run);
    }
  }
}

#ifdef QS_WITH_OPTIMISED
TEST(KernelInterface, RunOptimisedRunsTheNamedKernelOrSaysWhyNot) {
  Tensor x = arange(-3, 4);
  Tensor y = empty({7}, DType::f32);
  ops::OpCall call{ops::OpKind::relu, {x}, {}, {y}};
  ops::run_optimised(call, "cpu");
  Tensor want = relu(x);
  for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(y.data_ptr<float>()[i], want.data_ptr<float>()[i]);
  EXPECT_THROW(ops::run_optimised(call, "no-such-kernel"), Error);
  Tensor xi = arange(0, 7, 1, DType::i64);  // the cpu relu takes floats only: it declines, with its reason
  ops::OpCall ints{ops::OpKind::relu, {xi}, {}, {empty({7}, DType::i64)}};
  try {
    ops::run_optimised(ints, "cpu");
    ADD_FAILURE() << "an integer relu should be declined";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("declines"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
}  // namespace qs
