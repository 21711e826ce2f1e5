// The defect detectors (docs/defect.md): a ResNet backbone, a top-down feature pyramid
// merged into one map at stride 8, and an anchor-free head in the manner of FCOS (Tian et
// al. 2019): at every location of the map, a score per class, the distances to the four
// sides of the box (left, top, right, bottom, in pixels) and a centre-ness. Two models:
//
//   cnn             each frame on its own (T = 1): the baseline;
//   spatiotemporal  T frames through the same backbone and pyramid, then at every location
//                   a Transformer encoder over the T feature vectors (a learned temporal
//                   position embedding added), whose output at the last frame goes to the
//                   head: the last frame is detected with what the earlier ones showed.
//
//   apps::Detector det(apps::DetectorConfig{.model = "spatiotemporal", .frames = 4});
//   apps::DetectorMaps m = det.maps(x);                      // x [B, T, C, H, W]
//   auto t = apps::fcos_targets(boxes, labels, m, H, W);     // per image: [n, 4] + [n]
//   apps::DetectorLoss l = apps::detector_loss(m, t);        // l.total.backward()
//   auto found = apps::decode_detections(m, H, W);           // per image, after NMS
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "qiusuo/apps/resnet.h"
#include "qiusuo/nn/transformer.h"

namespace qs::apps {

struct DetectorConfig {
  std::string model = "cnn";  // "cnn" | "spatiotemporal"
  int depth = 18;             // the ResNet's
  int64_t width = 32;         // the ResNet's first stage (64 is torchvision's)
  int64_t in_channels = 1;
  int64_t classes = 6;
  int64_t channels = 64;      // pyramid and head
  int frames = 4;             // T of the spatiotemporal model (the cnn takes 1)
  int temporal_layers = 1;
  int64_t heads = 4;
  // Pixels the scene travels up the frame from one frame to the next (an inspection line's
  // strip speed, known from its encoder). The spatiotemporal model shifts each earlier
  // frame by its lag times this, rounded, before the backbone, so that a location sees the
  // same piece of strip in every frame; 0: frames as they are.
  double travel = 0;
  int64_t frames_in() const { return model == "cnn" ? 1 : frames; }
  nlohmann::json to_json() const;
  static DetectorConfig from_json(const nlohmann::json& j);  // checked: Error on bad values
};

// The head's output at stride 8 (h = ceil(H / 8) as the ResNet's stages give it):
// cls [B, K, h, w] logits, reg [B, 4, h, w] distances l, t, r, b in pixels (> 0),
// ctr [B, 1, h, w] logits.
struct DetectorMaps {
  Tensor cls, reg, ctr;
  int64_t stride = 8;
};

class Detector : public nn::Module {
 public:
  explicit Detector(const DetectorConfig& cfg, Generator& gen = default_generator());
  // x [B, T, C, H, W] with T = frames_in() (or [B, C, H, W] for the cnn).
  DetectorMaps maps(const Tensor& x);
  Tensor forward(const Tensor& x) override { return maps(x).cls; }
  const DetectorConfig& config() const { return cfg_; }
  static constexpr int64_t kStride = 8;

 private:
  DetectorConfig cfg_;
  std::shared_ptr<ResNet> backbone_;
  std::shared_ptr<nn::Conv2d> lat3_, lat4_, lat5_, smooth_;
  std::shared_ptr<nn::BatchNorm2d> smooth_bn_;
  Tensor time_embed_;  // [T, channels]
  std::vector<std::shared_ptr<nn::TransformerBlock>> temporal_;
  std::shared_ptr<nn::Sequential> cls_tower_, reg_tower_;
  std::shared_ptr<nn::Conv2d> cls_out_, reg_out_, ctr_out_;
};

// What a location of the map should predict, for each image's boxes [n, 4] (x1, y1, x2, y2
// continuous pixels) and labels [n] (i64, 0..K-1). A location (centre (j + 1/2) s, (i + 1/2) s)
// is positive for the smallest box that contains it within 1.5 s of the box's centre (FCOS's
// centre sampling; a box smaller than that still claims the location nearest its centre).
struct DetectorTargets {
  Tensor cls;       // [B, K, h, w] 0/1
  Tensor reg;       // [B, 4, h, w] l, t, r, b in pixels (0 where negative)
  Tensor ctr;       // [B, 1, h, w] centre-ness sqrt(min(l,r)/max(l,r) min(t,b)/max(t,b))
  Tensor pos;       // i64 [P] flat indices b * h * w + i * w + j of the positives
  int64_t n_pos = 0;
};
DetectorTargets fcos_targets(const std::vector<Tensor>& boxes, const std::vector<Tensor>& labels,
                             const DetectorMaps& maps);

// Sigmoid focal loss (Lin et al. 2017; alpha 0.25, gamma 2) summed over locations and
// classes / max(1, positives); GIoU loss (Rezatofighi et al. 2019) of the positives'
// boxes weighted by their centre-ness target; binary cross-entropy of the centre-ness on
// the positives. total = cls + box + ctr.
struct DetectorLoss {
  Tensor total, cls, box, ctr;
};
// What the loss terms are divided by: positive locations (focal and centre-ness terms)
// and the sum of their centre-ness targets (GIoU term). By default a batch's own; a
// data-parallel rank passes the global batch's divided by the number of ranks, so that the
// mean of the ranks' gradients is the global batch's gradient.
struct DetectorNorms {
  double pos = 0, ctr = 0;
};
DetectorNorms detector_norms(const DetectorTargets& t);
DetectorLoss detector_loss(const DetectorMaps& maps, const DetectorTargets& t);
DetectorLoss detector_loss(const DetectorMaps& maps, const DetectorTargets& t, const DetectorNorms& norms);

struct FoundBox {
  int cls = 0;
  double score = 0;
  std::array<double, 4> box{};  // x1, y1, x2, y2, continuous pixels, clipped to the image
};
// Per image: score = sqrt(sigmoid(cls) sigmoid(ctr)) above `threshold`, the best
// `pre_nms` of them decoded, non-maximum suppression per class at `nms_iou`, at most
// `max_boxes` kept, by descending score.
std::vector<std::vector<FoundBox>> decode_detections(const DetectorMaps& maps, int64_t image_h, int64_t image_w,
                                                     double threshold = 0.05, double nms_iou = 0.5,
                                                     int pre_nms = 300, int max_boxes = 100);

// Greedy non-maximum suppression: indices of the kept boxes in descending score (ties in
// input order), each box kept unless it overlaps a kept one with IoU > iou (continuous
// boxes; IoU of two empty boxes is 0).
std::vector<int> nms(const std::vector<std::array<double, 4>>& boxes, const std::vector<double>& scores, double iou);

}  // namespace qs::apps
