// Golden tests of the language models against PyTorch (tests/oracle/lm_oracle.py): with the
// same weights and tokens, logits, loss and every parameter gradient agree.
//   GPT: the peer of shared/peers/torch_lm.py (LayerNorm, fused qkv with bias, RoPE, GELU
//        MLP, untied head) at d 64, L 2, h 4, V 256, b 2, n 32.
//   DeepSeek: RMSNorm, MLA (q_lora_rank 0 with tied embeddings; q_lora_rank 16 untied),
//        decoupled RoPE, dense SwiGLU; written in PyTorch from nn::TransformerLM's documented
//        math; and the same with nn::MoE (DeepSeek-V3 router with a nonzero selection bias,
//        4 routed experts, top 2, 1 shared) and its balance loss (alpha 0.01) in the loss.
// Tolerances: f32 on both sides with different summation orders (oneDNN and the fused
// attention kernel vs PyTorch's kernels): logits atol 1e-4 rtol 1e-4, loss 1e-5,
// gradients atol 1e-5 rtol 1e-3 (gradients are ~1e-3..1e-1; the loss is a mean over 64
// tokens).
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>

#include "oracle_util.h"
#include "qiusuo/io/safetensors.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

using namespace qs;
using qs::testing::all_close;

namespace {

bool python_has_torch() { return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0; }

std::map<std::string, Tensor> run_lm_oracle(const std::string& args, const std::string& tag) {
  std::string path = qs::testing::temp_dir(tag) + "/lm_oracle.safetensors";
  qs::testing::run_oracle("lm_oracle.py", args + " " + path);
  auto file = io::load_safetensors(path);
  return {file.tensors.begin(), file.tensors.end()};
}

// PyTorch names -> qiusuo names: `rename` maps the oracle's parameter names (identity for
// the DeepSeek model, which uses qiusuo's names).
using Rename = std::function<std::string(const std::string&)>;

// Loads the oracle's weights, runs forward + cross-entropy + backward and compares.
void check_against_oracle(nn::TransformerLM& model, const std::map<std::string, Tensor>& t, const Rename& rename,
                          bool with_aux = false) {
  nn::StateDict sd;
  for (auto& [k, v] : t)
    if (k.rfind("param.", 0) == 0) sd.emplace_back(rename(k.substr(6)), v);
  model.load_state_dict(sd);  // strict: every parameter named, no extra names
  model.train();
  const int64_t vocab = model.config().vocab_size;
  Tensor logits = model(t.at("input"));
  Tensor loss = cross_entropy(logits.reshape({-1, vocab}), t.at("target").reshape({-1}));
  if (with_aux) {
    ASSERT_TRUE(model.aux_loss().defined());
    loss = loss + model.aux_loss();
  }
  EXPECT_TRUE(all_close(logits, t.at("logits"), 1e-4, 1e-4));
  EXPECT_NEAR(loss.item(), t.at("loss").item(), 1e-5);
  loss.backward();
  std::map<std::string, std::string> ours_to_theirs;
  for (auto& [k, v] : t)
    if (k.rfind("grad.", 0) == 0) ours_to_theirs[rename(k.substr(5))] = k;
  size_t checked = 0;
  for (auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(p.grad().defined());
    ASSERT_TRUE(ours_to_theirs.count(name)) << "no PyTorch gradient for " << name;
    EXPECT_TRUE(all_close(p.grad(), t.at(ours_to_theirs.at(name)), 1e-5, 1e-3));
    ++checked;
  }
  EXPECT_EQ(checked, ours_to_theirs.size());
}

// shared/peers/torch_lm.py's names -> nn::TransformerLM's.
std::string gpt_name(const std::string& torch_name) {
  static const std::vector<std::pair<std::string, std::string>> parts = {
      {".ln1.", ".ln_1."},       {".qkv.", ".attn.in_proj."}, {".o.", ".attn.out_proj."},
      {".ln2.", ".ln_2."},       {".fc.", ".mlp.c_fc."},      {".pr.", ".mlp.c_proj."}};
  if (torch_name == "emb.weight") return "wte.weight";
  if (torch_name.rfind("ln.", 0) == 0) return "ln_f." + torch_name.substr(3);
  if (torch_name == "head.weight") return "lm_head.weight";
  std::string s = torch_name;
  for (auto& [from, to] : parts)
    if (auto at = s.find(from); at != std::string::npos) return s.replace(at, from.size(), to);
  return s;
}

nn::LMConfig small_config() {
  nn::LMConfig c;
  c.vocab_size = 256, c.d_model = 64, c.n_layers = 2, c.n_heads = 4, c.max_seq_len = 32;
  c.pos.kind = nn::PositionEncoding::rope;
  return c;
}

}  // namespace

TEST(OracleLM, GptLogitsLossGradientsMatchPyTorch) {
  if (!python_has_torch()) GTEST_SKIP() << "/usr/bin/python3 has no torch";
  auto t = run_lm_oracle("gpt", "lm_oracle_gpt");
  nn::LMConfig c = small_config();
  c.block = "gpt", c.bias = true, c.tie_weights = false, c.ffn_hidden = 4 * c.d_model;
  nn::TransformerLM model(c);
  check_against_oracle(model, t, gpt_name);
}

class OracleDeepSeek : public ::testing::TestWithParam<int64_t> {};

TEST_P(OracleDeepSeek, LogitsLossGradientsMatchPyTorch) {
  if (!python_has_torch()) GTEST_SKIP() << "/usr/bin/python3 has no torch";
  const int64_t q_lora = GetParam();
  auto t = run_lm_oracle("deepseek " + std::to_string(q_lora), "lm_oracle_ds" + std::to_string(q_lora));
  nn::LMConfig c = small_config();
  c.block = "deepseek", c.attention = "mla", c.ffn = "swiglu", c.bias = false;
  c.q_lora_rank = q_lora, c.kv_lora_rank = 32, c.qk_rope_head_dim = 8;
  c.tie_weights = q_lora == 0;  // as lm_oracle.py
  nn::TransformerLM model(c);
  check_against_oracle(model, t, [](const std::string& s) { return s; });
}

INSTANTIATE_TEST_SUITE_P(QLoraRank, OracleDeepSeek, ::testing::Values(int64_t(0), int64_t(16)));

TEST(OracleDeepSeekMoe, LogitsLossGradientsMatchPyTorch) {
  if (!python_has_torch()) GTEST_SKIP() << "/usr/bin/python3 has no torch";
  auto t = run_lm_oracle("deepseek_moe", "lm_oracle_moe");
  nn::LMConfig c = small_config();
  c.block = "deepseek", c.attention = "mla", c.ffn = "moe", c.bias = false;
  c.q_lora_rank = 0, c.kv_lora_rank = 32, c.qk_rope_head_dim = 8, c.tie_weights = true;
  c.moe_n_routed = 4, c.moe_top_k = 2, c.moe_n_shared = 1, c.moe_aux_loss_alpha = 0.01;
  nn::TransformerLM model(c);
  check_against_oracle(model, t, [](const std::string& s) { return s; }, /*with_aux=*/true);
}
