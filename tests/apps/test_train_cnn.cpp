// The Fashion-MNIST training job: exact resume (mid-epoch and at an epoch end), clear
// errors for checkpoints that do not belong to it, a diverging run in anomaly mode.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "qiusuo/apps/cnn.h"
#include "qiusuo/autograd.h"
#include "qiusuo/io/checkpoint.h"
#include "test_util.h"

using namespace qs;

namespace {

apps::TrainCnnOptions small_run(const std::string& dir) {
  apps::TrainCnnOptions o;
  o.epochs = 2;
  o.batch = 64;
  o.limit_train = 512;  // 8 steps per epoch
  o.limit_test = 256;
  o.threads = 2;
  o.seed = 7;
  o.hflip = true;             // the flips' coins must replay on resume too
  o.label_smoothing = 0.1;
  o.quiet = true;
  o.out_dir = dir;
  return o;
}

using qs::testing::error_of;

}  // namespace

TEST(TrainCnn, ResumeIsExactMidEpochAndAtEpochEnd) {
  std::string dir = qs::testing::temp_dir("train_full");
  apps::TrainCnnResult full = apps::train_fashion_cnn(small_run(dir));
  ASSERT_EQ(full.losses.size(), 16u);
  EXPECT_TRUE(std::filesystem::exists(dir + "/epoch-1.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/epoch-2.safetensors"));

  for (int64_t stop : {5, 8}) {  // mid-epoch, and exactly at the end of epoch 1
    SCOPED_TRACE(stop);
    std::string d = qs::testing::temp_dir("train_part" + std::to_string(stop));
    apps::TrainCnnOptions first = small_run(d);
    first.stop_after = stop;
    apps::TrainCnnResult a = apps::train_fashion_cnn(first);
    ASSERT_EQ(a.losses.size(), size_t(stop));
    apps::TrainCnnOptions second = small_run(d);
    second.resume = a.checkpoint;
    apps::TrainCnnResult b = apps::train_fashion_cnn(second);
    ASSERT_EQ(b.losses.size(), 16u - size_t(stop));
    for (size_t i = 0; i < b.losses.size(); ++i)
      EXPECT_EQ(b.losses[i], full.losses[size_t(stop) + i]) << "step " << stop + int64_t(i) + 1;  // bit for bit
    EXPECT_EQ(b.test_accuracy, full.test_accuracy);
  }
}

TEST(TrainCnn, RejectsCheckpointsItCannotResume) {
  std::string dir = qs::testing::temp_dir("train_errors");
  apps::TrainCnnOptions o = small_run(dir);
  o.stop_after = 2;
  std::string ckpt = apps::train_fashion_cnn(o).checkpoint;
  io::Checkpoint ck = io::load_checkpoint(ckpt);

  // A checkpoint of another model.
  io::Checkpoint other = ck;
  other.config["model"] = "SomethingElse";
  io::save_checkpoint(dir + "/other.safetensors", other);
  apps::TrainCnnOptions r = small_run(dir);
  r.resume = dir + "/other.safetensors";
  EXPECT_NE(error_of([&] { apps::train_fashion_cnn(r); }).find("not a FashionCNN training checkpoint"), std::string::npos);

  // Right model name, wrong weights: the error names the tensor, expected and found.
  io::Checkpoint bad = ck;
  for (auto& [name, t] : bad.model)
    if (name == "c1.weight") t = zeros({16, 1, 3, 3});
  io::save_checkpoint(dir + "/bad.safetensors", bad);
  r.resume = dir + "/bad.safetensors";
  std::string msg = error_of([&] { apps::train_fashion_cnn(r); });
  EXPECT_NE(msg.find("c1.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[32, 1, 3, 3]"), std::string::npos) << msg;

  // Different settings cannot resume exactly.
  r.resume = ckpt;
  r.batch = 32;
  EXPECT_NE(error_of([&] { apps::train_fashion_cnn(r); }).find("batch"), std::string::npos);

  // A truncated file: an I/O error naming the file, and the original is untouched.
  std::string trunc = dir + "/trunc.safetensors";
  std::filesystem::copy_file(ckpt, trunc);
  std::filesystem::resize_file(trunc, std::filesystem::file_size(trunc) / 2);
  r = small_run(dir);
  r.resume = trunc;
  msg = error_of([&] { apps::train_fashion_cnn(r); });
  EXPECT_NE(msg.find("trunc.safetensors"), std::string::npos) << msg;
  EXPECT_NO_THROW(io::load_checkpoint(ckpt));
}

// A diverging run (learning rate 1e30) with a checkpoint every step: in anomaly mode it stops
// at the op that first made a non-finite value, named with its module, not at the loss check
// one op later, and every checkpoint it wrote is finite.
TEST(TrainCnn, AnomalyModeStopsAtTheOpThatDiverged) {
  std::string dir = qs::testing::temp_dir("train_anomaly");
  apps::TrainCnnOptions o = small_run(dir);
  o.epochs = 1;
  o.lr = 1e30;
  o.save_every = 1;
  std::string msg;
  {
    DetectAnomaly on;
    msg = error_of([&] { apps::train_fashion_cnn(o); });
  }
  EXPECT_EQ(msg.rfind("anomaly mode: ", 0), 0u) << msg;
  EXPECT_NE(msg.find(" in module "), std::string::npos) << msg;
  int checkpoints = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() != ".safetensors") continue;
    ++checkpoints;
    for (const auto& [name, t] : io::load_checkpoint(f.path().string()).model)
      for (double v : t.to_vector()) ASSERT_TRUE(std::isfinite(v)) << f.path() << " " << name;
  }
  EXPECT_GE(checkpoints, 1);  // step 1's, before the weights it wrote blew up step 2
  // Without anomaly mode the same run stops at the loss check.
  DetectAnomaly off(false);  // also when QS_DETECT_ANOMALY=1 is set
  EXPECT_NE(error_of([&] { apps::train_fashion_cnn(o); }).find("the training loss is"), std::string::npos);
}
