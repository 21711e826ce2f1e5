// The language-model jobs: exact resume, checkpoints that are self-contained (config and
// tokenizer inside), evaluation and generation, and clear errors for bad input.
#include <gtest/gtest.h>

#include <chrono>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "qiusuo/apps/cnn.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/io/checkpoint.h"
#include "test_util.h"

using namespace qs;

namespace {

// A small corpus with some structure: numbered "verses" from a few sentence patterns.
std::string write_corpus(const std::string& dir, int lines = 400) {
  static const char* words[] = {"the", "lord", "said", "unto", "moses", "and", "people", "went", "out", "of", "land"};
  std::string text;
  uint64_t s = 12345;
  for (int i = 0; i < lines; ++i) {
    text += "V" + std::to_string(i) + ":";
    for (int w = 0; w < 8; ++w) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      text += std::string(" ") + words[(s >> 33) % 11];
    }
    text += ".\n";
  }
  std::string path = dir + "/corpus.txt";
  std::ofstream(path) << text;
  return path;
}

apps::TrainLmOptions small_run(const std::string& dir, const std::string& corpus) {
  apps::TrainLmOptions o;
  o.model.d_model = 32, o.model.n_layers = 2, o.model.n_heads = 4;
  o.corpus = corpus;
  o.batch = 4, o.seq = 32, o.steps = 8, o.lr = 3e-3;
  o.eval_every = 4, o.eval_windows = 4;
  o.threads = 2, o.seed = 5, o.quiet = true;
  o.out_dir = dir;
  return o;
}

using qs::testing::error_of;

}  // namespace

TEST(TrainLm, ResumeIsExactForEachBlockType) {
  for (const char* block : {"gpt", "deepseek"}) {
    SCOPED_TRACE(block);
    std::string dir = qs::testing::temp_dir(std::string("lm_full_") + block);
    std::string corpus = write_corpus(dir);
    apps::TrainLmOptions o = small_run(dir + "/full", corpus);
    o.model.block = block;
    if (std::string(block) == "deepseek") {
      o.model.attention = "mla", o.model.ffn = "moe", o.model.bias = false;
      o.model.kv_lora_rank = 16, o.model.qk_rope_head_dim = 4;
      o.model.moe_n_routed = 4, o.model.moe_top_k = 2, o.model.moe_aux_loss_alpha = 0.01;
    }
    apps::TrainLmResult full = apps::train_lm(o);
    ASSERT_EQ(full.losses.size(), 8u);
    EXPECT_LT(full.losses.back(), full.losses.front());
    const bool moe = std::string(block) == "deepseek";
    if (moe) EXPECT_NE(full.expert_load.find("max/mean"), std::string::npos);
    // One load point per validation (steps 4 and 8), one value per MoE layer; every point
    // counts 4 training steps of 4 x 32 tokens, so max/mean is at least 1 and at most 4 / 2
    // (all tokens on top_k = 2 of 4 experts); nothing without MoE.
    ASSERT_EQ(full.load_history.size(), moe ? 2u : 0u);
    for (const apps::ExpertLoadPoint& p : full.load_history) {
      ASSERT_EQ(p.max_over_mean.size(), 2u);
      ASSERT_EQ(p.cv.size(), 2u);
      for (double m : p.max_over_mean) EXPECT_TRUE(m >= 1.0 && m <= 2.0) << m;
    }
    if (moe) {
      EXPECT_EQ(full.load_history[0].step, 4);
      EXPECT_EQ(full.load_history[1].step, 8);
    }

    apps::TrainLmOptions first = o;
    first.out_dir = dir + "/part";
    first.stop_after = 3;
    apps::TrainLmResult a = apps::train_lm(first);
    ASSERT_EQ(a.losses.size(), 3u);
    apps::TrainLmOptions second = o;
    second.out_dir = dir + "/part";
    second.resume = a.checkpoint;
    apps::TrainLmResult b = apps::train_lm(second);
    ASSERT_EQ(b.losses.size(), 5u);
    for (size_t i = 0; i < b.losses.size(); ++i) EXPECT_EQ(b.losses[i], full.losses[3 + i]) << "step " << 4 + i;
    EXPECT_EQ(b.validation.loss, full.validation.loss);
    // The resumed run carries the first part's points and counts and adds its own, as the
    // full run's.
    EXPECT_EQ(b.expert_load, full.expert_load);
    ASSERT_EQ(b.load_history.size(), full.load_history.size());
    for (size_t i = 0; i < b.load_history.size(); ++i) {
      EXPECT_EQ(b.load_history[i].step, full.load_history[i].step);
      EXPECT_EQ(b.load_history[i].max_over_mean, full.load_history[i].max_over_mean) << "point " << i;
    }
    EXPECT_GE(b.total_seconds, b.seconds);

    // continue_run: the same options again, without naming a checkpoint. A stopped run
    // continues from the folder's last.safetensors; a finished one is read back, trains
    // nothing and reports what the uninterrupted run did.
    apps::TrainLmOptions cont = o;
    cont.out_dir = dir + "/cont";
    cont.stop_after = 3;
    apps::train_lm(cont);
    cont.stop_after = 0, cont.continue_run = true;
    apps::TrainLmResult c = apps::train_lm(cont);
    ASSERT_EQ(c.losses.size(), 5u);
    EXPECT_EQ(c.losses.back(), full.losses.back());
    apps::TrainLmResult again = apps::train_lm(cont);
    EXPECT_TRUE(again.losses.empty());
    EXPECT_EQ(again.steps, 8);
    EXPECT_EQ(again.seconds, 0.0);
    EXPECT_GT(again.total_seconds, 0.0);
    EXPECT_EQ(again.final_train_loss, full.losses.back());
    EXPECT_EQ(again.validation.loss, full.validation.loss);
    EXPECT_EQ(again.val_history, full.val_history);
    EXPECT_EQ(again.expert_load, full.expert_load);
    ASSERT_EQ(again.load_history.size(), full.load_history.size());
    EXPECT_EQ(again.checkpoint, dir + "/cont/last.safetensors");
  }
}

