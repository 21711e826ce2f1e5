// The translation jobs: exact resume, self-contained checkpoints (translate, evaluate and
// capture attention from the file alone), real parallel files, clear errors.
#include <gtest/gtest.h>

#include "qiusuo/apps/attention_view.h"
#include "qiusuo/apps/mt.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "test_util.h"

using namespace qs;
using qs::testing::error_of;

namespace {

apps::TrainMtOptions small_run(const std::string& out) {
  apps::TrainMtOptions o;
  text::SyntheticMtOptions& s = o.data.synthetic;
  s.n_train = 400, s.n_valid = 20, s.n_test = 24;
  s.n_nouns = 40, s.n_verbs_tr = 15, s.n_verbs_intr = 10, s.n_adjectives = 20, s.n_adverbs = 8;
  o.model.d_model = 16, o.model.n_heads = 2, o.model.enc_layers = 1, o.model.dec_layers = 2, o.model.max_len = 64;
  o.batch = 8, o.steps = 8, o.lr = 3e-3, o.eval_every = 4, o.eval_sentences = 6, o.test_sentences = 10;
  o.quiet = true;
  o.out_dir = out;
  return o;
}

}  // namespace

// TrainMtOptions' defaults are `qiusuo train mt`'s (the CLI reads them from the struct) and
// the measured run of docs/translation.md: 2 + 2 layers, d_model 64, 4 heads, RoPE,
// 4000 steps of 64 pairs, lr 2e-3.
TEST(TrainMt, DefaultsAreTheDocumentedRun) {
  const apps::TrainMtOptions o;
  EXPECT_EQ(o.model.enc_layers, 2);
  EXPECT_EQ(o.model.dec_layers, 2);
  EXPECT_EQ(o.model.d_model, 64);
  EXPECT_EQ(o.model.n_heads, 4);
  EXPECT_EQ(o.model.pos.kind, nn::PositionEncoding::rope);
  EXPECT_TRUE(o.model.tie_weights);
  EXPECT_EQ(o.steps, 4000);
  EXPECT_EQ(o.batch, 64);
  EXPECT_EQ(o.lr, 2e-3);
}

TEST(TrainMt, ResumeIsExact) {
  const std::string dir = qs::testing::temp_dir("mt_resume");
  apps::TrainMtOptions o = small_run(dir + "/full");
  apps::TrainMtResult full = apps::train_mt(o);
  ASSERT_EQ(full.losses.size(), 8u);
  EXPECT_LT(full.losses.back(), full.losses.front());
  ASSERT_EQ(full.val_history.size(), 2u);
  EXPECT_EQ(full.test.sentences, 10);
  apps::TrainMtOptions first = o;
  first.out_dir = dir + "/part";
  first.stop_after = 3;
  apps::TrainMtResult a = apps::train_mt(first);
  ASSERT_EQ(a.losses.size(), 3u);
  EXPECT_EQ(a.test.sentences, 0) << "a stopped run is not tested";
  apps::TrainMtOptions second = o;
  second.out_dir = dir + "/part";
  second.resume = a.checkpoint;
  apps::TrainMtResult b = apps::train_mt(second);
  ASSERT_EQ(b.losses.size(), 5u);
  for (size_t i = 0; i < b.losses.size(); ++i) EXPECT_EQ(b.losses[i], full.losses[3 + i]) << "step " << 4 + i;
  EXPECT_EQ(b.validation.loss, full.validation.loss);
  EXPECT_EQ(b.test.bleu.score, full.test.bleu.score);
  ASSERT_EQ(b.val_history.size(), 2u);

  apps::TrainMtOptions other = second;
  other.lr = 1e-2;
  EXPECT_NE(error_of([&] { apps::train_mt(other); }).find("lr="), std::string::npos);
}

