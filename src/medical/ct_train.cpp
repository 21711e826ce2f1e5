// The CT nodule classification job (include/qiusuo/medical/ct_train.h).
#include "qiusuo/medical/ct_train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "apps/train_guard.h"
#include "io/atomic_file.h"
#include "qiusuo/dist/dist.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/medical/dicom.h"
#include "qiusuo/medical/preprocess.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/util/svg_plot.h"
#include "qiusuo/viz/image.h"
#include "util/progress.h"

namespace qs::medical {

namespace {

constexpr const char* kCtCheckpointKind = "qiusuo-ct";

nlohmann::json data_json(const CtDataOptions& d) {
  return {{"patch_mm", d.patch_mm}, {"patch", d.patch}, {"window_lo", d.window_lo}, {"window_hi", d.window_hi},
          {"malignant_above", d.rule.malignant_above}, {"benign_below", d.rule.benign_below},
          {"min_readers", d.rule.min_readers}, {"group_tolerance_mm", d.group_tolerance_mm}};
}

CtDataOptions data_from_json(const nlohmann::json& j) {
  CtDataOptions d;
  d.patch_mm = j.at("patch_mm").get<double>(), d.patch = j.at("patch").get<int64_t>();
  d.window_lo = j.at("window_lo").get<double>(), d.window_hi = j.at("window_hi").get<double>();
  d.rule.malignant_above = j.at("malignant_above").get<double>(), d.rule.benign_below = j.at("benign_below").get<double>();
  d.rule.min_readers = j.at("min_readers").get<int>(), d.group_tolerance_mm = j.at("group_tolerance_mm").get<double>();
  return d;
}

// The patches of `idx` as one batch [B, 1, S, S, S], augmented when gen is given.
Tensor batch_of(const CtDataset& ds, const std::vector<int64_t>& idx, Generator* gen) {
  std::vector<Tensor> xs;
  for (int64_t i : idx) {
    Tensor p = ds.patches.narrow(0, i, 1);
    if (gen) p = augment(p.reshape({p.size(2), p.size(3), p.size(4)}), *gen).unsqueeze(0).unsqueeze(0);
    xs.push_back(p);
  }
  return cat(xs, 0);
}

std::vector<double> predict(apps::CtNet& model, const CtDataset& ds, const std::vector<int64_t>& idx, bool bf16) {
  NoGrad ng;
  nn::EvalScope eval(model);
  std::vector<double> scores;
  for (size_t at = 0; at < idx.size(); at += 32) {
    std::vector<int64_t> part(idx.begin() + int64_t(at), idx.begin() + int64_t(std::min(idx.size(), at + 32)));
    Tensor logits;
    {
      Autocast ac(bf16);
      logits = model(batch_of(ds, part, nullptr));
    }
    const Tensor p = softmax(logits.to(DType::f32), 1).narrow(1, 1, 1).contiguous();
    for (double v : p.to_vector()) scores.push_back(v);
  }
  return scores;
}

std::vector<int> labels_of(const CtDataset& ds, const std::vector<int64_t>& idx) {
  std::vector<int> y;
  for (int64_t i : idx) y.push_back(ds.samples[size_t(i)].label);
  return y;
}

}  // namespace

std::string roc_svg(const std::vector<std::pair<std::string, std::vector<metrics::RocPoint>>>& curves,
                    const std::string& title) {
  std::vector<util::PlotSeries> series = {{"chance", {0, 1}, {0, 1}}};
  for (const auto& [label, c] : curves) {
    util::PlotSeries s{label, {}, {}};
    for (const metrics::RocPoint& p : c) s.x.push_back(p.fpr), s.y.push_back(p.tpr);
    series.push_back(s);
  }
  util::PlotOptions po;
  po.title = title, po.x_label = "1 - specificity", po.y_label = "sensitivity";
  return util::svg_line_plot(series, po);
}

std::vector<std::string> write_ct_figures(apps::CtNet& model, const CtDataset& ds, const std::vector<int64_t>& idx,
                                          const std::string& dir, int max) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> files;
  const int64_t S = ds.patches.size(2), zoom = std::max<int64_t>(1, 192 / S);
  for (size_t n = 0; n < idx.size() && int(n) < max; ++n) {
    const int64_t i = idx[n];
    const Tensor x = ds.patches.narrow(0, i, 1);
    std::vector<Tensor> gates;
    {
      NoGrad ng;
      nn::EvalScope eval(model);
      model.forward_gates(x, &gates);
    }
    const Tensor cam = apps::grad_cam(model, x);
    auto slice = [&](const Tensor& t) {  // the middle axial slice of a [1, 1, S, S, S] map
      return t.narrow(2, S / 2, 1).contiguous().to_vector();
    };
    const std::vector<double> img = slice(x), c = slice(cam);
    const std::vector<double> g = gates.empty() ? std::vector<double>() : slice(gates.back());
    const int panels = gates.empty() ? 2 : 3;
    viz::Image out(int(S * zoom) * panels + 8 * (panels - 1), int(S * zoom), viz::kWhite);
    for (int p = 0; p < panels; ++p) {
      const std::vector<double>* over = p == 0 ? nullptr : (p == 1 && !g.empty()) ? &g : &c;
      for (int64_t r = 0; r < S; ++r)
        for (int64_t q = 0; q < S; ++q) {
          const uint8_t v = uint8_t(std::clamp(img[size_t(r * S + q)], 0.0, 1.0) * 255);
          const int x0 = int(p * (S * zoom + 8) + q * zoom), y0 = int(r * zoom);
          out.fill_rect(x0, y0, int(zoom), int(zoom), viz::Rgb{v, v, v});
          if (over)
            for (int64_t dy = 0; dy < zoom; ++dy)
              for (int64_t dx = 0; dx < zoom; ++dx)
                out.blend(x0 + int(dx), y0 + int(dy), viz::viridis((*over)[size_t(r * S + q)]), 0.45);
        }
    }
    const std::string f = (std::filesystem::path(dir) /
                           fmt::format("nodule_{}_{}.png", n + 1, ds.samples[size_t(i)].label ? "malignant" : "benign"))
                              .string();
    viz::write_png(out, f);
    files.push_back(f);
  }
  return files;
}

