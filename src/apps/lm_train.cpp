// The language-model training job: AdamW with linear warmup and cosine decay, gradient
// clipping, periodic validation, checkpoints that carry the model config and the
// tokenizer, and an exact resume (weights, optimiser, step, both generators).
#include <chrono>
#include <cmath>
#include <filesystem>

#include "apps/experiment_util.h"
#include "apps/lm_internal.h"
#include "io/atomic_file.h"
#include "io/read_file.h"
#include "util/progress.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/dist/dist.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/optim/schedule.h"
#include "apps/train_guard.h"

namespace qs::apps {

namespace {

nlohmann::json train_json(const TrainLmOptions& o) {
  return {{"batch", o.batch},         {"seq", o.seq},       {"steps", o.steps},
          {"lr", o.lr},               {"min_lr_ratio", o.min_lr_ratio}, {"weight_decay", o.weight_decay},
          {"grad_clip", o.grad_clip}, {"warmup", o.warmup}, {"seed", o.seed},
          {"bf16", o.bf16},           {"corpus", o.corpus.empty() ? std::string("kjv") : o.corpus},
          {"tokenizer", o.tokenizer}, {"bpe_vocab", o.bpe_vocab}, {"world_size", dist::world_size()}};
}

// An exact resume needs the settings the run started with.
void check_resume(const io::Checkpoint& ck, const nlohmann::json& train, const nlohmann::json& model,
                  const std::string& path) {
  check_lm_checkpoint(ck, path);
  const nlohmann::json& saved = ck.config["train"];
  check_resume_world("train lm", path, saved.value("world_size", 1));
  for (auto& [k, v] : train.items())
    if (k != "world_size" && saved.contains(k) && saved[k] != v)
      throw Error(fmt::format("{}: the checkpoint was trained with {}={}, this run asks for {}; an exact resume needs "
                              "the same settings",
                              path, k, saved[k].dump(), v.dump()));
  // Through LMConfig, so that a checkpoint written before a field existed (head_dim) reads
  // as that field's default rather than as a different model.
  nlohmann::json saved_model = ck.config["model"];
  try {
    saved_model = nn::LMConfig::from_json(ck.config["model"]).to_json();
  } catch (const std::exception&) {
    // Unreadable: reported below as a mismatch, with the saved text.
  }
  if (saved_model != model)
    throw Error(fmt::format("{}: the checkpoint's model is {}, this run asks for {}; an exact resume needs the same "
                            "model settings",
                            path, ck.config["model"].dump(), model.dump()));
}

std::unique_ptr<text::Tokenizer> make_tokenizer(const TrainLmOptions& o, const text::TextCorpus& corpus) {
  if (o.tokenizer == "byte") return std::make_unique<text::ByteTokenizer>();
  if (o.tokenizer == "bpe")
    return std::make_unique<text::BpeTokenizer>(
        text::BpeTokenizer::train(corpus.split(text::Split::train), o.bpe_vocab));
  return text::load_tokenizer_file(o.tokenizer);
}

void check_options(const TrainLmOptions& o) {
  QS_CHECK(o.batch >= 1 && o.seq >= 1 && o.steps >= 1, "train lm: --batch, --seq and --steps must be positive");
  QS_CHECK(std::isfinite(o.lr) && o.lr > 0 && o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1 && o.grad_clip >= 0 && o.weight_decay >= 0,
           "train lm: need --lr > 0, 0 <= min_lr_ratio <= 1, --grad-clip >= 0, --weight-decay >= 0");
}

// The training time up to each saved step, kept beside the checkpoints in DIR/train_seconds.json
// ({"<step>": seconds}) rather than in them, so that a checkpoint's bytes depend on the training
// alone (an interrupted and resumed run writes the same files as an uninterrupted one).
constexpr const char* kSecondsFile = "train_seconds.json";

void record_seconds(const std::string& dir, int64_t step, double seconds) {
  const std::filesystem::path file = std::filesystem::path(dir) / kSecondsFile;
  nlohmann::json j = nlohmann::json::object();
  try {
    if (std::filesystem::exists(file)) j = nlohmann::json::parse(io::read_file_bounded(file.string(), 1 << 20, "training times"));
  } catch (const std::exception&) {
    j = nlohmann::json::object();  // unreadable: started again (the times are a record, not state)
  }
  if (!j.is_object()) j = nlohmann::json::object();
  j[std::to_string(step)] = finite_or_null(seconds);
  io::write_file_atomic(file.string(), j.dump() + "\n");
}

// The training time recorded for `step` beside the checkpoint `path`; NaN when none was.
double recorded_seconds(const std::string& path, int64_t step) {
  const std::filesystem::path file = std::filesystem::path(path).parent_path() / kSecondsFile;
  try {
    const nlohmann::json j = nlohmann::json::parse(io::read_file_bounded(file.string(), 1 << 20, "training times"));
    const nlohmann::json v = j.value(std::to_string(step), nlohmann::json());
    return v.is_number() ? v.get<double>() : std::nan("");
  } catch (const std::exception&) {
    return std::nan("");
  }
}

}  // namespace

TrainLmResult train_lm(const TrainLmOptions& options) {
  TrainLmOptions o = options;
  if (o.continue_run && o.resume.empty() && !o.out_dir.empty() &&
      std::filesystem::exists(std::filesystem::path(o.out_dir) / "last.safetensors"))
    o.resume = (std::filesystem::path(o.out_dir) / "last.safetensors").string();
  check_options(o);
  if (o.threads > 0) set_num_threads(o.threads);
  text::TextCorpus corpus = open_corpus(o.corpus, o.cache_dir);
  io::Checkpoint resumed;
  if (!o.resume.empty()) resumed = io::load_checkpoint(o.resume);
  // The tokenizer of a resumed run is the checkpoint's (a BPE is not retrained).
  std::unique_ptr<text::Tokenizer> tok = o.resume.empty() ? make_tokenizer(o, corpus) : tokenizer_of(resumed, o.resume);
  nn::LMConfig cfg = o.model;
  cfg.vocab_size = tok->vocab_size();
  cfg.max_seq_len = o.seq;
  cfg.pos.max_len = o.seq;
  cfg.validate();
  cfg.check_length(o.seq);
  text::TokenStream train(corpus, text::Split::train, *tok), val(corpus, text::Split::validation, *tok);
  train.num_windows(o.seq);  // errors now (naming the split) if a split is shorter than one window
  val.num_windows(o.seq);

  manual_seed(o.seed);
  Generator init_gen(o.seed), data_gen(o.seed ^ 0x9e3779b97f4a7c15ull);
  nn::TransformerLM model(cfg, {}, init_gen);
  std::vector<Tensor> params = model.parameters();
  optim::AdamW opt(params, o.lr, {0.9, 0.95}, 1e-8, o.weight_decay);
  const int64_t warmup = o.warmup > 0 ? o.warmup : std::min<int64_t>(100, std::max<int64_t>(1, o.steps / 10));
  const optim::LinearWarmup schedule = optim::warmup_cosine(warmup, o.steps, o.lr * o.min_lr_ratio);
  const nlohmann::json train_cfg = train_json(o), model_cfg = cfg.to_json();
  const nlohmann::json tok_json = nlohmann::json::parse(tok->to_json());

  TrainLmResult r;
  ExpertLoadLog load_log(model);
  int64_t step = 0;
  // Training time and the last loss of the runs before a resume (train_seconds.json beside
  // the checkpoint, and the checkpoint).
  double prior_seconds = 0, prior_loss = std::nan("");
  if (!o.resume.empty()) {
    check_resume(resumed, train_cfg, model_cfg, o.resume);
    check_resume_step("train lm", o.resume, resumed.step, o.steps);
    model.load_state_dict(resumed.model);
    opt.load_state_dict(resumed.optimizer);
    step = resumed.step;
    default_generator().set_state(resumed.rng_state);
    data_gen.set_state(resumed.extra.at("data_rng").get<std::vector<uint64_t>>());
    for (auto& e : resumed.extra.value("val_history", nlohmann::json::array()))
      r.val_history.emplace_back(e[0].get<int64_t>(), e[1].get<double>());
    for (auto& e : resumed.extra.value("load_history", nlohmann::json::array()))
      r.load_history.push_back({e[0].get<int64_t>(), e[1].get<std::vector<double>>(), e[2].get<std::vector<double>>()});
    if (resumed.extra.contains("expert_load")) load_log.restore(resumed.extra["expert_load"], o.resume);
    const nlohmann::json loss = resumed.extra.value("train_loss", nlohmann::json());
    if (loss.is_number()) prior_loss = loss.get<double>();
    prior_seconds = step == 0 ? 0.0 : recorded_seconds(o.resume, step);
  }
  // Data-parallel under mpirun: --batch is per rank. Every rank draws the global batch of
  // batch × ranks windows from the same generator and trains on its rows of it.
  const std::unique_ptr<dist::DistributedDataParallel> ddp =
      data_parallel(model, nlohmann::json{{"train", train_cfg}, {"model", model_cfg}}, o.resume, o.out_dir);
  const int64_t ranks = dist::world_size(), global_batch = o.batch * ranks;
  const auto out_lock = claim_out_dir("train lm", o.out_dir);

  // Wall time of this run's training up to the end of its latest step (periodic validations
  // included, the last step's validation and save not), so the time a checkpoint records is
  // the time its run reports.
  auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  auto save = [&](int64_t at) {
    if (o.out_dir.empty() || !dist::is_main()) return;
    nlohmann::json hist = nlohmann::json::array();
    for (auto& [s, l] : r.val_history) hist.push_back({s, l});
    nlohmann::json extra = {{"tokenizer", tok_json}, {"data_rng", data_gen.state()}, {"val_history", hist}};
    if (!r.load_history.empty()) {
      nlohmann::json loads = nlohmann::json::array();
      for (const ExpertLoadPoint& p : r.load_history) loads.push_back({p.step, p.max_over_mean, p.cv});
      extra["load_history"] = loads;
    }
    if (!model.moe_layers().empty()) extra["expert_load"] = load_log.state();
    const double loss = r.losses.empty() ? prior_loss : double(r.losses.back());
    if (std::isfinite(loss)) extra["train_loss"] = loss;
    io::Checkpoint ck{model.state_dict(), opt.state_dict(), at, default_generator().state(),
                      {{"kind", kLmCheckpointKind}, {"model", model_cfg}, {"train", train_cfg}}, extra};
    r.checkpoint = io::save_checkpoint_and_last(o.out_dir, fmt::format("step-{}.safetensors", at), ck);
    record_seconds(o.out_dir, at, prior_seconds + elapsed);
  };
  auto validate = [&](int64_t at) {
    if (!model.moe_layers().empty()) r.load_history.push_back(load_log.record(at));
    r.validation = evaluate_lm(model, val, o.seq, o.batch, o.eval_windows, o.bf16);
    r.val_history.emplace_back(at, r.validation.loss);
    load_log.discard();
    if (!o.quiet && dist::is_main())
      std::fprintf(stderr, "%s\n",
                   fmt::format("step {}: validation loss {:.4f}, perplexity {:.3f}, {:.4f} bits/byte", at,
                               r.validation.loss, r.validation.perplexity, r.validation.bits_per_byte)
                       .c_str());
  };

  util::Progress progress("train lm", o.steps, "tok", 20);
  t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  const int64_t V = cfg.vocab_size;
  model.train();
  while (step < o.steps) {
    data::Batch b = train.sample(global_batch, o.seq, data_gen);
    if (ddp) b = {b.x.narrow(0, dist::rank() * o.batch, o.batch), b.y.narrow(0, dist::rank() * o.batch, o.batch)};
    opt.set_lr(schedule.lr(step, o.lr));
    opt.zero_grad();
    Tensor logits;
    {
      Autocast ac(o.bf16);
      logits = model.forward(b.x);
    }
    Tensor loss = cross_entropy(logits.reshape({-1, V}), b.y.reshape({-1}));
    const double loss_value = ddp ? dist::all_reduce_sum(loss.item()) / double(ranks) : loss.item();
    check_loss_finite("train lm", loss_value, step + 1, o.lr);
    Tensor total = add_aux_losses(model, loss);
    total.backward();
    if (ddp) ddp->finish();
    if (o.grad_clip > 0) optim::clip_grad_norm_(params, o.grad_clip);
    opt.step();
    after_step(model);
    ++step;
    tokens += global_batch * o.seq;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.losses.push_back(float(loss_value));
    if (!o.quiet && dist::is_main()) progress.update(step, r.losses.back(), global_batch * o.seq);
    const bool last = step == o.steps;
    if (last || (o.eval_every > 0 && step % o.eval_every == 0)) validate(step);
    if (last || (o.save_every > 0 && step % o.save_every == 0) || step == o.stop_after) save(step);
    if (o.stop_after > 0 && step >= o.stop_after) break;
  }
  // A resumed job that had already finished: nothing was trained; its result is the
  // checkpoint's (the validation measured again on the same windows gives the same loss).
  if (r.losses.empty() && step == o.steps) {
    r.validation = evaluate_lm(model, val, o.seq, o.batch, o.eval_windows, o.bf16);
    r.checkpoint = o.resume;
  }
  r.seconds = elapsed;
  r.tokens_per_s = r.seconds > 0 ? double(tokens) / r.seconds : 0;
  r.total_seconds = prior_seconds + r.seconds;
  r.steps = step;
  r.final_train_loss = r.losses.empty() ? prior_loss : r.losses.back();
  r.expert_load = load_log.summary();
  return r;
}

}  // namespace qs::apps
