// The discrete decisions of a forward (and backward) pass, recorded at the dispatch
// point: tests compare gradients only where both sides decided alike (see
// test_step_oracle.cpp for why rounding may decide near-ties either way).
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "ops/op.h"
#include "qiusuo/autograd.h"
#include "qiusuo/tensor.h"

namespace qs::testing {

// Records, while alive, the decisions of the ops dispatched on this thread (top-level
// calls only: kernels may call ops themselves), one vector per op call in call order:
// the sign pattern after a ReLU (the relu op, or batch_norm's fused one) and every integer
// output of a forward op (max-pool, top-k, max_dim and argmax indices). Fake
// quantisation's rounding is not one: tens of its codes per layer sit within rounding of a
// half step, and one code a step apart moves one activation by one step, which the
// gradients follow smoothly (its straight-through mask depends on the clamp range only).
class Decisions : public ops::DispatchHook {
 public:
  Decisions() { ops::push_dispatch_hook(this); }
  ~Decisions() override { ops::pop_dispatch_hook(this); }
  void before(ops::OpKind, std::vector<Tensor>&, Attrs&) override {
    if (!busy_) ++depth_;
  }
  void after(const ops::OpCall& call) override {
    if (busy_ || --depth_ != 0 || (ops::op_def(call.op).flags & ops::kView)) return;
    busy_ = true;
    {
      NoGrad ng;
      using K = ops::OpKind;
      const std::string name = ops::op_def(call.op).name;
      if (call.op == K::relu || (call.op == K::batch_norm && call.attrs.b("relu", false))) {
        std::vector<int64_t> signs;
        for (double v : call.out[0].to_vector()) signs.push_back(v > 0);
        taken.push_back(std::move(signs));
      } else if (name.find("backward") == std::string::npos) {
        for (auto& o : call.out)
          if (o.dtype() == DType::i64 || o.dtype() == DType::i32 || o.dtype() == DType::b8) {
            std::vector<int64_t> ints;
            for (double v : o.to_vector()) ints.push_back(int64_t(v));
            taken.push_back(std::move(ints));
          }
      }
    }
    busy_ = false;
  }
  std::vector<std::vector<int64_t>> taken;

 private:
  int depth_ = 0;
  bool busy_ = false;
};



}  // namespace qs::testing