CtDataset build_ct_dataset(const std::string& root, const CtDataOptions& opt) {
  const std::vector<LidcCase> cases = find_lidc_cases(root);
  if (cases.empty()) throw IOError(fmt::format("{}: no CT series with a LIDC annotation XML", root));
  CtDataset ds;
  std::vector<Tensor> patches;
  for (const LidcCase& c : cases) {
    const DicomSeries s = read_dicom_series(c.dir);
    const LidcRead r = read_lidc_xml(c.xml);
    for (const LidcNodule& n : group_nodules(r, s, opt.group_tolerance_mm)) {
      const int y = label(n, opt.rule);
      if (y < 0) {
        ++ds.excluded;
        continue;
      }
      const Tensor p = window(patch_mm(s.volume, n.centre, opt.patch_mm, opt.patch), opt.window_lo, opt.window_hi);
      patches.push_back(p.reshape({1, 1, opt.patch, opt.patch, opt.patch}));
      ds.samples.push_back({s.patient_id.empty() ? c.dir : s.patient_id, c.dir, y, n.mean_malignancy, n.diameter_mm,
                            n.centre});
    }
  }
  if (patches.empty())
    throw IOError(fmt::format("{}: no labelled nodule in {} cases ({} excluded by the rule)", root, cases.size(),
                              ds.excluded));
  ds.patches = cat(patches, 0);
  return ds;
}

