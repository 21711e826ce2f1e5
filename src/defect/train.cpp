// Training and evaluating the defect detectors (include/qiusuo/defect/train.h).
#include "qiusuo/defect/train.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/train_guard.h"
#include "io/atomic_file.h"
#include "qiusuo/dist/dist.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/autograd.h"
#include "qiusuo/error.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/viz/image.h"
#include "util/progress.h"

namespace qs::defect {

namespace {

constexpr const char* kDefectCheckpointKind = "qiusuo-defect-detector";
constexpr double kMean = 0.5, kStd = 0.25;  // grey levels in [0, 1] to roughly zero mean, unit spread

struct Window {
  int seq = 0, t = 0;  // the target frame
};

// Windows ending at t >= first (and with T frames before and at t).
std::vector<Window> windows(const SequenceSet& s, int first, int T) {
  std::vector<Window> w;
  for (int q = 0; q < int(s.frames.size()); ++q)
    for (int t = std::max(first, T - 1); t < int(s.frames[size_t(q)].size()); ++t) w.push_back({q, t});
  return w;
}

// [B, T, 1, H, W] of the windows, mirrored where `flip` says.
Tensor batch_frames(const SequenceSet& s, const std::vector<Window>& part, int T, const std::vector<bool>& flip) {
  const int64_t B = int64_t(part.size()), H = s.height, W = s.width;
  Tensor x = empty({B, T, 1, H, W});
  float* p = x.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int k = 0; k < T; ++k) {
      const Tensor& f = s.frames[size_t(part[size_t(b)].seq)][size_t(part[size_t(b)].t - (T - 1) + k)];
      const float* src = f.data_ptr<float>();
      float* dst = p + (b * T + k) * H * W;
      for (int64_t y = 0; y < H; ++y)
        for (int64_t xx = 0; xx < W; ++xx) dst[y * W + xx] = src[y * W + (flip[size_t(b)] ? W - 1 - xx : xx)];
    }
  return x;
}

Tensor flipped_boxes(const Tensor& boxes, int64_t W) {
  std::vector<double> v = boxes.to_vector();
  for (size_t i = 0; i + 3 < v.size(); i += 4) {
    const double x1 = v[i], x2 = v[i + 2];
    v[i] = double(W) - x2, v[i + 2] = double(W) - x1;
  }
  return v.empty() ? boxes : from_vector(v, boxes.shape());
}

metrics::Box to_box(const std::array<double, 4>& b) { return {b[0], b[1], b[2], b[3]}; }

}  // namespace

SequenceSet load_sequence_set(const std::string& dir) {
  SequenceSet s;
  s.sequences = scan_sequences(dir);
  for (const DefectSequence& q : s.sequences) {
    std::vector<Tensor> frames;
    std::vector<Targets> targets;
    for (const DefectImage& f : q.frames) {
      frames.push_back((load_gray(f) - kMean) / kStd);
      targets.push_back(targets_of(f.voc));
      if (s.height == 0) s.height = f.voc.height, s.width = f.voc.width;
      QS_CHECK(f.voc.height == s.height && f.voc.width == s.width, "defect: {} is {} x {}, the other frames {} x {}",
               f.image, f.voc.width, f.voc.height, s.width, s.height);
    }
    s.frames.push_back(std::move(frames));
    s.targets.push_back(std::move(targets));
  }
  return s;
}

