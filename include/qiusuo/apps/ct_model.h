// The CT nodule classifier (docs/ct.md): a residual 3D CNN on [N, 1, S, S, S] patches, in
// three variants for the ablation of the handbook's medical case.
//
//   base          stem, three residual stages (w, 2w, 4w channels at S, S/2, S/4), global
//                 average pooling of the last, a linear layer;
//   fusion        + multi-scale feature fusion, top-down as a feature pyramid (Lin et al.
//                 2017): the deepest features upsampled (trilinear) and merged with the
//                 stage above by concatenation and a 1x1x1 convolution, twice; the classifier
//                 reads the pooled features of all three scales;
//   fusion+gates  + attention gates (Oktay et al. 2018, "Attention U-Net"): before merging,
//                 each skip feature map x is multiplied by a gate computed from the coarser
//                 signal g: alpha = sigmoid(psi(relu(theta(x) + phi(g)))), theta a strided
//                 1x1x1 convolution bringing x to g's grid, alpha upsampled back to x's.
//                 forward_gates returns the gate maps for display.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/norm.h"
#include <nlohmann/json_fwd.hpp>

namespace qs::apps {

// conv3-bn-relu-conv3-bn plus the input (through a 1x1x1 conv and bn when the width
// changes), then relu (He et al. 2016's basic block, in 3D).
class ResBlock3d : public nn::Module {
 public:
  ResBlock3d(int64_t in, int64_t out, Generator& gen);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Conv3d> conv1_, conv2_, skip_;
  std::shared_ptr<nn::BatchNorm3d> bn1_, bn2_, skip_bn_;
};

// Additive attention gate: x [N, Fx, 2D, 2H, 2W] gated by g [N, Fg, D, H, W].
class AttentionGate3d : public nn::Module {
 public:
  AttentionGate3d(int64_t fx, int64_t fg, int64_t inner, Generator& gen);
  Tensor forward(const Tensor& x) override;  // error: needs the gating signal
  // (x * alpha, alpha [N, 1, 2D, 2H, 2W]).
  std::pair<Tensor, Tensor> gate(const Tensor& x, const Tensor& g);

 private:
  std::shared_ptr<nn::Conv3d> theta_, phi_, psi_;
};

struct CtNetConfig {
  std::string variant = "fusion+gates";  // "base" | "fusion" | "fusion+gates"
  int64_t width = 8;
  int64_t classes = 2;
  int64_t patch = 32;  // S: patches are S^3 voxels (a multiple of 4)
  nlohmann::json to_json() const;
  static CtNetConfig from_json(const nlohmann::json& j);
};

class CtNet : public nn::Module {
 public:
  explicit CtNet(const CtNetConfig& cfg, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;  // x [N, 1, S, S, S] -> logits [N, classes]
  // The same, and the gate maps (empty without gates): at S/2, then at S; and the last
  // stage's features [N, 4w, S/4, S/4, S/4] (for Grad-CAM) when `features` is given.
  Tensor forward_gates(const Tensor& x, std::vector<Tensor>* gates, Tensor* features = nullptr);
  const CtNetConfig& config() const { return cfg_; }

 private:
  CtNetConfig cfg_;
  std::shared_ptr<nn::Conv3d> stem_;
  std::shared_ptr<nn::BatchNorm3d> stem_bn_;
  std::shared_ptr<ResBlock3d> s1_, s2_, s3_;
  std::shared_ptr<nn::Conv3d> lat2_, lat1_;
  std::shared_ptr<nn::BatchNorm3d> lat2_bn_, lat1_bn_;
  std::shared_ptr<AttentionGate3d> gate2_, gate1_;
  std::shared_ptr<nn::Linear> fc_;
};

// Grad-CAM (Selvaraju et al. 2017) on the last stage, for class `cls`: the stage's feature
// maps weighted by the spatial mean of the class logit's gradient, summed over channels,
// ReLU, upsampled (trilinear) to the patch and scaled to [0, 1] per sample. x [N, 1, S, S, S]
// -> [N, 1, S, S, S]. Runs in eval mode; the model's parameters get no gradient.
Tensor grad_cam(CtNet& model, const Tensor& x, int64_t cls = 1);

}  // namespace qs::apps
