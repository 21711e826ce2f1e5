#include "qiusuo/autocast.h"

#include <cstdio>

#include "ops/op.h"

namespace qs {

namespace {
thread_local int g_autocast_depth = 0;
}

struct Autocast::Hook : ops::DispatchHook {
  // No cache of bf16 weight copies: a cached copy would go stale when an optimiser
  // updates the weight in place, and its graph node is freed by the first backward.
  // Casting per use costs one pass over each weight per forward.
  static Tensor lowp(const Tensor& x) {
    if (!x.defined() || x.dtype() != DType::f32) return x;
    return x.to(DType::bf16);
  }

  // The policy, by the op table's flags:
  //   kLowp     operands (not biases, which are added in f32) go to bf16; the result is
  //             f32, or bf16 with kLowpOut (convolution: its consumers take bf16)
  //   kBf16     bf16 activations pass as they are (batch norm, max pooling, copies, casts)
  //   kView     views alias whatever they are given
  //   the rest  forward ops (kDiff) and kF32 rows get bf16 inputs widened to f32; backward
  //             primitives (no kDiff) take what their op's backward hands them
  void before(ops::OpKind op, std::vector<Tensor>& in, Attrs& attrs) override {
    uint32_t flags = ops::op_def(op).flags;
    if (flags & ops::kLowp) {
      size_t n = std::min<size_t>(in.size(), 2);
      for (size_t i = 0; i < n; ++i) in[i] = lowp(in[i]);
      if (flags & ops::kLowpOut) attrs.set("out_dtype", std::string("bf16"));
    } else if (flags & (ops::kF32 | ops::kDiff) && !(flags & (ops::kBf16 | ops::kView))) {
      for (auto& x : in)
        if (x.defined() && x.dtype() == DType::bf16) x = x.to(DType::f32);
    }
  }
};

Autocast::Autocast(bool enabled) {
  if (!enabled) return;
  static const bool warned = [] {
    if (!native_bf16_available())
      std::fprintf(stderr,
                   "qiusuo: this CPU has no native bf16 matmul/convolution (no AVX512-BF16 or AMX); autocast keeps "
                   "bf16 numerics but widens operands to f32 for the products, so expect no speed-up\n");
    return true;
  }();
  (void)warned;
  hook_ = std::make_unique<Hook>();
  ops::push_dispatch_hook(hook_.get());
  ++g_autocast_depth;
}

Autocast::~Autocast() {
  if (!hook_) return;
  ops::pop_dispatch_hook(hook_.get());
  --g_autocast_depth;
}

bool autocast_active() { return g_autocast_depth > 0; }

}  // namespace qs