TrainCtResult train_ct(const TrainCtOptions& o) {
  QS_CHECK(!o.out.empty(), "ct train: an output folder (--out) is required");
  QS_CHECK(o.loss == "focal" || o.loss == "ce", "ct train: unknown loss '{}' (focal or ce)", o.loss);
  QS_CHECK(o.epochs >= 1 && o.batch >= 1 && o.lr > 0, "ct train: epochs, batch and lr must be positive");
  QS_CHECK(o.split.size() == 3, "ct train: the split needs train, validation and test fractions");
  const auto t0 = std::chrono::steady_clock::now();
  const CtDataset ds = build_ct_dataset(o.data, o.data_options);
  std::vector<std::string> patients;
  for (const CtSample& s : ds.samples) patients.push_back(s.patient);
  const std::map<std::string, int> split = split_patients(patients, o.split, o.split_seed);
  std::vector<int64_t> idx[3];
  for (size_t i = 0; i < ds.samples.size(); ++i) idx[split.at(ds.samples[i].patient)].push_back(int64_t(i));
  const char* names[3] = {"training", "validation", "test"};
  for (int s = 0; s < 3; ++s) {
    int pos = 0;
    for (int64_t i : idx[s]) pos += ds.samples[size_t(i)].label;
    QS_CHECK(pos > 0 && pos < int(idx[s].size()),
             "ct train: the {} split has {} nodules, {} malignant: it needs both classes (more cases, or another "
             "--split-seed)",
             names[s], idx[s].size(), pos);
  }
  TrainCtResult r;
  r.train = int(idx[0].size()), r.val = int(idx[1].size()), r.test = int(idx[2].size());

  Generator gen(o.seed);
  apps::CtNetConfig cfg = o.model;
  cfg.patch = o.data_options.patch;
  apps::CtNet model(cfg, gen);
  optim::AdamW opt(model.parameters(), o.lr, {0.9, 0.999}, 1e-8, o.weight_decay);
  const std::vector<double> alpha = o.alpha >= 0 ? std::vector<double>{o.alpha} : std::vector<double>{};
  nn::StateDict best;
  double best_auc = -1, train_seconds = 0;
  int64_t seen = 0;
  const nlohmann::json config = {{"kind", kCtCheckpointKind},
                                 {"model", cfg.to_json()},
                                 {"data", data_json(o.data_options)},
                                 {"train", {{"data", o.data}, {"loss", o.loss}, {"gamma", o.gamma}, {"alpha", o.alpha},
                                            {"epochs", o.epochs}, {"batch", o.batch}, {"lr", o.lr}, {"seed", o.seed},
                                            {"split_seed", o.split_seed}, {"bf16", o.bf16}, {"augment", o.augment},
                                            {"world_size", dist::world_size()}, {"sync_bn", o.sync_bn}}}};
  // Data-parallel under mpirun: --batch is per rank. Every rank shuffles and augments the
  // global batch of batch × ranks volumes alike (one generator, the same draws) and trains
  // on its rows; only rank 0 writes.
  const std::unique_ptr<dist::DistributedDataParallel> ddp = apps::data_parallel(model, config, "", o.out, o.sync_bn);
  const auto out_lock = apps::claim_out_dir("train ct", o.out);
  const int64_t ranks = dist::world_size(), global_batch = o.batch * ranks;
  const int64_t steps_per_epoch = (int64_t(idx[0].size()) + global_batch - 1) / global_batch;
  util::Progress progress("ct train", int64_t(o.epochs) * steps_per_epoch, "vol", 10);
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    std::vector<int64_t> order = idx[0];
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(gen.next_u64() % i)]);
    model.train();
    double loss_sum = 0;
    const auto te = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < steps_per_epoch; ++b) {
      std::vector<int64_t> part(order.begin() + b * global_batch,
                                order.begin() + std::min<int64_t>(int64_t(order.size()), (b + 1) * global_batch));
      const int64_t m = int64_t(part.size());
      if (m < 2 * ranks) continue;  // batch norm needs two on every rank
      Tensor x = batch_of(ds, part, o.augment ? &gen : nullptr);
      std::vector<double> yv;
      for (int64_t i : part) yv.push_back(ds.samples[size_t(i)].label);
      Tensor y = from_vector(yv, {m}, DType::i64);
      const dist::Share mine = dist::share_of(m, dist::rank(), int(ranks));  // this rank's rows
      const int64_t n_local = mine.count;
      if (ddp) x = x.narrow(0, mine.begin, n_local), y = y.narrow(0, mine.begin, n_local);
      opt.zero_grad();
      Tensor loss;
      {
        Autocast ac(o.bf16);
        const Tensor logits = model(x).to(DType::f32);
        loss = o.loss == "focal" ? focal_loss(logits, y, o.gamma, alpha) : cross_entropy(logits, y);
      }
      const double step_loss = ddp ? dist::all_reduce_sum(loss.item() * double(n_local)) / double(m) : loss.item();
      // This rank's share of the global batch, relative to an even split.
      if (ddp) loss = mul(loss, scalar_tensor(double(n_local) * double(ranks) / double(m)));
      loss.backward();
      if (ddp) ddp->finish();
      opt.step();
      loss_sum += step_loss * double(m);
      seen += m;
      if (!o.quiet && dist::is_main()) progress.update((epoch - 1) * steps_per_epoch + b + 1, step_loss, m);
    }
    train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
    r.train_loss.push_back(loss_sum / double(idx[0].size()));
    const double auc = metrics::roc_auc(predict(model, ds, idx[1], o.bf16), labels_of(ds, idx[1]));
    r.val_auc.push_back(auc);
    if (auc > best_auc) {
      best_auc = auc, r.best_epoch = epoch;
      best.clear();
      for (auto& [n, t] : model.state_dict()) best.push_back({n, t.clone()});
    }
  }
  model.load_state_dict(best);
  const std::vector<double> val_scores = predict(model, ds, idx[1], o.bf16), test_scores = predict(model, ds, idx[2], o.bf16);
  const std::vector<int> val_y = labels_of(ds, idx[1]), test_y = labels_of(ds, idx[2]);
  r.test_auc = metrics::bootstrap_auc(test_scores, test_y, o.bootstrap, 0.95, o.seed);
  r.test_curve = metrics::roc_curve(test_scores, test_y);
  const double threshold = metrics::youden(metrics::roc_curve(val_scores, val_y)).threshold;
  int tp = 0, fn = 0, tn = 0, fp = 0;
  for (size_t i = 0; i < test_scores.size(); ++i) {
    const bool pred = test_scores[i] >= threshold;
    if (test_y[i]) (pred ? tp : fn)++;
    else (pred ? fp : tn)++;
  }
  r.test_at_val_threshold = {threshold, double(tp) / std::max(1, tp + fn), double(tn) / std::max(1, tn + fp)};
  r.volumes_per_s = train_seconds > 0 ? double(seen) / train_seconds : 0;

  r.checkpoint = (std::filesystem::path(o.out) / "last.safetensors").string();
  if (!dist::is_main()) return r;  // the same results as rank 0's, which writes them
  std::filesystem::create_directories(o.out);
  io::save_checkpoint(r.checkpoint, io::Checkpoint{model.state_dict(), {}, int64_t(o.epochs), {}, config, {}});
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json curve = nlohmann::json::array();
  for (const metrics::RocPoint& p : r.test_curve) curve.push_back({p.fpr, p.tpr});
  const nlohmann::json report = {
      {"train", r.train}, {"val", r.val}, {"test", r.test}, {"best_epoch", r.best_epoch}, {"train_loss", r.train_loss},
      {"val_auc", r.val_auc}, {"test_auc", r.test_auc.auc}, {"test_auc_lo", r.test_auc.lo}, {"test_auc_hi", r.test_auc.hi},
      {"threshold", threshold}, {"test_sensitivity", r.test_at_val_threshold.sensitivity},
      {"test_specificity", r.test_at_val_threshold.specificity}, {"volumes_per_s", r.volumes_per_s},
      {"seconds", r.seconds}, {"test_roc", curve}, {"config", config}};
  io::write_file_atomic((std::filesystem::path(o.out) / "report.json").string(), report.dump(1) + "\n");
  const std::string roc_file = (std::filesystem::path(o.out) / "roc.svg").string();
  io::write_file_atomic(roc_file, roc_svg({{fmt::format("{} (AUC {:.3f})", cfg.variant, r.test_auc.auc), r.test_curve}},
                                          "ROC on the test split"));
  r.figures = {roc_file};
  for (const std::string& f : write_ct_figures(model, ds, idx[2], (std::filesystem::path(o.out) / "figures").string()))
    r.figures.push_back(f);
  return r;
}