DefectEval evaluate_detector(apps::Detector& model, const SequenceSet& set, int window, int64_t batch) {
  QS_CHECK(window >= 1 && batch >= 1, "defect eval: window {} and batch {} must be >= 1", window, batch);
  const int T = int(model.config().frames_in());
  QS_CHECK(T <= window, "defect eval: the model takes {} frames, more than the window of {}", T, window);
  const std::vector<Window> all = windows(set, window - 1, T);
  std::vector<metrics::GroundTruth> gts;
  std::vector<metrics::Detection> dets;
  NoGrad ng;
  model.eval();
  for (size_t i = 0; i < all.size(); i += size_t(batch)) {
    const std::vector<Window> part(all.begin() + ptrdiff_t(i), all.begin() + ptrdiff_t(std::min(all.size(), i + size_t(batch))));
    const auto found = apps::decode_detections(model.maps(batch_frames(set, part, T, std::vector<bool>(part.size()))),
                                               set.height, set.width);
    for (size_t b = 0; b < part.size(); ++b) {
      const std::string image = fmt::format("{}/{}", part[b].seq, part[b].t);
      const Targets& tg = set.targets[size_t(part[b].seq)][size_t(part[b].t)];
      const auto bx = tg.boxes.to_vector(), lb = tg.labels.to_vector();
      for (size_t k = 0; k < lb.size(); ++k)
        gts.push_back({image, int(lb[k]), {bx[4 * k], bx[4 * k + 1], bx[4 * k + 2], bx[4 * k + 3]}, tg.difficult[k]});
      for (const apps::FoundBox& f : found[b]) dets.push_back({image, f.cls, f.score, to_box(f.box)});
    }
  }
  const int K = int(model.config().classes);
  DefectEval e;
  e.frames = int(all.size());
  e.boxes = int(gts.size());
  const auto all_points = metrics::mean_average_precision(gts, dets, K, 0.5, metrics::ApMethod::all_points,
                                                          metrics::BoxConvention::continuous);
  e.map50 = all_points.map;
  e.per_class = all_points.per_class;
  e.map50_voc07 = metrics::mean_average_precision(gts, dets, K, 0.5, metrics::ApMethod::voc11,
                                                  metrics::BoxConvention::continuous).map;
  const auto coco = metrics::coco_map(gts, dets, K);
  e.coco_map = coco.map, e.coco_map50 = coco.map50, e.coco_map75 = coco.map75;
  return e;
}

namespace {

nlohmann::json eval_json(const DefectEval& e) {
  nlohmann::json ap = nlohmann::json::object();
  for (const auto& c : e.per_class)
    ap[neu_det_classes()[size_t(c.cls)]] = std::isnan(c.ap) ? nlohmann::json() : nlohmann::json(c.ap);
  return {{"frames", e.frames},   {"boxes", e.boxes},       {"map50", e.map50},       {"map50_voc07", e.map50_voc07},
          {"coco_map", e.coco_map}, {"coco_map50", e.coco_map50}, {"coco_map75", e.coco_map75}, {"ap50_per_class", ap}};
}

}  // namespace