TEST(TrainMt, CheckpointAloneTranslatesEvaluatesAndCapturesAttention) {
  const std::string dir = qs::testing::temp_dir("mt_ckpt");
  apps::TrainMtOptions o = small_run(dir);
  apps::TrainMtResult r = apps::train_mt(o);
  apps::LoadedMt mt = apps::load_mt(dir + "/last.safetensors");
  EXPECT_EQ(mt.step, 8);
  EXPECT_EQ(mt.model->config().dec_layers, 2);
  text::MtSplits d = apps::load_mt_data(mt.data);
  ASSERT_EQ(d.test.size(), 24u);
  apps::EvalMtResult e = apps::evaluate_mt(*mt.model, mt.src_vocab, mt.tgt_vocab, d.test, 1, 10);
  EXPECT_NEAR(e.loss, r.test.loss, 1e-9);
  EXPECT_NEAR(e.bleu.score, r.test.bleu.score, 1e-9);
  std::vector<std::string> out = apps::translate(mt, d.test[0].src);
  for (auto& w : out) EXPECT_NE(mt.tgt_vocab.id(w), apps::WordVocab::kPad);
  EXPECT_NO_THROW(apps::translate(mt, std::string("the dog sleeps"), 3));
  EXPECT_NE(error_of([&] { apps::translate(mt, std::string("   ")); }).find("empty"), std::string::npos);

  // Attention of one pair: encoder self, then decoder causal and cross per layer.
  const text::ParallelExample& p = d.test[1];
  std::vector<int32_t> sid, tid;
  for (auto& w : p.src) sid.push_back(int32_t(mt.src_vocab.id(w)));
  sid.push_back(int32_t(apps::WordVocab::kEos));
  for (auto& w : p.tgt) tid.push_back(int32_t(mt.tgt_vocab.id(w)));
  std::vector<std::string> slab = p.src;
  slab.push_back("<eos>");
  apps::AttentionSnapshot s = apps::capture_attention(*mt.model, sid, slab, tid, p.tgt, int32_t(apps::WordVocab::kBos));
  const int64_t S = int64_t(sid.size()), T = int64_t(tid.size()) + 1;
  ASSERT_EQ(s.maps.size(), 5u);
  EXPECT_EQ(s.tokens.front(), "<bos>");
  EXPECT_EQ(int64_t(s.ids.size()), T);
  const char* kinds[] = {"self", "causal", "cross", "causal", "cross"};
  const char* names[] = {"encoder.blocks.0.self_attn", "decoder.blocks.0.self_attn", "decoder.blocks.0.cross_attn",
                         "decoder.blocks.1.self_attn", "decoder.blocks.1.cross_attn"};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(s.maps[i].kind, kinds[i]);
    EXPECT_EQ(s.maps[i].name, names[i]);
    const Tensor& w = s.maps[i].weights;
    const int64_t rows = i == 0 ? S : T, cols = i == 0 || s.maps[i].kind == "cross" ? S : T;
    ASSERT_EQ(w.shape(), (Shape{2, rows, cols})) << names[i];
    Tensor sums = sum(w, {2});
    for (double v : sums.to_vector()) EXPECT_NEAR(v, 1.0, 1e-5);
    if (s.maps[i].kind == "causal") EXPECT_EQ(w.select(0, 1).select(0, 0).select(0, 1).item(), 0.0);
  }
  EXPECT_EQ(s.maps[4].layer, 1);
  apps::AttentionSnapshot w = apps::capture_attention(mt, p.src, p.tgt);
  EXPECT_EQ(w.source_tokens, slab);
  EXPECT_EQ(w.ids, s.ids);
  EXPECT_EQ(w.tokens, s.tokens);
  ASSERT_EQ(w.maps.size(), 5u);
  EXPECT_EQ(w.maps[2].weights.to_vector(), s.maps[2].weights.to_vector());
  apps::AttentionSnapshot g = apps::capture_attention(mt, p.src);  // target = the greedy translation
  EXPECT_EQ(int64_t(g.tokens.size()), int64_t(apps::translate(mt, p.src).size()) + 1);
  EXPECT_NE(error_of([&] { apps::capture_attention(*mt.model, {}, {}, tid, p.tgt, 2); }).find("empty"),
            std::string::npos);
}

TEST(TrainMt, RealParallelFilesAndClearErrors) {
  const std::string dir = qs::testing::temp_dir("mt_files");
  std::string src, tgt;
  for (int i = 0; i < 40; ++i) src += "a b c " + std::to_string(i % 7) + "\n", tgt += "x " + std::to_string(i % 7) + " y\n";
  qs::testing::write_bytes(dir + "/s.txt", src);
  qs::testing::write_bytes(dir + "/t.txt", tgt);
  apps::TrainMtOptions o = small_run(dir + "/run");
  o.data.data = "files", o.data.src_file = dir + "/s.txt", o.data.tgt_file = dir + "/t.txt";
  o.steps = 2, o.eval_every = 0;
  apps::TrainMtResult r = apps::train_mt(o);
  EXPECT_EQ(r.test.sentences, 2) << "lines 19 and 39 are the test split";
  apps::LoadedMt mt = apps::load_mt(r.checkpoint);
  EXPECT_EQ(mt.data.src_file, dir + "/s.txt");

  qs::testing::write_bytes(dir + "/short.txt", "a\nb\n");
  apps::TrainMtOptions bad = o;
  bad.data.src_file = bad.data.tgt_file = dir + "/short.txt";
  EXPECT_NE(error_of([&] { apps::train_mt(bad); }).find("at least 20"), std::string::npos);
  // Not a translation checkpoint: says what it is.
  io::Checkpoint ck;
  ck.config = {{"kind", "qiusuo-lm"}, {"model", nlohmann::json::object()}};
  io::save_checkpoint(dir + "/lm.safetensors", ck);
  std::string msg = error_of([&] { apps::load_mt(dir + "/lm.safetensors"); });
  EXPECT_NE(msg.find("a qiusuo-lm checkpoint"), std::string::npos) << msg;
  apps::TrainMtOptions tiny_len = small_run(dir + "/len");
  tiny_len.model.max_len = 4;
  EXPECT_NE(error_of([&] { apps::train_mt(tiny_len); }).find("max_len"), std::string::npos);
}