EvalCtResult eval_ct(const std::string& checkpoint, const std::string& data, int bootstrap, uint64_t seed) {
  const io::Checkpoint ck = io::load_checkpoint(checkpoint);
  QS_CHECK(ck.config.is_object() && ck.config.value("kind", std::string()) == kCtCheckpointKind,
           "ct eval: {} is not a CT classifier checkpoint (`qiusuo ct train` writes one)", checkpoint);
  const apps::CtNetConfig cfg = apps::CtNetConfig::from_json(ck.config.at("model"));
  const CtDataOptions d = data_from_json(ck.config.at("data"));
  Generator g(0);
  apps::CtNet model(cfg, g);
  model.load_state_dict(ck.model);
  const CtDataset ds = build_ct_dataset(data, d);
  std::vector<int64_t> all(ds.samples.size());
  std::iota(all.begin(), all.end(), 0);
  EvalCtResult r;
  r.scores = predict(model, ds, all, ck.config.at("train").value("bf16", false));
  r.labels = labels_of(ds, all);
  r.nodules = int(all.size());
  r.auc = metrics::bootstrap_auc(r.scores, r.labels, bootstrap, 0.95, seed);
  r.curve = metrics::roc_curve(r.scores, r.labels);
  return r;
}

}  // namespace qs::medical
