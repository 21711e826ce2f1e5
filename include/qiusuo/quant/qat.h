// Conv-bn folding, the prepared (QAT / PTQ) layers, and prepare / prepare_qat.
//
// A prepared layer computes in float with fake quantisation where INT8 inference will
// round: its input ("input_fake_quant"), its weight ("weight_fake_quant", per-channel
// symmetric s8 by default) and its output after the optional fused ReLU
// ("activation_post_process"). In PTQ (prepare) the same layers only observe: fake
// quantisation is disabled until enable_fake_quant(model) (to evaluate the simulated
// INT8 model) and convert reads the observers' parameters.
//
// What quant::convert needs from each prepared layer (PreparedLayer):
//   kind() / relu() / spatial_dims() / conv_options()   the layer's geometry,
//   folded_weight() / folded_bias()   the float weight and bias the INT8 layer
//                                      quantises (batch norm folded in, eval statistics),
//   weight_qparams()                   per-channel s8 symmetric, axis 0,
//   input_qparams() / output_qparams() per-tensor activation parameters (output after ReLU).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/quant/fake_quantize.h"
#include "qiusuo/quant/qconfig.h"

namespace qs::quant {

// Inference folding of batch norm into the preceding convolution (eval statistics):
//   w' = w * gamma / sqrt(var + eps) (per output channel), b' = (b - mean) * gamma / sqrt(var + eps) + beta
// (b = 0 without a conv bias; gamma = 1, beta = 0 without affine). Returns a new ConvNd
// with a bias; the inputs are not modified. Errors: bn's channels != conv's out channels.
std::shared_ptr<nn::ConvNd> fold_conv_bn(const nn::ConvNd& conv, const nn::BatchNorm& bn);

// Folded weight and bias as tensors (no module): the formula above.
std::pair<Tensor, Tensor> fold_conv_bn_weights(const Tensor& w, const Tensor& b, const nn::BatchNorm& bn);

class PreparedLayer : public nn::Module {
 public:
  enum class Kind { linear, conv, conv_bn };
  Kind kind() const { return kind_; }
  bool relu() const { return relu_; }
  int spatial_dims() const { return dims_; }  // 0 for linear
  const nn::ConvOptions& conv_options() const { return conv_opt_; }
  const Tensor& weight() const { return weight_; }  // the trained float weight (unfolded)
  const Tensor& bias() const { return bias_; }      // may be undefined
  virtual Tensor folded_weight() const { return weight_.detach(); }
  virtual Tensor folded_bias() const;               // zeros when there is no bias
  QParams weight_qparams() const { return weight_fq_->qparams(); }
  QParams input_qparams() const { return input_fq_->qparams(); }
  QParams output_qparams() const { return output_fq_->qparams(); }
  FakeQuantize& weight_fake_quant() const { return *weight_fq_; }
  FakeQuantize& input_fake_quant() const { return *input_fq_; }
  FakeQuantize& output_fake_quant() const { return *output_fq_; }
  std::string extra_repr() const override;

 protected:
  PreparedLayer(std::string type_name, Kind kind, bool relu, int dims);
  void add_fake_quants(const LayerQConfig& cfg, int64_t out_channels);
  Tensor conv_forward(const Tensor& x, const Tensor& w, const Tensor& b) const;
  Kind kind_;
  bool relu_;
  int dims_;
  nn::ConvOptions conv_opt_;
  Tensor weight_, bias_;
  std::shared_ptr<FakeQuantize> input_fq_, weight_fq_, output_fq_;
};

// Linear (+ReLU) with fake-quantised input, weight and output. Takes over the float
// layer's weight and bias tensors (same handles, same values).
class QatLinear : public PreparedLayer {
 public:
  QatLinear(const nn::Linear& linear, const LayerQConfig& cfg, bool relu);
  Tensor forward(const Tensor& x) override;
};

// Conv (+ReLU); in PTQ also the result of folding a conv-bn pair.
class QatConv : public PreparedLayer {
 public:
  QatConv(const nn::ConvNd& conv, const LayerQConfig& cfg, bool relu);
  Tensor forward(const Tensor& x) override;
};

// PyTorch's _ConvBnNd (+ReLU): the convolution runs with the fake-quantised folded
// weight fq(w * gamma / sqrt(running_var + eps)), its output is divided back by that
// factor, the conv bias added, then the batch norm ("bn" child) runs as usual (batch
// statistics in training, updating the running ones). freeze_bn() makes it use the
// running statistics from then on (saved nowhere: call it again after a resume).
class QatConvBn : public PreparedLayer {
 public:
  QatConvBn(const nn::ConvNd& conv, std::shared_ptr<nn::BatchNorm> bn, const LayerQConfig& cfg, bool relu);
  Tensor forward(const Tensor& x) override;
  void freeze_bn(bool on = true) { frozen_ = on; }
  bool bn_frozen() const { return frozen_; }
  nn::BatchNorm& bn() const { return *bn_; }
  Tensor folded_weight() const override;
  Tensor folded_bias() const override;

 private:
  Tensor bn_scale_factor() const;  // gamma / sqrt(running_var + eps)
  std::shared_ptr<nn::BatchNorm> bn_;
  bool frozen_ = false;
};

struct PrepareOptions {
  // Explicit fusions: groups of sibling module names, e.g. {"c1", "b1", "r1"} (conv, bn,
  // relu), {"fc", "relu"}. Besides these, consecutive conv-bn(-relu), conv-relu and
  // linear-relu children of every Sequential are fused automatically.
  std::vector<std::vector<std::string>> fuse;
  bool auto_fuse_sequential = true;
};

// QAT: fuse, then replace every Linear / ConvNd / fused group (unless skipped) by its
// prepared layer with observers and fake quantisation enabled; fused bn and relu
// modules become Identity. In place; the model must be in training mode for QAT.
// Parameter names: "<layer>.weight", "<layer>.bias", "<layer>.bn.*", and the fake-quant
// state "<layer>.{input,weight}_fake_quant.*", "<layer>.activation_post_process.*".
// Errors (qs::Error, naming the module): an unsupported module with parameters (unless
// qconfig.skip_unsupported), a fuse group whose modules are not siblings or do not form
// conv-bn(-relu) / conv-relu / linear-relu, and a skip_names entry naming no module.
void prepare_qat(nn::Module& model, const QConfig& qconfig, const PrepareOptions& opt = {});
// PTQ: the same, but conv-bn pairs are folded for inference (fold_conv_bn) and every
// fake quantisation is disabled: the prepared model computes the float model's values
// while its observers collect ranges. Calibrate with calibrate() in eval mode.
void prepare(nn::Module& model, const QConfig& qconfig, const PrepareOptions& opt = {});

// Runs model.eval() and forward over each batch (no gradients); errors on an empty set.
void calibrate(nn::Module& model, const std::vector<Tensor>& batches);

// Every prepared layer of the model, with its dotted name.
std::vector<std::pair<std::string, std::shared_ptr<PreparedLayer>>> prepared_layers(const nn::Module& model);
// Switch every FakeQuantize in the model (PyTorch's torch.ao.quantization.enable_observer ...).
void enable_observer(nn::Module& model, bool on = true);
void enable_fake_quant(nn::Module& model, bool on = true);
void freeze_bn_stats(nn::Module& model);

}  // namespace qs::quant
