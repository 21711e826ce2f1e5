// Anomaly mode (qs::set_detect_anomaly, QS_DETECT_ANOMALY): NaN and infinity caught where
// an op's forward or a node's backward makes them, or an optimiser's update, each error
// naming the op, the direction, the inputs and the module; and nothing changes while off.
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/module.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "test_util.h"

using namespace qs;
using qs::testing::error_of;

namespace {

// A module that applies one elementwise function, as a layer of a model would.
class Apply : public nn::Module {
 public:
  Apply(std::string type, Tensor (*fn)(const Tensor&)) : Module(std::move(type)), fn_(fn) {}
  Tensor forward(const Tensor& x) override {
    nn::ModuleScope scope(*this);
    return fn_(x);
  }

 private:
  Tensor (*fn_)(const Tensor&);
};

// body = Sequential(Linear(3, 3), Apply) under a root: the module paths are "body.0" and "body.1".
class Net : public nn::Module {
 public:
  explicit Net(Tensor (*fn)(const Tensor&), const char* type) : Module("Net") {
    Generator gen(1);
    auto fc = std::make_shared<nn::Linear>(3, 3, true, gen);
    {
      NoGrad ng;  // the identity, so that the function sees the input as it is
      Tensor w = fc->weight(), b = fc->bias();
      w.copy_(from_vector({1, 0, 0, 0, 1, 0, 0, 0, 1}, {3, 3}));
      b.zero_();
    }
    body_ = register_module("body", std::make_shared<nn::Sequential>(
                                        std::initializer_list<std::shared_ptr<Module>>{fc, std::make_shared<Apply>(type, fn)}));
  }
  Tensor forward(const Tensor& x) override {
    nn::ModuleScope scope(*this);
    return body_->forward(x);
  }

 private:
  std::shared_ptr<nn::Sequential> body_;
};

Tensor log_fn(const Tensor& x) { return log(x); }
Tensor sqrt_fn(const Tensor& x) { return sqrt(x); }

bool has(const std::string& msg, const std::string& part) { return msg.find(part) != std::string::npos; }

}  // namespace

TEST(Anomaly, ForwardNaNNamesTheOpAndTheModule) {
  DetectAnomaly on;
  Net net(log_fn, "Log");
  const std::string msg = error_of([&] { net.forward(from_vector({1, -2, 3, 4, 5, 6}, {2, 3})); });
  EXPECT_TRUE(has(msg, "anomaly mode: op 'log' gave NaN in its forward: output 0 (f32[2, 3]) holds NaN at element 1"))
      << msg;
  EXPECT_TRUE(has(msg, "in module body.1 (Log)")) << msg;
  EXPECT_TRUE(has(msg, "its inputs: f32[2, 3] (finite)")) << msg;
  EXPECT_TRUE(has(msg, "hint: the inputs are finite, so 'log' made the value")) << msg;
  // The scopes were closed on the way out: an op outside any module is named as such.
  const std::string outside = error_of([] { sqrt(from_vector({-1}, {1})); });
  EXPECT_TRUE(has(outside, "op 'sqrt' gave NaN in its forward")) << outside;
  EXPECT_TRUE(has(outside, "outside any module's forward")) << outside;
}

TEST(Anomaly, NonFiniteInputIsBlamedOnWhereItCameFrom) {
  DetectAnomaly on;
  const std::string msg = error_of([] { exp(from_vector({1, NAN, 2}, {3})); });
  EXPECT_TRUE(has(msg, "op 'exp' gave NaN in its forward")) << msg;
  EXPECT_TRUE(has(msg, "its inputs: f32[3] (holds NaN at element 1)")) << msg;
  EXPECT_TRUE(has(msg, "input 0 was not finite before 'exp'")) << msg;
}

// An additive -inf mask before a softmax is not an anomaly: the add passes on the mask's
// infinities. An infinity made from finite inputs is, and so is a NaN made from infinities.
TEST(Anomaly, InfinityPassedOnFromAnInputIsNotNew) {
  DetectAnomaly on;
  Tensor scores = from_vector({0.5, 1, 2, 3}, {2, 2}).requires_grad_();
  Tensor mask = from_vector({0, -INFINITY, 0, 0}, {2, 2});
  Tensor p = softmax(add(scores, mask), -1);
  EXPECT_EQ(p.to_vector()[1], 0.0);
  sum(p * from_vector({1, 2, 3, 4}, {2, 2})).backward();
  EXPECT_TRUE(std::isfinite(scores.grad().to_vector()[1]));
  const std::string made = error_of([] { log(from_vector({1, 0}, {2})); });
  EXPECT_TRUE(has(made, "op 'log' gave -inf in its forward: output 0 (f32[2]) holds -inf at element 1")) << made;
  const std::string nan = error_of([&] { add(mask, from_vector({1, INFINITY, 1, 1}, {2, 2})); });
  EXPECT_TRUE(has(nan, "op 'add' gave NaN in its forward")) << nan;
}

