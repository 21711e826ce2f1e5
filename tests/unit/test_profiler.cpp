// The op profiler: what it counts, nesting (self vs total), shapes, windows, the report.
#include <gtest/gtest.h>

#include <thread>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/profiler.h"
#include "qiusuo/tensor.h"

namespace qs {
namespace {

const profiler::OpStat* row(const std::vector<profiler::OpStat>& rows, const std::string& op) {
  for (auto& r : rows)
    if (r.op == op) return &r;
  return nullptr;
}

TEST(Profiler, CountsEveryOpCallWhileOnAndNothingWhileOff) {
  Generator g(1);
  Tensor a = randn({8, 16}, DType::f32, &g), b = randn({16, 4}, DType::f32, &g);
  profiler::reset();
  (void)matmul(a, b);  // profiler off: not counted
  {
    profiler::Profile p;
    for (int i = 0; i < 3; ++i) (void)matmul(a, b);
    (void)relu(a);
  }
  (void)relu(a);  // off again
  auto rows = profiler::results();
  const profiler::OpStat* mm = row(rows, "matmul");
  const profiler::OpStat* re = row(rows, "relu");
  ASSERT_NE(mm, nullptr);
  ASSERT_NE(re, nullptr);
  EXPECT_EQ(mm->calls, 3);
  EXPECT_EQ(re->calls, 1);
  EXPECT_FALSE(profiler::active());
  for (auto& r : rows) {
    EXPECT_GE(r.total_ms, r.self_ms) << r.op;
    EXPECT_GE(r.self_ms, 0.0) << r.op;
    EXPECT_FALSE(r.kernel.empty()) << r.op;
  }
  double self = 0;
  for (auto& r : rows) self += r.self_ms;
  EXPECT_LE(self, profiler::profiled_ms() + 1e-6);  // op time lies inside the profiled window
}

TEST(Profiler, BackwardOpsAreCountedToo) {
  Generator g(2);
  Tensor w = randn({5, 3}, DType::f32, &g).requires_grad_();
  Tensor x = randn({4, 5}, DType::f32, &g);
  profiler::Profile p;
  Tensor loss = sum(matmul(x, w));
  loss.backward();
  auto rows = profiler::results();
  ASSERT_NE(row(rows, "matmul"), nullptr);
  // the gradient of w is x^T dy: a second matmul (or a linear-family op) in the backward
  int64_t products = 0;
  for (auto& r : rows)
    if (r.op == "matmul") products += r.calls;
  EXPECT_GE(products, 2);
}

TEST(Profiler, NestedCallsCountOnlyOnceInSelfTime) {
  // softmax given a strided input makes it contiguous through a copy op: the copy's time
  // is in softmax's total but not in its self time, and is the copy row's own time.
  Generator g(3);
  Tensor a = randn({64, 48}, DType::f32, &g).transpose(0, 1);
  profiler::Profile p;
  for (int i = 0; i < 5; ++i) (void)softmax(a, 0);
  auto rows = profiler::results();
  const profiler::OpStat* sm = row(rows, "softmax");
  const profiler::OpStat* cp = row(rows, "copy");
  ASSERT_NE(sm, nullptr);
  ASSERT_NE(cp, nullptr) << "softmax no longer copies a strided input: pick another nesting op";
  EXPECT_EQ(sm->calls, 5);
  EXPECT_GE(cp->calls, 5);
  EXPECT_GT(cp->total_ms, 0.0);
  EXPECT_NEAR(sm->total_ms, sm->self_ms + cp->total_ms, 1e-9 * (1 + sm->total_ms));
}

TEST(Profiler, RecordsShapesWhenAsked) {
  Generator g(4);
  Tensor a = randn({2, 3}, DType::f32, &g), b = randn({7}, DType::f32, &g);
  profiler::start({.record_shapes = true});
  (void)relu(a);
  (void)relu(b);
  profiler::stop();
  int relu_rows = 0;
  for (auto& r : profiler::results())
    if (r.op == "relu") {
      ++relu_rows;
      EXPECT_NE(r.shapes.find("f32"), std::string::npos) << r.shapes;
    }
  EXPECT_EQ(relu_rows, 2);  // one row per distinct input shape
}

TEST(Profiler, KeepAccumulatesAcrossWindowsAndReportListsTheOps) {
  Generator g(5);
  Tensor a = randn({4, 4}, DType::f32, &g);
  profiler::start();
  (void)neg(a);
  profiler::stop();
  double first = profiler::profiled_ms();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // outside any window: not counted
  profiler::start({}, /*keep=*/true);
  (void)neg(a);
  profiler::stop();
  EXPECT_EQ(row(profiler::results(), "neg")->calls, 2);
  EXPECT_LT(profiler::profiled_ms() - first, 300.0);
  std::string rep = profiler::report();
  EXPECT_NE(rep.find("qiusuo profile: 2 op calls"), std::string::npos) << rep;
  EXPECT_NE(rep.find("neg"), std::string::npos) << rep;
  profiler::reset();
  EXPECT_TRUE(profiler::results().empty());
}

TEST(Profiler, CallsFromSeveralThreadsAreSummed) {
  Generator g(6);
  Tensor a = randn({16}, DType::f32, &g);
  profiler::Profile p;
  std::thread t1([&] {
    for (int i = 0; i < 50; ++i) (void)neg(a);
  });
  std::thread t2([&] {
    for (int i = 0; i < 50; ++i) (void)neg(a);
  });
  t1.join();
  t2.join();
  EXPECT_EQ(row(profiler::results(), "neg")->calls, 100);
}

}  // namespace
}  // namespace qs
