#include "qiusuo/autocast.h"

#include <cstdio>
#include <unordered_map>

#include "ops/op.h"

namespace qs {

namespace {
thread_local int g_autocast_depth = 0;
}

struct Autocast::Hook : ops::DispatchHook {
  // bf16 copies of leaf tensors (weights), alive for the scope.
  std::unordered_map<const TensorImpl*, Tensor> cache;

  Tensor lowp(const Tensor& x) {
    if (!x.defined() || x.dtype() != DType::f32) return x;
    bool cacheable = x.is_leaf() && x.requires_grad();
    if (cacheable) {
      auto it = cache.find(x.impl());
      if (it != cache.end()) return it->second;
    }
    Tensor y = x.to(DType::bf16);
    if (cacheable) cache.emplace(x.impl(), y);
    return y;
  }

  void before(ops::OpKind op, std::vector<Tensor>& in, Attrs& attrs) override {
    uint32_t flags = ops::op_def(op).flags;
    if (flags & ops::kLowp) {
      // Operands (not biases, which are added in f32) go to bf16.
      size_t n = std::min<size_t>(in.size(), 2);
      for (size_t i = 0; i < n; ++i) in[i] = lowp(in[i]);
    } else if (flags & ops::kF32) {
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
