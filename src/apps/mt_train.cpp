// The translation training job: teacher forcing with label smoothing, Adam with linear
// warmup and cosine decay, gradient clipping, periodic validation loss and BLEU,
// checkpoints that carry the config, the data settings and both vocabularies, and an exact
// resume (weights, optimiser, step, both generators).
#include <chrono>
#include <filesystem>

#include "apps/mt_internal.h"
#include "util/progress.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/optim/schedule.h"
#include "apps/train_guard.h"
#include "qiusuo/dist/dist.h"

namespace qs::apps {

namespace {

nlohmann::json train_json(const TrainMtOptions& o) {
  return {{"batch", o.batch},       {"steps", o.steps},         {"lr", o.lr},
          {"label_smoothing", o.label_smoothing}, {"grad_clip", o.grad_clip}, {"min_lr_ratio", o.min_lr_ratio},
          {"warmup", o.warmup},     {"min_count", o.min_count}, {"seed", o.seed},
          {"world_size", dist::world_size()}};
}

void check_options(const TrainMtOptions& o) {
  QS_CHECK(o.batch >= 1 && o.steps >= 1, "train mt: --batch and --steps must be positive, got {} and {}", o.batch,
           o.steps);
  QS_CHECK(std::isfinite(o.lr) && o.lr > 0 && o.label_smoothing >= 0 && o.label_smoothing < 1 && o.grad_clip >= 0 && o.min_lr_ratio >= 0 &&
               o.min_lr_ratio <= 1,
           "train mt: need --lr > 0, 0 <= --label-smoothing < 1, --grad-clip >= 0, 0 <= min_lr_ratio <= 1");
}

// An exact resume needs the settings the run started with.
void check_resume(const io::Checkpoint& ck, const nlohmann::json& train, const nlohmann::json& data,
                  const nlohmann::json& model, const std::string& path) {
  check_mt_checkpoint(ck, path);
  check_resume_world("train mt", path, ck.config["train"].value("world_size", 1));
  for (auto& [k, v] : train.items())
    if (k != "world_size" && ck.config["train"].contains(k) && ck.config["train"][k] != v)
      throw Error(fmt::format("{}: the checkpoint was trained with {}={}, this run asks for {}; an exact resume needs "
                              "the same settings", path, k, ck.config["train"][k].dump(), v.dump()));
  if (ck.config["data"] != data || ck.config["model"] != model)
    throw Error(fmt::format("{}: the checkpoint's data or model settings differ from this run's ({} / {} vs {} / "
                            "{}); an exact resume needs the same settings",
                            path, ck.config["data"].dump(), ck.config["model"].dump(), data.dump(), model.dump()));
}

int64_t longest(const std::vector<MtIds>& d) {
  int64_t n = 0;
  for (auto& m : d) n = std::max<int64_t>(n, std::max(m.src.size(), m.tgt.size() + 1));
  return n;
}

}  // namespace

TrainMtResult train_mt(const TrainMtOptions& o) {
  check_options(o);
  if (o.threads > 0) set_num_threads(o.threads);
  io::Checkpoint resumed;
  if (!o.resume.empty()) {
    resumed = io::load_checkpoint(o.resume);
    check_mt_checkpoint(resumed, o.resume);
  }
  text::MtSplits data = load_mt_data(o.data);
  QS_CHECK(!data.train.empty() && !data.valid.empty() && !data.test.empty(),
           "train mt: every split needs sentence pairs (train {}, validation {}, test {})", data.train.size(),
           data.valid.size(), data.test.size());
  std::vector<std::vector<std::string>> src_words, tgt_words;
  for (auto& p : data.train) src_words.push_back(p.src), tgt_words.push_back(p.tgt);
  // A resumed run keeps the checkpoint's vocabularies.
  WordVocab sv = o.resume.empty() ? WordVocab::build(src_words, o.min_count)
                                  : WordVocab::from_json(resumed.extra["src_vocab"]);
  WordVocab tv = o.resume.empty() ? WordVocab::build(tgt_words, o.min_count)
                                  : WordVocab::from_json(resumed.extra["tgt_vocab"]);
  const std::vector<MtIds> train = encode_pairs(data.train, sv, tv);
  nn::Seq2SeqConfig cfg = o.model;
  cfg.src_vocab = sv.size(), cfg.tgt_vocab = tv.size(), cfg.pad_id = WordVocab::kPad;
  QS_CHECK(longest(train) <= cfg.max_len, "train mt: a training sentence has {} tokens, more than max_len {}; hint: "
           "raise --max-len", longest(train), cfg.max_len);
  cfg.validate();

  manual_seed(o.seed);
  Generator init_gen(o.seed), data_gen(o.seed ^ 0x9e3779b97f4a7c15ull);
  nn::Seq2SeqTransformer model(cfg, init_gen);
  std::vector<Tensor> params = model.parameters();
  optim::Adam opt(params, o.lr, {0.9, 0.98}, 1e-9);
  const int64_t warmup = o.warmup > 0 ? o.warmup : std::min<int64_t>(400, std::max<int64_t>(1, o.steps / 10));
  const optim::LinearWarmup schedule = optim::warmup_cosine(warmup, o.steps, o.lr * o.min_lr_ratio);
  const nlohmann::json train_cfg = train_json(o), data_cfg = o.data.to_json(), model_cfg = cfg.to_json();

  TrainMtResult r;
  int64_t step = 0;
  if (!o.resume.empty()) {
    check_resume(resumed, train_cfg, data_cfg, model_cfg, o.resume);
    check_resume_step("train mt", o.resume, resumed.step, o.steps);
    model.load_state_dict(resumed.model);
    opt.load_state_dict(resumed.optimizer);
    step = resumed.step;
    default_generator().set_state(resumed.rng_state);
    data_gen.set_state(resumed.extra.at("data_rng").get<std::vector<uint64_t>>());
    for (auto& e : resumed.extra.value("val_history", nlohmann::json::array()))
      r.val_history.emplace_back(e[0].get<int64_t>(), e[1].get<double>(), e[2].get<double>());
  }
  // Data-parallel under mpirun: --batch is per rank; every rank draws the global batch's
  // sentence pairs from the same generator and trains on its share of them.
  const std::unique_ptr<dist::DistributedDataParallel> ddp = data_parallel(
      model, nlohmann::json{{"train", train_cfg}, {"data", data_cfg}, {"model", model_cfg}}, o.resume, o.out_dir);
  const auto out_lock = claim_out_dir("train mt", o.out_dir);

  auto save = [&](int64_t at) {
    if (o.out_dir.empty() || !dist::is_main()) return;
    nlohmann::json hist = nlohmann::json::array();
    for (auto& [s, l, b] : r.val_history) hist.push_back({s, l, b});
    io::Checkpoint ck{model.state_dict(), opt.state_dict(), at, default_generator().state(),
                      {{"kind", kMtCheckpointKind}, {"model", model_cfg}, {"train", train_cfg}, {"data", data_cfg}},
                      {{"src_vocab", sv.to_json()}, {"tgt_vocab", tv.to_json()}, {"data_rng", data_gen.state()},
                       {"val_history", hist}}};
    r.checkpoint = io::save_checkpoint_and_last(o.out_dir, fmt::format("step-{}.safetensors", at), ck);
  };
  auto validate = [&](int64_t at) {
    r.validation = evaluate_mt(model, sv, tv, data.valid, 1, o.eval_sentences);
    r.val_history.emplace_back(at, r.validation.loss, r.validation.bleu.score);
    if (!o.quiet && dist::is_main())
      std::fprintf(stderr, "%s\n",
                   fmt::format("step {}: validation loss {:.4f}, BLEU {:.2f} on {} sentences", at, r.validation.loss,
                               r.validation.bleu.score, r.validation.sentences).c_str());
  };

  util::Progress progress("train mt", o.steps, "tok", 50);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  const int64_t V = cfg.tgt_vocab;
  model.train();
  std::vector<size_t> rows(size_t(o.batch * dist::world_size()));
  while (step < o.steps) {
    for (auto& row : rows) row = size_t(data_gen.next_u64() % train.size());
    MtBatch b = make_batch(train, ddp ? std::vector<size_t>(rows.begin() + dist::rank() * o.batch,
                                                            rows.begin() + (dist::rank() + 1) * o.batch)
                                      : rows);
    opt.set_lr(schedule.lr(step, o.lr));
    opt.zero_grad();
    Tensor logits = model.forward(b.src, b.tgt_in);
    Tensor loss = cross_entropy(logits.reshape({-1, V}), b.tgt_out.reshape({-1}), WordVocab::kPad, o.label_smoothing);
    // The loss is a mean over target tokens: over the global batch's, each rank's share
    // weighted by its tokens.
    std::vector<double> sums{loss.item() * double(b.tokens), double(b.tokens)};
    if (ddp) dist::all_reduce_sum(sums);
    const double loss_value = sums[0] / sums[1];
    const int64_t global_tokens = int64_t(sums[1]);
    check_loss_finite("train mt", loss_value, step + 1, o.lr);
    // This rank's share of the global batch's tokens, relative to an even split.
    if (ddp) loss = mul(loss, scalar_tensor(double(b.tokens) * dist::world_size() / sums[1]));
    loss.backward();
    if (ddp) ddp->finish();
    if (o.grad_clip > 0) optim::clip_grad_norm_(params, o.grad_clip);
    opt.step();
    ++step;
    tokens += global_tokens;
    r.losses.push_back(float(loss_value));
    if (!o.quiet && dist::is_main()) progress.update(step, r.losses.back(), global_tokens);
    const bool last = step == o.steps;
    if (last || (o.eval_every > 0 && step % o.eval_every == 0)) validate(step);
    if (last || (o.save_every > 0 && step % o.save_every == 0) || step == o.stop_after) save(step);
    if (o.stop_after > 0 && step >= o.stop_after) break;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = r.seconds > 0 ? double(tokens) / r.seconds : 0;
  r.steps = step;
  r.final_train_loss = r.losses.empty() ? 0 : r.losses.back();
  if (step == o.steps) r.test = evaluate_mt(model, sv, tv, data.test, 1, o.test_sentences);
  return r;
}

}  // namespace qs::apps
