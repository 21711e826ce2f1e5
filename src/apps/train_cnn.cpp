// The Fashion-MNIST training job: SGD with momentum and a cosine schedule, a
// checkpoint at every epoch end (and every --save-every steps), exact resume.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "util/progress.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/data/augment.h"
#include "qiusuo/data/dataloader.h"
#include "qiusuo/data/idx.h"
#include "qiusuo/dist/dist.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/optim/schedule.h"
#include "apps/train_guard.h"

namespace qs::apps {

namespace {

nlohmann::json config_of(const TrainCnnOptions& o, const CnnWidths& widths) {
  return {{"model", "FashionCNN"}, {"epochs", o.epochs},   {"batch", o.batch},
          {"lr", o.lr},            {"momentum", o.momentum}, {"weight_decay", o.weight_decay},
          {"seed", o.seed},        {"bf16", o.bf16},       {"limit_train", o.limit_train},
          {"nesterov", o.nesterov}, {"label_smoothing", o.label_smoothing}, {"hflip", o.hflip},
          {"widths", widths.to_json()}, {"init", o.init}, {"bn_l1", o.bn_l1},
          {"world_size", dist::world_size()}, {"sync_bn", o.sync_bn}};
}

// Resuming is exact only with the settings the run started with.
void check_resume_config(const nlohmann::json& saved, const nlohmann::json& now, const std::string& path) {
  if (!saved.is_object() || saved.value("model", "") != "FashionCNN")
    throw Error(fmt::format("{}: not a FashionCNN training checkpoint (config: {}); hint: resume a checkpoint written by "
                            "'qiusuo train cnn'",
                            path, saved.dump()));
  for (const char* k : {"batch", "lr", "momentum", "weight_decay", "seed", "bf16", "limit_train", "epochs", "nesterov",
                        "label_smoothing", "hflip", "widths", "init", "bn_l1", "sync_bn"})
    if (saved.contains(k) && saved[k] != now[k])
      throw Error(fmt::format("{}: the checkpoint was trained with {}={}, this run asks for {}; an exact resume needs "
                              "the same settings",
                              path, k, saved[k].dump(), now[k].dump()));
  check_resume_world("train cnn", path, saved.value("world_size", 1));
}


}  // namespace

// Network slimming (Liu et al. 2017): sum of |gamma| over every batch norm, the L1 penalty
// that drives unimportant channels' scales to zero so that one global bn-scale threshold
// (prune::PruneOptions::global) can find them.
Tensor bn_scale_l1(const nn::Module& model) {
  Tensor total;
  for (auto& [name, m] : model.named_modules())
    if (auto* bn = dynamic_cast<const nn::BatchNorm*>(m.get()); bn && bn->weight().defined()) {
      Tensor s = sum(abs(bn->weight()));
      total = total.defined() ? add(total, s) : s;
    }
  return total;
}

Tensor first_rows(const Tensor& t, int64_t n) { return n > 0 && n < t.size(0) ? t.narrow(0, 0, n).contiguous() : t; }

std::pair<double, double> evaluate_classifier(nn::Module& model, const Tensor& images, const Tensor& labels,
                                              int64_t batch, bool bf16) {
  NoGrad ng;
  nn::EvalScope eval_mode(model);
  int64_t n = images.size(0), correct = 0;
  double loss_sum = 0;
  for (int64_t i = 0; i < n; i += batch) {
    int64_t b = std::min(batch, n - i);
    Tensor x = images.narrow(0, i, b), y = labels.narrow(0, i, b);
    Tensor logits;
    {
      Autocast ac(bf16);
      logits = model(x);
    }
    loss_sum += cross_entropy(logits, y, -100, 0.0, "sum").item();
    Tensor hit = eq(argmax(logits, 1), y);
    correct += int64_t(sum(hit.to(DType::f32)).item());
  }
  return {double(correct) / double(n), loss_sum / double(n)};
}

TrainCnnResult train_fashion_cnn(const TrainCnnOptions& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  QS_CHECK(o.epochs >= 1 && o.batch >= 1, "train cnn: --epochs and --batch must be positive");
  QS_CHECK(std::isfinite(o.lr) && o.lr > 0, "train cnn: --lr must be a positive finite number, got {}", o.lr);
  QS_CHECK(std::isfinite(o.bn_l1) && o.bn_l1 >= 0, "train cnn: --bn-l1 must be 0 or a positive number, got {}",
           o.bn_l1);
  data::FashionMNIST train_set(true, o.data_root, true), test_set(false, o.data_root, true);
  Tensor train_x = first_rows(train_set.images, o.limit_train), train_y = first_rows(train_set.labels, o.limit_train);
  Tensor test_x = first_rows(test_set.images, o.limit_test), test_y = first_rows(test_set.labels, o.limit_test);

  manual_seed(o.seed);
  Generator init_gen(o.seed);
  std::shared_ptr<FashionCNN> model_ptr;
  if (!o.init.empty()) {
    std::string method;
    model_ptr = load_fashion_cnn(o.init, &method);
    QS_CHECK(method == "fp32", "train cnn: --init {} is quantised ({}); start from a float checkpoint", o.init, method);
  } else {
    model_ptr = std::make_shared<FashionCNN>(init_gen);
  }
  FashionCNN& model = *model_ptr;
  optim::SGD sgd(model.parameters(), o.lr, o.momentum, 0.0, o.weight_decay, o.nesterov);
  data::TensorDataset ds(train_x, train_y);
  data::DataLoader loader(ds, o.batch, true, o.seed);
  // Data-parallel under mpirun: --batch is per rank; the global batch is batch × ranks.
  if (dist::active()) loader.shard(dist::rank(), dist::world_size());
  const int64_t total_steps = int64_t(o.epochs) * loader.num_batches();
  optim::CosineAnnealingLR schedule(total_steps);
  nlohmann::json config = config_of(o, model.widths());

  int64_t step = 0;
  if (!o.resume.empty()) {
    io::Checkpoint ck = io::load_checkpoint(o.resume);
    check_resume_config(ck.config, config, o.resume);
    check_resume_step("train cnn", o.resume, ck.step, total_steps);
    model.load_state_dict(ck.model);
    sgd.load_state_dict(ck.optimizer);
    step = ck.step;
    if (!ck.rng_state.empty()) default_generator().set_state(ck.rng_state);
    loader.set_epoch(ck.extra.value("epoch", int64_t(0)), ck.extra.value("batch", int64_t(0)));
  }
  const std::unique_ptr<dist::DistributedDataParallel> ddp = data_parallel(model, config, o.resume, o.out_dir, o.sync_bn);
  const auto out_lock = claim_out_dir("train cnn", o.out_dir);

  TrainCnnResult r;
  auto save = [&](const std::string& name) {
    if (o.out_dir.empty() || !dist::is_main()) return;
    io::Checkpoint ck{model.state_dict(), sgd.state_dict(), step, default_generator().state(), config,
                      {{"epoch", loader.epoch()}, {"batch", loader.batch_index()}}};
    r.checkpoint = io::save_checkpoint_and_last(o.out_dir, name, ck);
  };

  util::Progress progress("train", total_steps, "img", 50);
  auto t0 = std::chrono::steady_clock::now();
  int64_t images = 0;
  bool stopped = false;
  model.train();
  while (loader.epoch() < o.epochs && !stopped) {
    int64_t epoch = loader.epoch();
    while (auto batch = loader.next()) {
      schedule.apply(sgd, step);
      sgd.zero_grad();
      Tensor logits;
      {
        Autocast ac(o.bf16);
        // The flips' coins depend only on (seed, step): a resumed run draws the same ones.
        logits = model(o.hflip ? data::random_hflip(batch->x, o.seed * 0x9e3779b97f4a7c15ULL + uint64_t(step)) : batch->x);
      }
      Tensor loss = cross_entropy(logits, batch->y, -100, o.label_smoothing);
      if (o.bn_l1 > 0) loss = add(loss, mul(bn_scale_l1(model), scalar_tensor(o.bn_l1)));
      const int64_t n_local = batch->x.size(0);
      const int64_t n_global = ddp ? loader.global_batch_size(loader.batch_index() - 1) : n_local;
      // The step's loss over the global batch (each rank's mean, weighted by its samples).
      const double loss_value = ddp ? dist::all_reduce_sum(loss.item() * double(n_local)) / double(n_global) : loss.item();
      check_loss_finite("train cnn", loss_value, step + 1, o.lr);
      // This rank's share of the global batch, relative to an even split.
      if (ddp) loss = mul(loss, scalar_tensor(double(n_local) * dist::world_size() / double(n_global)));
      loss.backward();
      if (ddp) ddp->finish();
      sgd.step();
      ++step;
      images += n_global;
      r.losses.push_back(float(loss_value));
      if (!o.quiet && dist::is_main()) progress.update(step, r.losses.back(), n_global);
      if (o.save_every > 0 && step % o.save_every == 0) save(fmt::format("step-{}.safetensors", step));
      if (o.stop_after > 0 && step >= o.stop_after) {
        save(fmt::format("step-{}.safetensors", step));
        stopped = true;
        break;
      }
    }
    if (!stopped) save(fmt::format("epoch-{}.safetensors", epoch + 1));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.images_per_s = r.seconds > 0 ? double(images) / r.seconds : 0;
  r.steps = step;
  r.final_train_loss = r.losses.empty() ? 0 : r.losses.back();
  if (!stopped) std::tie(r.test_accuracy, r.test_loss) = evaluate_classifier(model, test_x, test_y, 256, o.bf16);
  model.eval();
  r.model = model_ptr;
  return r;
}

}  // namespace qs::apps