TrainDefectResult train_defect(const TrainDefectOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  QS_CHECK(!o.data.empty() && !o.out.empty(), "defect train: --data and --out are needed");
  QS_CHECK(o.epochs >= 1 && o.batch >= 2 && o.lr > 0 && o.window >= 1, "defect train: epochs >= 1, batch >= 2, lr > 0 "
           "and window >= 1 needed (got {}, {}, {}, {})", o.epochs, o.batch, o.lr, o.window);
  apps::DetectorConfig cfg = o.model;
  cfg.classes = int64_t(neu_det_classes().size());
  cfg.in_channels = 1;
  const int T = int(cfg.frames_in());
  QS_CHECK(T <= o.window, "defect train: the model takes {} frames, more than the evaluation window of {}", T, o.window);
  const SequenceSet train = load_sequence_set((std::filesystem::path(o.data) / "train").string());
  const SequenceSet val = load_sequence_set((std::filesystem::path(o.data) / "val").string());
  const SequenceSet test = load_sequence_set((std::filesystem::path(o.data) / "test").string());
  QS_CHECK(val.height == train.height && test.height == train.height && val.width == train.width &&
               test.width == train.width,
           "defect train: train, val and test frames must share one size");
  // The cnn learns from every frame; the spatiotemporal model from every full window.
  const std::vector<Window> samples = windows(train, 0, T);
  QS_CHECK(samples.size() >= 2, "defect train: {} training windows (too few frames per sequence?)", samples.size());

  Generator gen(o.seed);
  apps::Detector model(cfg, gen);
  optim::AdamW opt(model.parameters(), o.lr, {0.9, 0.999}, 1e-8, o.weight_decay);
  TrainDefectResult r;
  nn::StateDict best;
  double best_map = -1, train_seconds = 0;
  int64_t seen = 0;
  const nlohmann::json config = {
      {"kind", kDefectCheckpointKind},
      {"model", cfg.to_json()},
      {"classes", neu_det_classes()},
      {"train", {{"data", o.data}, {"epochs", o.epochs}, {"batch", o.batch}, {"lr", o.lr},
                 {"weight_decay", o.weight_decay}, {"window", o.window}, {"hflip", o.hflip}, {"seed", o.seed},
                 {"world_size", dist::world_size()}, {"sync_bn", o.sync_bn}}}};
  // Data-parallel under mpirun: --batch is per rank. Every rank shuffles and draws the flips
  // of the global batch alike (one generator) and trains on its windows; the loss is
  // normalised by the global batch's positives, so the ranks' mean gradient is the global
  // batch's. Only rank 0 writes.
  const std::unique_ptr<dist::DistributedDataParallel> ddp = apps::data_parallel(model, config, "", o.out, o.sync_bn);
  const auto out_lock = apps::claim_out_dir("train defect", o.out);
  const int64_t ranks = dist::world_size(), global_batch = o.batch * ranks;
  const int64_t steps = (int64_t(samples.size()) + global_batch - 1) / global_batch;
  util::Progress progress("defect train", int64_t(o.epochs) * steps, "frames", 10);
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    std::vector<Window> order = samples;
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(gen.next_u64() % i)]);
    model.train();
    double loss_sum = 0;
    int64_t counted = 0;
    const auto te = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s) {
      std::vector<Window> part(order.begin() + s * global_batch,
                               order.begin() + std::min<int64_t>(int64_t(order.size()), (s + 1) * global_batch));
      const int64_t m = int64_t(part.size());
      if (m < 2 * ranks) continue;  // batch norm needs two on every rank
      std::vector<bool> flip(part.size());
      for (size_t b = 0; b < part.size(); ++b) flip[b] = o.hflip && gen.next_double() < 0.5;
      if (ddp) {  // this rank's windows
        const dist::Share mine = dist::share_of(m, dist::rank(), int(ranks));
        part = std::vector<Window>(part.begin() + mine.begin, part.begin() + mine.begin + mine.count);
        flip = std::vector<bool>(flip.begin() + mine.begin, flip.begin() + mine.begin + mine.count);
      }
      const Tensor x = batch_frames(train, part, T, flip);
      std::vector<Tensor> boxes, labels;
      for (size_t b = 0; b < part.size(); ++b) {
        const Targets& tg = train.targets[size_t(part[b].seq)][size_t(part[b].t)];
        boxes.push_back(flip[b] ? flipped_boxes(tg.boxes, train.width) : tg.boxes);
        labels.push_back(tg.labels);
      }
      opt.zero_grad();
      const apps::DetectorMaps maps = model.maps(x);
      const apps::DetectorTargets targets = apps::fcos_targets(boxes, labels, maps);
      apps::DetectorNorms norms = apps::detector_norms(targets);
      if (ddp) {
        std::vector<double> g{norms.pos, norms.ctr};
        dist::all_reduce_sum(g);
        norms = {std::max(1.0, g[0]) / double(ranks), std::max(1e-6, g[1]) / double(ranks)};
      } else {
        norms = {std::max(1.0, norms.pos), std::max(1e-6, norms.ctr)};
      }
      const apps::DetectorLoss loss = apps::detector_loss(maps, targets, norms);
      // The global batch's loss: the ranks' terms, each already divided by the global norms.
      const double lv = ddp ? dist::all_reduce_sum(loss.total.item()) / double(ranks) : loss.total.item();
      QS_CHECK(std::isfinite(lv), "defect train: the loss is {} at epoch {} step {} (try a lower --lr)", lv, epoch, s + 1);
      loss.total.backward();
      if (ddp) ddp->finish();
      opt.step();
      loss_sum += lv * double(m);
      counted += m;
      seen += m;
      if (!o.quiet && dist::is_main()) progress.update((epoch - 1) * steps + s + 1, lv, m);
    }
    train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
    r.train_loss.push_back(loss_sum / double(std::max<int64_t>(1, counted)));
    const DefectEval v = evaluate_detector(model, val, o.window);
    r.val_map50.push_back(v.map50);
    if (!o.quiet && dist::is_main()) std::fprintf(stderr, "epoch %d: train loss %.4f, val mAP@0.5 %.4f\n", epoch, r.train_loss.back(), v.map50);
    if (v.map50 > best_map) {
      best_map = v.map50, r.best_epoch = epoch, r.val = v;  // the kept weights' validation scores
      best.clear();
      for (auto& [n, t] : model.state_dict()) best.push_back({n, t.clone()});
    }
  }
  model.load_state_dict(best);
  r.test = evaluate_detector(model, test, o.window);
  r.frames_per_s = train_seconds > 0 ? double(seen) / train_seconds : 0;

  const std::filesystem::path out(o.out);
  r.checkpoint = (out / "last.safetensors").string();
  if (!dist::is_main()) return r;  // the same results as rank 0's, which writes them
  std::filesystem::create_directories(out);
  io::save_checkpoint(r.checkpoint, io::Checkpoint{model.state_dict(), {}, int64_t(o.epochs), {}, config, {}});
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const nlohmann::json report = {{"model", cfg.model},           {"best_epoch", r.best_epoch},
                                 {"train_loss", r.train_loss},   {"val_map50", r.val_map50},
                                 {"val", eval_json(r.val)},      {"test", eval_json(r.test)},
                                 {"frames_per_s", r.frames_per_s}, {"seconds", r.seconds},
                                 {"config", config}};
  io::write_file_atomic((out / "report.json").string(), report.dump(1) + "\n");
  const std::string pr = (out / "pr.svg").string();
  io::write_file_atomic(pr, metrics::pr_curve_svg(r.test.per_class, neu_det_classes(),
                                                  fmt::format("{} on the test split: PR at IoU 0.5 (mAP {:.3f})",
                                                              cfg.model, r.test.map50)));
  r.figures = {pr};
  std::vector<std::pair<int, int>> show;
  for (int q = 0; q < std::min<int>(3, int(test.frames.size())); ++q)
    show.push_back({q, int(test.frames[size_t(q)].size()) - 1});
  for (const std::string& f : draw_detections(model, test, show, (out / "figures").string())) r.figures.push_back(f);
  return r;
}