TEST(TrainLm, CheckpointAloneEvaluatesAndGenerates) {
  std::string dir = qs::testing::temp_dir("lm_use");
  std::string corpus = write_corpus(dir);
  apps::TrainLmOptions o = small_run(dir + "/run", corpus);
  o.tokenizer = "bpe", o.bpe_vocab = 300;
  apps::TrainLmResult r = apps::train_lm(o);
  apps::LoadedLm lm = apps::load_lm(dir + "/run/last.safetensors");
  EXPECT_EQ(lm.tokenizer->name(), "bpe");
  EXPECT_EQ(lm.tokenizer->vocab_size(), 300);
  EXPECT_EQ(lm.step, 8);
  text::TextCorpus c = apps::open_corpus(lm.train_config["corpus"].get<std::string>());
  text::TokenStream val(c, text::Split::validation, *lm.tokenizer);
  apps::EvalLmResult e = apps::evaluate_lm(*lm.model, val, 32, 4, 4);
  EXPECT_DOUBLE_EQ(e.loss, r.validation.loss);  // the same windows as the trainer's last validation
  EXPECT_NEAR(e.perplexity, std::exp(e.loss), 1e-9);
  EXPECT_NEAR(e.bits_per_byte, e.loss / std::log(2.0) / val.bytes_per_token(), 1e-12);
  apps::GenerateOptions g;
  g.max_tokens = 12, g.seed = 4;
  std::string s1 = apps::generate_text(lm, "V7: the", g), s2 = apps::generate_text(lm, "V7: the", g);
  EXPECT_EQ(s1, s2);
  EXPECT_FALSE(s1.empty());
  g.max_tokens = 100;  // beyond the 32 tokens RoPE was trained at: refused with the largest value that fits
  std::string too_long = error_of([&] { apps::generate_text(lm, "V7: the", g); });
  EXPECT_NE(too_long.find("hint: --max-tokens"), std::string::npos) << too_long;
  g.max_tokens = 12;
  g.temperature = 0;  // greedy equals the model's own greedy decoding
  std::vector<int32_t> p = lm.tokenizer->encode("V7: the");
  std::vector<int64_t> ids = lm.model->generate(std::vector<int64_t>(p.begin(), p.end()), 12);
  EXPECT_EQ(apps::generate_text(lm, "V7: the", g),
            lm.tokenizer->decode(std::vector<int32_t>(ids.begin() + int64_t(p.size()), ids.end())));
}

