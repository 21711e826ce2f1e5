// The compass CNNs (shared/peers/torch_cnn.py) and the Fashion-MNIST training job
// behind `qiusuo train cnn` and `qiusuo demo`.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/norm.h"

namespace qs::apps {

// conv(1->32,3,p1)-bn-relu-maxpool2, conv(32->64)-bn-relu-maxpool2, conv(64->128)-bn-relu,
// global average pool, linear(128->10). x [N, 1, 28, 28] -> logits [N, 10].
// Child names (c1, b1, ..., fc) match the PyTorch peer, so state dicts exchange; the
// ReLUs are parameter-free children r1, r2, r3. forward() reaches every layer through
// child(name), so quantisation can replace layers in place (quant::prepare_qat with
// fuse groups fashion_cnn_fuse_groups()).
class FashionCNN : public nn::Module {
 public:
  explicit FashionCNN(Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  // {{"c1", "b1", "r1"}, {"c2", "b2", "r2"}, {"c3", "b3", "r3"}}: conv-bn-relu groups.
  static std::vector<std::vector<std::string>> fuse_groups();
};

// The 3D CNN of the peer: conv3d(1->16)-bn-relu-maxpool2, conv3d(16->32)-bn-relu-maxpool2,
// conv3d(32->64)-bn-relu, mean over D,H,W, linear(64->2). x [N, 1, D, H, W] -> [N, 2].
class CNN3D : public nn::Module {
 public:
  explicit CNN3D(Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Conv3d> c1_, c2_, c3_;
  std::shared_ptr<nn::BatchNorm3d> b1_, b2_, b3_;
  std::shared_ptr<nn::Linear> fc_;
};

struct TrainCnnOptions {
  int epochs = 3;
  int64_t batch = 128;
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  uint64_t seed = 0;
  int threads = 0;
  bool bf16 = false;
  std::string out_dir;      // checkpoints: epoch-<e>.safetensors and last.safetensors
  std::string resume;       // checkpoint to continue from (exactly)
  std::string data_root = "/usr/share/datasets/fashion-mnist";
  int64_t limit_train = 0;  // use only the first N training images (0: all)
  int64_t limit_test = 0;
  int64_t save_every = 0;   // also checkpoint every N steps (0: only at epoch ends)
  int64_t stop_after = 0;   // stop after this global step (tests of resume; 0: never)
  bool quiet = false;
};

struct TrainCnnResult {
  double test_accuracy = 0;
  double test_loss = 0;
  double final_train_loss = 0;
  double images_per_s = 0;
  double seconds = 0;
  int64_t steps = 0;
  std::vector<float> losses;  // every step's training loss, in order (this run only)
  std::string checkpoint;     // the last checkpoint written
};

TrainCnnResult train_fashion_cnn(const TrainCnnOptions& opt);

// Accuracy and mean loss of `model` (in eval mode) on images [N,1,28,28] / labels [N].
std::pair<double, double> evaluate_classifier(nn::Module& model, const Tensor& images, const Tensor& labels,
                                              int64_t batch = 256, bool bf16 = false);

}  // namespace qs::apps
