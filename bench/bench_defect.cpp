// The ResNet-18 defect detector (per-frame, the cnn model of docs/defect.md): one AdamW
// training step and one inference forward on 8 grey 128 x 128 frames, beside the same
// model in PyTorch (bench/peers/torch_defect.py).
#include "bench/bench.h"
#include "qiusuo/apps/detector.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"

namespace qs::bench {

namespace {

apps::DetectorConfig resnet18_detector() {
  apps::DetectorConfig c;
  c.model = "cnn";
  c.width = 64;  // torchvision's ResNet-18
  c.channels = 64;
  return c;
}

// Three boxes an image, fixed: the targets are computed once, outside the timed steps (as
// the peer does).
std::pair<std::vector<Tensor>, std::vector<Tensor>> fixed_boxes(int64_t B) {
  std::vector<Tensor> boxes, labels;
  for (int64_t b = 0; b < B; ++b) {
    const double o = double(4 * b);
    boxes.push_back(from_vector({10 + o, 12, 50 + o, 40, 60, 64 + o, 100, 120, 80, 8, 120, 30}, {3, 4}));
    labels.push_back(from_vector({double(b % 6), double((b + 2) % 6), double((b + 4) % 6)}, {3}, DType::i64));
  }
  return {boxes, labels};
}

std::vector<nlohmann::json> defect_train_b8_128(const Options& o) {
  Generator g(0);
  apps::Detector m(resnet18_detector(), g);
  optim::AdamW opt(m.parameters(), 1e-3);
  const int64_t B = 8;
  const Tensor x = randn({B, 1, 1, 128, 128}, DType::f32, &g);
  const auto [boxes, labels] = fixed_boxes(B);
  apps::DetectorTargets t;
  {
    NoGrad ng;
    t = apps::fcos_targets(boxes, labels, m.maps(x));
  }
  m.train();
  const double s = time_per_call(
      [&] {
        opt.zero_grad();
        apps::detector_loss(m.maps(x), t).total.backward();
        opt.step();
      },
      1, o.iters ? o.iters : 4);
  return {{{"workload", "defect_train_b8_128"},
           {"frames_per_s", double(B) / s}, {"step_ms", s * 1e3}}};
}

std::vector<nlohmann::json> defect_infer_b8_128(const Options& o) {
  Generator g(0);
  apps::Detector m(resnet18_detector(), g);
  m.eval();
  const Tensor x = randn({8, 1, 1, 128, 128}, DType::f32, &g);
  NoGrad ng;
  const double s = time_per_call([&] { m.maps(x); }, 1, o.iters ? o.iters : 10);
  return {{{"workload", "defect_infer_b8_128"}, {"ms", s * 1e3}}};
}

}  // namespace

std::vector<Workload> defect_workloads() {
  return {{"defect_train_b8_128", "ResNet-18 defect detector (FCOS-style head), one AdamW step on 8 grey 128x128 frames",
           defect_train_b8_128},
          {"defect_infer_b8_128", "ResNet-18 defect detector, inference on 8 grey 128x128 frames (ms)",
           defect_infer_b8_128}};
}

}  // namespace qs::bench
