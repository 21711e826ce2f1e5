// The compass CNNs (shared/peers/torch_cnn.py) and the Fashion-MNIST training job
// behind `qiusuo train cnn` and `qiusuo demo`.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qiusuo/memory.h"
#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/norm.h"

namespace qs::apps {

// conv(1->32,3,p1)-bn-relu-maxpool2, conv(32->64)-bn-relu-maxpool2, conv(64->128)-bn-relu,
// global average pool, linear(128->10). x [N, 1, 28, 28] -> logits [N, 10].
// Child names (c1, b1, ..., fc) match the PyTorch peer, so state dicts exchange; the
// ReLUs are parameter-free children r1, r2, r3. forward() reaches every layer through
// child(name), so quantisation can replace layers in place (quant::prepare_qat with
// fuse groups FashionCNN::fuse_groups()).
// The three convolutions' widths are a parameter (structured pruning makes narrower
// ones, `qiusuo prune`); checkpoints of other widths say so in their config ("widths").
struct CnnWidths {
  int64_t c1 = 32, c2 = 64, c3 = 128;
  bool operator==(const CnnWidths&) const = default;
  // config["widths"] if present (checked: three positive sizes), else the defaults.
  static CnnWidths from_config(const nlohmann::json& config);
  nlohmann::json to_json() const { return {c1, c2, c3}; }
};

class FashionCNN : public nn::Module {
 public:
  explicit FashionCNN(Generator& gen = default_generator()) : FashionCNN(CnnWidths{}, gen) {}
  explicit FashionCNN(const CnnWidths& widths, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  const CnnWidths& widths() const { return widths_; }
  // {{"c1", "b1", "r1"}, {"c2", "b2", "r2"}, {"c3", "b3", "r3"}}: conv-bn-relu groups.
  static std::vector<std::vector<std::string>> fuse_groups();
  // The widths of the convolutions in a FashionCNN state dict (c1.weight, c2.weight, c3.weight
  // rows). Errors: a missing or misshapen weight.
  static CnnWidths widths_of(const nn::StateDict& state);

 private:
  CnnWidths widths_;
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

// The defaults reach >= 90% Fashion-MNIST test accuracy in 3 epochs (docs/results/bench.md,
// "Training to accuracy": lr 0.3 with Nesterov momentum; lr 0.1 without it stopped at 89.6%).
struct TrainCnnOptions {
  int epochs = 3;
  int64_t batch = 128;
  double lr = 0.3;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  bool nesterov = true;         // Nesterov momentum
  double label_smoothing = 0;   // of the training loss (cross_entropy); evaluation is unsmoothed
  // Network slimming's sparsity: bn_l1 * sum |gamma| of the batch norms added to the loss
  // (Liu et al. 2017 use 1e-4 on VGG, 1e-5 on ResNet), before `qiusuo prune --method bn-scale --global`.
  double bn_l1 = 0;
  bool hflip = false;           // mirror each training image left-right with probability 1/2
  bool sync_bn = false;         // under mpirun: batch statistics over every rank's samples
  uint64_t seed = 0;
  int threads = 0;
  bool bf16 = false;
  std::string out_dir;      // checkpoints: epoch-<e>.safetensors and last.safetensors
  std::string resume;       // checkpoint to continue from (exactly)
  // A float FashionCNN checkpoint to start from (its weights and widths, e.g. a pruned model
  // to fine-tune) instead of a random model; the optimiser and schedule start afresh.
  std::string init;
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
  std::shared_ptr<FashionCNN> model;  // the trained model (in eval mode)
};

TrainCnnResult train_fashion_cnn(const TrainCnnOptions& opt);

// The first n rows of t (all of them for n <= 0 or n >= rows), contiguous: the
// --limit-train / --limit-test cut of the CNN jobs.
Tensor first_rows(const Tensor& t, int64_t n);

// sum |gamma| over the model's batch norms (the bn_l1 penalty; undefined without any).
Tensor bn_scale_l1(const nn::Module& model);

// Accuracy and mean loss of `model` (in eval mode) on images [N,1,28,28] / labels [N].
std::pair<double, double> evaluate_classifier(nn::Module& model, const Tensor& images, const Tensor& labels,
                                              int64_t batch = 256, bool bf16 = false);

// ---- INT8 quantisation of the trained FashionCNN (docs/QUANT_KERNELS.md, quant/*.h)
struct QuantizeCnnOptions {
  std::string checkpoint;       // a FashionCNN checkpoint of `qiusuo train cnn` (float)
  std::string method = "ptq";   // ptq | qat
  int64_t calib_batches = 32;   // ptq: calibration batches of `batch` training images
  int64_t batch = 128;          // calibration and QAT batch size
  int qat_epochs = 1;           // qat: fine-tuning epochs (SGD, momentum 0.9, cosine from qat_lr)
  double qat_lr = 1e-3;
  double weight_decay = 5e-4;
  // qat: after these fractions of the fine-tuning steps the batch norms use their running
  // statistics (freeze_bn_stats) and the observers stop (the scales freeze), as PyTorch's recipe.
  double freeze_bn_at = 0.5, freeze_observers_at = 0.75;
  uint64_t seed = 0;
  std::string data_root = "/usr/share/datasets/fashion-mnist";
  int64_t limit_train = 0;      // use only the first N training images (0: all)
  int64_t limit_test = 0;
  std::string out;              // the quantised checkpoint (quant/checkpoint.h); empty: none
  bool quiet = false;
};

struct QuantizeCnnResult {
  double fp32_accuracy = 0, int8_accuracy = 0;
  double retained = 0;                 // int8_accuracy / fp32_accuracy
  double fake_quant_accuracy = 0;      // the prepared model, fake quantisation on (what convert reproduces)
  int64_t fp32_weight_bytes = 0, int8_weight_bytes = 0;  // quant::model_weight_bytes
  int64_t fp32_file_bytes = 0, int8_file_bytes = 0;      // model-only checkpoints (0 without out)
  // Resident-set growth of loading the model-only file and one forward of one image
  // (qs::resident_growth; -1 fields without out or /proc): peak and what the model keeps.
  ResidentGrowth fp32_resident, int8_resident;
  int64_t qat_steps = 0;
  double seconds = 0;
};

// Loads the float model, quantises it by `method` (ptq: prepare with the conv-bn-relu
// fusions, calibrate, convert; qat: prepare_qat, fine-tune, convert), evaluates both on
// the test set and writes `out`. Errors: a checkpoint that is not a float FashionCNN, an
// unknown method, calib_batches < 1.
QuantizeCnnResult quantize_cnn(const QuantizeCnnOptions& opt);

// A FashionCNN from a training checkpoint or a quantised one (rebuilt from its header);
// *method (if given) is "fp32" or the quantisation method.
std::shared_ptr<FashionCNN> load_fashion_cnn(const std::string& path, std::string* method = nullptr);

// qs::resident_growth of load_fashion_cnn(path) and one forward of one image; the model is
// released before returning.
ResidentGrowth cnn_resident_growth(const std::string& path);

}  // namespace qs::apps