// sqrt is finite at 0 but its derivative is not: the forward passes, the backward of the
// sqrt node is named (not the division inside its formula), with the module that ran it.
TEST(Anomaly, BackwardInfNamesTheNodeAndTheModuleOfItsForward) {
  DetectAnomaly on;
  Net net(sqrt_fn, "Sqrt");
  Tensor x = from_vector({0, 1, 4}, {1, 3}).requires_grad_();
  Tensor y = sum(net.forward(x));
  EXPECT_TRUE(std::isfinite(y.item()));
  const std::string msg = error_of([&] { y.backward(); });
  EXPECT_TRUE(has(msg, "anomaly mode: op 'sqrt' gave inf in its backward: the gradient for input 0 (f32[1, 3]) holds "
                       "inf at element 0"))
      << msg;
  EXPECT_TRUE(has(msg, "the op ran in module body.1 (Sqrt)")) << msg;
  EXPECT_TRUE(has(msg, "its inputs in the forward: f32[1, 3]")) << msg;
  EXPECT_TRUE(has(msg, "the gradients it received: f32[1, 3] (finite)")) << msg;
  EXPECT_TRUE(has(msg, "the backward formula of 'sqrt' made the value")) << msg;
}

// div's backward is written with ops (-g a / (b b)); the first of them to overflow is not
// reported as a forward of its own: the div node's gradient is.
TEST(Anomaly, TheOpsOfABackwardFormulaAreNotBlamed) {
  DetectAnomaly on;
  Tensor b = from_vector({1e-20, 1}, {2}).requires_grad_();
  Tensor y = sum(div(ones({2}), b));  // 1e20: finite in f32
  const std::string msg = error_of([&] { y.backward(); });
  EXPECT_TRUE(has(msg, "anomaly mode: op 'div' gave -inf in its backward: the gradient for input 1 (f32[2]) holds -inf "
                       "at element 0"))
      << msg;
  EXPECT_TRUE(has(msg, "the op ran outside any module's forward")) << msg;
}

TEST(Anomaly, OptimiserUpdateThatOverflowsIsCaught) {
  DetectAnomaly on;
  Tensor w = from_vector({1, 2}, {2}).requires_grad_();
  optim::SGD sgd({w}, 1e38);
  sum(w * 1000.0).backward();  // w - 1e38 * 1000 overflows f32
  const std::string msg = error_of([&] { sgd.step(); });
  EXPECT_TRUE(has(msg, "anomaly mode: after the SGD step (learning rate 1e+38), parameter 0 (f32[2]) holds -inf at "
                       "element 0; its gradient was finite"))
      << msg;
}

// Off, the same computations give NaN and infinity silently; on, finite ones give the
// same values bit for bit (the checks only read). The guard restores the previous state.
TEST(Anomaly, OffChangesNothing) {
  set_detect_anomaly(false);
  {
    DetectAnomaly on;
    EXPECT_TRUE(anomaly_enabled());
    {
      DetectAnomaly off(false);
      EXPECT_FALSE(anomaly_enabled());
    }
    EXPECT_TRUE(anomaly_enabled());
  }
  ASSERT_FALSE(anomaly_enabled());
  Net logs(log_fn, "Log");
  EXPECT_TRUE(std::isnan(logs.forward(from_vector({-2, 1, 1}, {1, 3})).to_vector()[0]));
  Net roots(sqrt_fn, "Sqrt");
  Tensor x = from_vector({0, 1, 4}, {1, 3}).requires_grad_();
  sum(roots.forward(x)).backward();
  EXPECT_TRUE(std::isinf(x.grad().to_vector()[0]));

  auto run = [&](bool anomaly) {
    DetectAnomaly mode(anomaly);
    Tensor a = from_vector({0.5, 1, 4, 9, 2, 3}, {2, 3}).requires_grad_();
    Tensor out = roots.forward(a);
    sum(out * out).backward();
    std::vector<double> v = out.to_vector(), g = a.grad().to_vector();
    v.insert(v.end(), g.begin(), g.end());
    return v;
  };
  EXPECT_EQ(run(true), run(false));
}