namespace {

// A checkpoint of train_defect as a model in evaluation mode. The config's model is sized
// only after check_config_fits has compared it with the tensors the file holds.
std::unique_ptr<apps::Detector> load_detector(const std::string& checkpoint, const char* who) {
  const io::Checkpoint ck = io::load_checkpoint(checkpoint);
  QS_CHECK(ck.config.is_object() && ck.config.value("kind", std::string()) == kDefectCheckpointKind && ck.config.contains("model"),
           "{}: {} is not a defect detector checkpoint (`qiusuo train defect` writes one)", who, checkpoint);
  const apps::DetectorConfig cfg = apps::DetectorConfig::from_json(ck.config.at("model"));
  // Parameters, roughly: the ResNet's (11.2M / 21.3M / 23.5M at width 64, quadratic in the
  // width), the pyramid and head's 3x3 convolutions, the temporal blocks'.
  const double w = double(cfg.width) / 64, c = double(cfg.channels);
  const double backbone = (cfg.depth == 50 ? 23.5e6 : cfg.depth == 34 ? 21.3e6 : 11.2e6) * w * w;
  io::check_config_fits(checkpoint, ck, 4 * 0.5 * (backbone + 6 * 9 * c * c + cfg.temporal_layers * 8 * c * c));
  Generator g(0);
  auto model = std::make_unique<apps::Detector>(cfg, g);
  model->load_state_dict(ck.model);
  model->eval();
  return model;
}

}  // namespace

DefectEval eval_defect(const std::string& checkpoint, const std::string& split_dir, int window) {
  auto model = load_detector(checkpoint, "defect eval");
  return evaluate_detector(*model, load_sequence_set(split_dir), window);
}

namespace {

// A normalised grey frame [1, H, W] with ground-truth boxes (green; may be empty) and
// detections (their class's colour, with class and score), small frames drawn larger.
viz::Image draw_frame(const Tensor& frame, const std::vector<std::array<double, 4>>& truth,
                      const std::vector<apps::FoundBox>& found) {
  static const viz::Rgb colours[] = {{228, 26, 28}, {55, 126, 184}, {255, 127, 0}, {152, 78, 163}, {166, 86, 40}, {247, 129, 191}};
  const int64_t H = frame.size(1), W = frame.size(2);
  const int scale = std::max<int>(1, int(256 / std::max<int64_t>(1, std::max(H, W))));
  viz::Image img(int(W) * scale, int(H) * scale);
  const Tensor f = frame.contiguous();
  const float* px = f.data_ptr<float>();
  for (int64_t y = 0; y < H * scale; ++y)
    for (int64_t x = 0; x < W * scale; ++x) {
      const double v = std::clamp(px[(y / scale) * W + x / scale] * kStd + kMean, 0.0, 1.0);
      const uint8_t g8 = uint8_t(std::lround(v * 255));
      img.set(int(x), int(y), {g8, g8, g8});
    }
  auto rect = [&](const std::array<double, 4>& b, viz::Rgb c) {
    const int x1 = int(b[0] * scale), y1 = int(b[1] * scale), x2 = int(b[2] * scale) - 1, y2 = int(b[3] * scale) - 1;
    img.fill_rect(x1, y1, x2 - x1 + 1, 2, c);
    img.fill_rect(x1, y2 - 1, x2 - x1 + 1, 2, c);
    img.fill_rect(x1, y1, 2, y2 - y1 + 1, c);
    img.fill_rect(x2 - 1, y1, 2, y2 - y1 + 1, c);
  };
  for (const auto& b : truth) rect(b, {40, 200, 60});
  for (const apps::FoundBox& fb : found) {
    const viz::Rgb c = colours[size_t(fb.cls) % 6];
    rect(fb.box, c);
    viz::Font::get().draw(img, fb.box[0] * scale + 3, fb.box[1] * scale + 8,
                          fmt::format("{} {:.2f}", neu_det_classes()[size_t(fb.cls) % 6], fb.score), 11, c);
  }
  return img;
}

}  // namespace