TEST(TrainLm, BadInputGivesClearErrors) {
  std::string dir = qs::testing::temp_dir("lm_bad");
  std::string good = write_corpus(dir);
  std::ofstream(dir + "/empty.txt").close();
  std::ofstream(dir + "/latin1.txt") << "caf\xe9 au lait\n";
  std::ofstream(dir + "/short.txt") << "In the beginning.\nAnd the earth.\nVoid.\n";
  auto run = [&](const std::string& corpus) { return error_of([&] { apps::train_lm(small_run(dir + "/x", corpus)); }); };
  EXPECT_NE(run(dir + "/empty.txt").find("empty"), std::string::npos);
  std::string bad = run(dir + "/latin1.txt");
  EXPECT_NE(bad.find("UTF-8"), std::string::npos) << bad;
  EXPECT_NE(bad.find("offset 3"), std::string::npos) << bad;
  std::string shrt = run(dir + "/short.txt");
  EXPECT_NE(shrt.find("fewer than one window"), std::string::npos) << shrt;
  EXPECT_NE(run(dir + "/missing.txt").find("missing.txt"), std::string::npos);

  // A checkpoint of another architecture.
  apps::TrainCnnOptions cnn;
  cnn.epochs = 1, cnn.limit_train = 64, cnn.limit_test = 64, cnn.batch = 64, cnn.quiet = true;
  cnn.out_dir = dir + "/cnn";
  apps::TrainCnnResult cr = apps::train_fashion_cnn(cnn);
  std::string other = error_of([&] { apps::load_lm(cr.checkpoint); });
  EXPECT_NE(other.find("FashionCNN"), std::string::npos) << other;

  // Resuming with other settings, and a sequence the encoding cannot run.
  apps::TrainLmOptions o = small_run(dir + "/run", good);
  o.steps = 2;
  apps::TrainLmResult r = apps::train_lm(o);
  apps::TrainLmOptions again = o;
  again.resume = r.checkpoint, again.lr = 1e-2;
  std::string resume = error_of([&] { apps::train_lm(again); });
  EXPECT_NE(resume.find("lr="), std::string::npos) << resume;
  apps::LoadedLm lm = apps::load_lm(r.checkpoint);
  std::string len = error_of([&] { lm.model->config().check_length(64); });
  EXPECT_NE(len.find("rope"), std::string::npos) << len;
  o.seq = 0;
  EXPECT_NE(error_of([&] { apps::train_lm(o); }).find("positive"), std::string::npos);

  // A resumed step outside the run is a damaged or foreign checkpoint (issue 19: -7 was accepted).
  for (int64_t bad : {int64_t(-7), int64_t(99)}) {
    io::Checkpoint ck = io::load_checkpoint(r.checkpoint);
    ck.step = bad;
    const std::string path = dir + "/step_" + std::to_string(bad) + ".safetensors";
    io::save_checkpoint(path, ck);
    apps::TrainLmOptions again2 = o;
    again2.seq = 32, again2.steps = 2, again2.resume = path;
    std::string e = error_of([&] { apps::train_lm(again2); });
    EXPECT_NE(e.find("outside this run's 0..2 steps"), std::string::npos) << e;
  }
  // A config that lies about the model's size is refused before the model is built (issue 19:
  // n_layers 100000 in a small file took 91 s and 6.9 GB), quickly and naming the file.
  for (auto [key, value] : {std::pair<const char*, int64_t>{"n_layers", 100000}, {"d_model", int64_t(1) << 40}}) {
    io::Checkpoint ck = io::load_checkpoint(r.checkpoint);
    ck.config["model"][key] = value;
    const std::string liar = dir + "/liar_" + key + ".safetensors";
    io::save_checkpoint(liar, ck);
    const auto t0 = std::chrono::steady_clock::now();
    std::string e = error_of([&] { apps::load_lm(liar); });
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
    EXPECT_NE(e.find(liar), std::string::npos) << e;
    EXPECT_TRUE(e.find("does not belong to these weights") != std::string::npos ||
                e.find("config cannot be used") != std::string::npos)
        << e;
  }
}

// A checkpoint written before LMConfig had head_dim (its config lacks the key) still resumes:
// the missing field reads as its default, not as another model.
TEST(TrainLm, ResumesACheckpointWrittenBeforeAConfigFieldExisted) {
  std::string dir = qs::testing::temp_dir("lm_old_config");
  std::string corpus = write_corpus(dir);
  apps::TrainLmOptions first = small_run(dir + "/run", corpus);
  first.stop_after = 4;
  const std::string ckpt = apps::train_lm(first).checkpoint;
  io::Checkpoint ck = io::load_checkpoint(ckpt);
  ASSERT_TRUE(ck.config["model"].contains("head_dim"));
  ck.config["model"].erase("head_dim");
  io::save_checkpoint(ckpt, ck);
  apps::TrainLmOptions second = small_run(dir + "/run", corpus);
  second.resume = ckpt;
  EXPECT_EQ(apps::train_lm(second).steps, 8);
}
