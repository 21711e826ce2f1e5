// bf16 mixed precision (the CPU equivalent of torch.autocast): inside an Autocast
// scope, ops flagged kLowp in the op table (matmul, linear, convolution) run with
// bf16 operands and f32 accumulation; matmul and linear return f32, convolution returns
// bf16 (kLowpOut), and the ops that follow a convolution in the CNNs (batch norm with its
// ReLU, max pooling: kBf16) read and write bf16 activations with f32 statistics, so a
// conv net's activations and their gradients stay bf16 end to end, as in PyTorch. Every
// other op widens a bf16 input to f32 (softmax, normalisation, losses, reductions,
// elementwise). Parameters stay f32 (the master weights) and are cast to bf16 at each
// use; the casts are recorded by autograd, so gradients flow back to the f32 weights in
// f32. A scope may span several training steps. src/ops/autocast.cpp has the rules.
#pragma once
#include <memory>

#include "qiusuo/tensor.h"

namespace qs {

class Autocast {
 public:
  explicit Autocast(bool enabled = true);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  struct Hook;
  std::unique_ptr<Hook> hook_;
};

bool autocast_active();

// Whether this CPU runs bf16 matmul/convolution natively through oneDNN (AVX512-BF16
// or AMX). Without it, bf16 operands are widened to f32 for the product: the same
// numbers, but no speed-up.
bool native_bf16_available();

}  // namespace qs