std::vector<std::string> draw_detections(apps::Detector& model, const SequenceSet& set,
                                         const std::vector<std::pair<int, int>>& frames, const std::string& dir) {
  const int T = int(model.config().frames_in());
  std::filesystem::create_directories(dir);
  std::vector<std::string> written;
  NoGrad ng;
  model.eval();
  for (const auto& [q, t] : frames) {
    QS_CHECK(q >= 0 && q < int(set.frames.size()) && t >= T - 1 && t < int(set.frames[size_t(q)].size()),
             "defect draw: no window of {} frames ends at sequence {} frame {}", T, q, t);
    const auto found = apps::decode_detections(model.maps(batch_frames(set, {{q, t}}, T, {false})), set.height,
                                               set.width, 0.3);
    std::vector<std::array<double, 4>> truth;
    const auto bx = set.targets[size_t(q)][size_t(t)].boxes.to_vector();
    for (size_t k = 0; k + 3 < bx.size(); k += 4) truth.push_back({bx[k], bx[k + 1], bx[k + 2], bx[k + 3]});
    const std::string path =
        (std::filesystem::path(dir) / fmt::format("{}_frame{}.png", set.sequences[size_t(q)].name, t)).string();
    viz::write_png(draw_frame(set.frames[size_t(q)][size_t(t)], truth, found[0]), path);
    written.push_back(path);
  }
  return written;
}

std::vector<std::pair<std::string, std::vector<apps::FoundBox>>> detect_images(const std::string& checkpoint,
                                                                               const std::vector<std::string>& images,
                                                                               const std::string& out_dir,
                                                                               double threshold) {
  auto loaded = load_detector(checkpoint, "detect");
  apps::Detector& model = *loaded;
  const apps::DetectorConfig& cfg = model.config();
  const int T = int(cfg.frames_in());
  QS_CHECK(int(images.size()) >= T, "detect: the {} model reads {} frames at a time; {} image(s) given", cfg.model, T,
           images.size());
  std::vector<Tensor> frames;
  for (const std::string& p : images) {
    frames.push_back((load_gray(p) - kMean) / kStd);
    QS_CHECK(T == 1 || frames.back().shape() == frames.front().shape(), "detect: {} is {} x {}, the first image {} x "
             "{}: a sequence's frames share one size", p, frames.back().size(2), frames.back().size(1),
             frames.front().size(2), frames.front().size(1));
  }
  std::filesystem::create_directories(out_dir);
  std::vector<std::pair<std::string, std::vector<apps::FoundBox>>> out;
  NoGrad ng;
  for (size_t i = size_t(T - 1); i < images.size(); ++i) {
    std::vector<Tensor> window(frames.begin() + ptrdiff_t(i + 1) - T, frames.begin() + ptrdiff_t(i + 1));
    const Tensor x = stack(window, 0).unsqueeze(0);  // [1, T, 1, H, W]
    const auto found = apps::decode_detections(model.maps(x), frames[i].size(1), frames[i].size(2), threshold);
    const std::string drawn = (std::filesystem::path(out_dir) / (std::filesystem::path(images[i]).stem().string() + ".png")).string();
    viz::write_png(draw_frame(frames[i], {}, found[0]), drawn);
    out.push_back({images[i], found[0]});
  }
  return out;
}

}  // namespace qs::defect
