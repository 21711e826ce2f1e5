// Golden test: the peer CNN with PyTorch's weights gives PyTorch's logits, loss, every
// parameter gradient and the updated batch-norm running statistics.
// Tolerances: f32 throughout, different summation orders (oneDNN vs PyTorch's own
// kernels) over up to 576-term dot products and 8x28x28 batch statistics:
// logits/loss atol 1e-4 rtol 1e-4, gradients atol 1e-4 rtol 1e-3.
// The oracle writes several data sets with PyTorch's discrete decisions (max-pool
// winners, ReLU signs; cnn_oracle.py says why): logits and loss are compared on every
// one, gradients on the first whose decisions our forward repeats.
#include <gtest/gtest.h>

#include "decisions.h"
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
  const int candidates = std::stoi(file.metadata.at("candidates"));

  nn::StateDict sd;
  for (auto& [k, v] : file.tensors)
    if (k.rfind("param.", 0) == 0) sd.emplace_back(k.substr(6), v);
  sd.emplace_back("b1.num_batches_tracked", zeros({}, DType::i64));
  sd.emplace_back("b2.num_batches_tracked", zeros({}, DType::i64));
  sd.emplace_back("b3.num_batches_tracked", zeros({}, DType::i64));

  int compared = -1;
  for (int c = 0; c < candidates && compared < 0; ++c) {
    SCOPED_TRACE("data set " + std::to_string(c));
    const std::string p = "s" + std::to_string(c) + ".";
    apps::FashionCNN model;
    model.load_state_dict(sd);
    model.train();
    Tensor logits, loss;
    std::vector<std::vector<int64_t>> ours;
    {
      qs::testing::Decisions d;
      logits = model(t.at(p + "input"));
      loss = cross_entropy(logits, t.at(p + "target"));
      ours = std::move(d.taken);
    }
    EXPECT_TRUE(all_close(logits, t.at(p + "logits"), 1e-4, 1e-4));
    EXPECT_NEAR(loss.item(), t.at(p + "loss").item(), 1e-5);
    bool same = true;
    size_t n = 0;
    for (; t.count(p + "decide." + std::to_string(n)); ++n) {
      auto theirs = t.at(p + "decide." + std::to_string(n)).to_vector();
      same = same && n < ours.size() && std::vector<int64_t>(theirs.begin(), theirs.end()) == ours[n];
    }
    ASSERT_EQ(n, 5u);
    if (!same || ours.size() != n) continue;
    compared = c;
    loss.backward();
    int checked = 0;
    for (auto& [name, q] : model.named_parameters()) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(q.grad().defined());
      EXPECT_TRUE(all_close(q.grad(), t.at(p + "grad." + name), 1e-4, 1e-3));
      ++checked;
    }
    EXPECT_EQ(checked, 14);
    for (auto& [name, b] : model.named_buffers())
      if (name.find("running") != std::string::npos) {
        SCOPED_TRACE(name);
        EXPECT_TRUE(all_close(b, t.at(p + "after." + name), 1e-5, 1e-4));
      }
  }
  EXPECT_GE(compared, 0) << "our forward decided a max-pool window or a ReLU differently from PyTorch on all "
                         << candidates << " data sets";
}
