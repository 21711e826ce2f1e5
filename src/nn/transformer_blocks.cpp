// Transformer blocks (GPT-2 and DeepSeek styles), their MLPs, and module dtype conversion.
#include "qiusuo/autograd.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

namespace qs::nn {

GeluMLP::GeluMLP(int64_t d_model, int64_t hidden, bool bias, Generator& gen) : Module("GeluMLP") {
  c_fc_ = register_module("c_fc", std::make_shared<Linear>(d_model, hidden, bias, gen));
  c_proj_ = register_module("c_proj", std::make_shared<Linear>(hidden, d_model, bias, gen));
}
// Through child(): quantisation may have replaced the projections. With no gradient to
// record, c_fc and GELU run as one linear with the gelu activation (one pass over the
// [.., hidden] activations instead of two).
Tensor GeluMLP::forward(const Tensor& x) {
  ModuleScope scope(*this);
  const auto fc = child("c_fc");
  Tensor h = fc.get() == c_fc_.get() && !grad_enabled() ? linear(x, c_fc_->weight(), c_fc_->bias(), "gelu")
                                                          : gelu(fc->forward(x));
  return child("c_proj")->forward(h);
}

TransformerBlock::TransformerBlock(bool rms_norm, int64_t d_model, double norm_eps,
                                   std::shared_ptr<AttentionLayer> attn, std::shared_ptr<Module> mlp)
    : Module("TransformerBlock") {
  QS_CHECK(attn && mlp, "TransformerBlock: the attention and mlp children must be given");
  auto norm = [&]() -> std::shared_ptr<Module> {
    if (rms_norm) return std::make_shared<RMSNorm>(Shape{d_model}, norm_eps);
    return std::make_shared<LayerNorm>(Shape{d_model}, norm_eps);
  };
  ln_1_ = register_module("ln_1", norm());
  attn_ = register_module("attn", std::move(attn));
  ln_2_ = register_module("ln_2", norm());
  mlp_ = register_module("mlp", std::move(mlp));
}

Tensor TransformerBlock::forward(const Tensor& x, const AttentionArgs& args) {
  ModuleScope scope(*this);
  Tensor h = x + attn_->attend(ln_1_->forward(x), args).out;
  return h + mlp_->forward(ln_2_->forward(h));
}

void to_dtype_(Module& m, DType dt) {
  QS_CHECK(is_floating(dt), "to_dtype_: expected a floating dtype, got {}", dtype_name(dt));
  NoGrad ng;
  auto convert = [&](const NamedTensors& list) {
    for (auto& [name, t] : list) {
      if (!t.is_floating_point() || t.dtype() == dt) continue;
      // Rewrites the shared TensorImpl, so every handle (module members, optimisers) sees it.
      Tensor c = t.to(dt).contiguous();
      TensorImpl* impl = t.impl();
      impl->storage = c.storage();
      impl->shape = c.shape();
      impl->strides = c.strides();
      impl->offset = c.offset();
      impl->dtype = dt;
      Tensor(t).zero_grad();
    }
  };
  convert(m.named_parameters());
  convert(m.named_buffers());
}

}  // namespace qs::nn
