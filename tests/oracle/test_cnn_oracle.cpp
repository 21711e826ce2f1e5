// Golden test: the peer CNN with PyTorch's weights gives PyTorch's logits, loss, every
// parameter gradient and the updated batch-norm running statistics.
// Tolerances: f32 throughout, different summation orders (oneDNN vs PyTorch's own
// kernels) over up to 576-term dot products and 8x28x28 batch statistics:
// logits/loss atol 1e-4 rtol 1e-4, gradients atol 1e-4 rtol 1e-3.
#include <gtest/gtest.h>

#include "oracle_util.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/io/safetensors.h"
#include "qiusuo/ops.h"

using namespace qs;
using qs::testing::all_close;

TEST(OracleCNN, LogitsLossGradientsMatchPyTorch) {
  std::string path = qs::testing::temp_dir("cnn_oracle") + "/cnn_oracle.safetensors";
  qs::testing::run_oracle("cnn_oracle.py", path);
  auto file = io::load_safetensors(path);
  std::map<std::string, Tensor> t(file.tensors.begin(), file.tensors.end());

  apps::FashionCNN model;
  nn::StateDict sd;
  for (auto& [k, v] : file.tensors)
    if (k.rfind("param.", 0) == 0) sd.emplace_back(k.substr(6), v);
  sd.emplace_back("b1.num_batches_tracked", zeros({}, DType::i64));
  sd.emplace_back("b2.num_batches_tracked", zeros({}, DType::i64));
  sd.emplace_back("b3.num_batches_tracked", zeros({}, DType::i64));
  model.load_state_dict(sd);
  model.train();

  Tensor logits = model(t.at("input"));
  Tensor loss = cross_entropy(logits, t.at("target"));
  EXPECT_TRUE(all_close(logits, t.at("logits"), 1e-4, 1e-4));
  EXPECT_NEAR(loss.item(), t.at("loss").item(), 1e-5);
  loss.backward();
  int checked = 0;
  for (auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(p.grad().defined());
    EXPECT_TRUE(all_close(p.grad(), t.at("grad." + name), 1e-4, 1e-3));
    ++checked;
  }
  EXPECT_EQ(checked, 14);
  for (auto& [name, b] : model.named_buffers())
    if (name.find("running") != std::string::npos) {
      SCOPED_TRACE(name);
      EXPECT_TRUE(all_close(b, t.at("after." + name), 1e-5, 1e-4));
    }
}
