// The FCOS-style defect detectors (include/qiusuo/apps/detector.h).
#include "qiusuo/apps/detector.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "qiusuo/autograd.h"
#include "qiusuo/error.h"
#include "qiusuo/metrics/detection.h"
#include "qiusuo/nn/activation.h"
#include "qiusuo/nn/init.h"
#include "qiusuo/ops.h"

namespace qs::apps {

nlohmann::json DetectorConfig::to_json() const {
  return {{"model", model},       {"depth", depth},     {"width", width},   {"in_channels", in_channels},
          {"classes", classes},   {"channels", channels}, {"frames", frames}, {"temporal_layers", temporal_layers},
          {"heads", heads},       {"travel", travel}};
}

DetectorConfig DetectorConfig::from_json(const nlohmann::json& j) {
  QS_CHECK(j.is_object(), "detector config: expected a JSON object, got {}", j.type_name());
  DetectorConfig c;
  auto get = [&](const char* k, auto& v) {
    if (j.contains(k)) v = j.at(k).get<std::decay_t<decltype(v)>>();
  };
  try {
    get("model", c.model), get("depth", c.depth), get("width", c.width), get("in_channels", c.in_channels);
    get("classes", c.classes), get("channels", c.channels), get("frames", c.frames);
    get("temporal_layers", c.temporal_layers), get("heads", c.heads), get("travel", c.travel);
  } catch (const nlohmann::json::exception& e) {
    QS_CHECK(false, "detector config: {}", e.what());
  }
  QS_CHECK(c.model == "cnn" || c.model == "spatiotemporal", "detector config: model must be cnn or spatiotemporal, got "
           "'{}'", c.model);
  QS_CHECK(c.width >= 1 && c.width <= 1024 && c.in_channels >= 1 && c.in_channels <= 16 && c.classes >= 1 &&
               c.classes <= 1000 && c.channels >= 1 && c.channels <= 4096 && c.frames >= 1 && c.frames <= 64 &&
               c.temporal_layers >= 0 && c.temporal_layers <= 16 && c.heads >= 1 && c.channels % c.heads == 0 &&
               std::isfinite(c.travel) && std::abs(c.travel) <= 4096,
           "detector config: width, in_channels, classes, channels, frames, temporal_layers or heads out of range "
           "(heads must divide channels): {}", j.dump());
  return c;
}

namespace {

std::shared_ptr<nn::Sequential> tower(int64_t c, Generator& gen) {
  auto t = std::make_shared<nn::Sequential>();
  for (int i = 0; i < 2; ++i) {
    t->push_back(std::make_shared<nn::Conv2d>(c, c, 3, nn::ConvOptions{.padding = 1, .bias = false}, gen));
    t->push_back(std::make_shared<nn::BatchNorm2d>(c));
    t->push_back(std::make_shared<nn::ReLU>());
  }
  return t;
}

// Upsampled (nearest) to `like`'s spatial size and added to it.
Tensor up_add(const Tensor& coarse, const Tensor& like) {
  return like + interpolate(coarse, std::vector<int64_t>{like.size(2), like.size(3)}, "nearest");
}

}  // namespace

Detector::Detector(const DetectorConfig& cfg, Generator& gen) : Module("Detector"), cfg_(cfg) {
  DetectorConfig::from_json(cfg.to_json());  // the same checks as a loaded config
  backbone_ = register_module("backbone", std::make_shared<ResNet>(
                                              ResNetConfig{.depth = cfg.depth, .in_channels = cfg.in_channels, .width = cfg.width}, gen));
  const int64_t C = cfg.channels;
  auto one_by_one = [&](int64_t in) { return std::make_shared<nn::Conv2d>(in, C, 1, nn::ConvOptions{}, gen); };
  lat3_ = register_module("lat3", one_by_one(backbone_->channels(2)));
  lat4_ = register_module("lat4", one_by_one(backbone_->channels(3)));
  lat5_ = register_module("lat5", one_by_one(backbone_->channels(4)));
  smooth_ = register_module("smooth", std::make_shared<nn::Conv2d>(C, C, 3, nn::ConvOptions{.padding = 1, .bias = false}, gen));
  smooth_bn_ = register_module("smooth_bn", std::make_shared<nn::BatchNorm2d>(C));
  if (cfg.model == "spatiotemporal") {
    time_embed_ = register_parameter("time_embed", zeros({cfg.frames, C}));
    {
      NoGrad ng;
      nn::init::normal_(time_embed_, 0.0, 0.02, gen);
    }
    nn::PositionConfig none;
    none.kind = nn::PositionEncoding::none;
    for (int l = 0; l < cfg.temporal_layers; ++l) {
      auto attn = std::make_shared<nn::MultiheadAttention>(C, cfg.heads, 0, none, true, gen);
      auto mlp = std::make_shared<nn::GeluMLP>(C, 2 * C, true, gen);
      temporal_.push_back(register_module(fmt::format("temporal{}", l), std::make_shared<nn::TransformerBlock>(
                                                                               false, C, 1e-5, attn, mlp)));
    }
  }
  cls_tower_ = register_module("cls_tower", tower(C, gen));
  reg_tower_ = register_module("reg_tower", tower(C, gen));
  cls_out_ = register_module("cls_out", std::make_shared<nn::Conv2d>(C, cfg.classes, 3, nn::ConvOptions{.padding = 1}, gen));
  reg_out_ = register_module("reg_out", std::make_shared<nn::Conv2d>(C, 4, 3, nn::ConvOptions{.padding = 1}, gen));
  ctr_out_ = register_module("ctr_out", std::make_shared<nn::Conv2d>(C, 1, 3, nn::ConvOptions{.padding = 1}, gen));
  // Start every class at probability 0.01 (focal loss's prior: background dominates).
  NoGrad ng;
  Tensor bias = cls_out_->bias();  // a handle on the parameter's storage
  bias.fill_(-std::log((1 - 0.01) / 0.01));
}

DetectorMaps Detector::maps(const Tensor& x_in) {
  nn::ModuleScope scope(*this);
  const int64_t T = cfg_.frames_in();
  Tensor x = x_in.dim() == 4 && T == 1 ? x_in.unsqueeze(1) : x_in;
  QS_CHECK(x.dim() == 5 && x.size(1) == T && x.size(2) == cfg_.in_channels, "Detector ({}): expected frames [B, {}, {}, "
           "H, W], got {}", cfg_.model, T, cfg_.in_channels, shape_str(x_in.shape()));
  const int64_t B = x.size(0), H = x.size(3);
  if (T > 1 && cfg_.travel != 0) {
    // Frame k (lag T - 1 - k) shows at row y what the last frame shows at y - lag * travel:
    // shift it up by that many rows (down for a negative travel), zeros where it has none.
    std::vector<Tensor> frames;
    for (int64_t k = 0; k < T; ++k) {
      const Tensor f = x.select(1, k);  // [B, C, H, W]
      const int64_t d = std::clamp<int64_t>(std::llround(double(T - 1 - k) * cfg_.travel), -H, H);
      if (d == 0) {
        frames.push_back(f);
        continue;
      }
      const Tensor pad = zeros({B, f.size(1), std::abs(d), f.size(3)});
      if (d == H || d == -H) frames.push_back(zeros(f.shape()));
      else if (d > 0) frames.push_back(cat({f.narrow(2, d, H - d), pad}, 2));
      else frames.push_back(cat({pad, f.narrow(2, 0, H + d)}, 2));
    }
    x = stack(frames, 1);
  }
  const auto s = backbone_->stages(x.reshape({B * T, x.size(2), x.size(3), x.size(4)}));
  Tensor p = (*lat5_)(s[3]);
  p = up_add(p, (*lat4_)(s[2]));
  p = up_add(p, (*lat3_)(s[1]));
  p = smooth_bn_->forward_relu((*smooth_)(p));  // [B T, C, h, w]
  const int64_t C = p.size(1), h = p.size(2), w = p.size(3);
  if (T > 1) {
    // Every location's T vectors as a sequence: [B h w, T, C].
    Tensor seq = p.reshape({B, T, C, h * w}).permute({0, 3, 1, 2}).reshape({B * h * w, T, C}) + time_embed_;
    for (auto& block : temporal_) seq = (*block)(seq);
    p = seq.select(1, T - 1).reshape({B, h, w, C}).permute({0, 3, 1, 2}).contiguous();
  }
  DetectorMaps m;
  m.stride = kStride;
  Tensor ct = (*cls_tower_)(p), rt = (*reg_tower_)(p);
  m.cls = (*cls_out_)(ct);
  // Distances in pixels: exp of a clamped logit (no overflow early in training), times the stride.
  m.reg = exp(clamp((*reg_out_)(rt), std::nullopt, 8.0)) * double(kStride);
  m.ctr = (*ctr_out_)(rt);
  return m;
}

DetectorTargets fcos_targets(const std::vector<Tensor>& boxes, const std::vector<Tensor>& labels,
                             const DetectorMaps& maps) {
  const int64_t B = maps.cls.size(0), K = maps.cls.size(1), h = maps.cls.size(2), w = maps.cls.size(3);
  const double s = double(maps.stride), radius = 1.5 * s;
  QS_CHECK(int64_t(boxes.size()) == B && int64_t(labels.size()) == B, "fcos_targets: {} box sets and {} label sets "
           "for a batch of {}", boxes.size(), labels.size(), B);
  std::vector<float> cls(size_t(B * K * h * w), 0.f), reg(size_t(B * 4 * h * w), 0.f), ctr(size_t(B * h * w), 0.f);
  std::vector<double> pos;
  for (int64_t b = 0; b < B; ++b) {
    QS_CHECK(boxes[size_t(b)].dim() == 2 && boxes[size_t(b)].size(1) == 4 && labels[size_t(b)].dim() == 1 &&
                 labels[size_t(b)].size(0) == boxes[size_t(b)].size(0),
             "fcos_targets: image {}: boxes {} and labels {} do not pair up", b, shape_str(boxes[size_t(b)].shape()),
             shape_str(labels[size_t(b)].shape()));
    const auto bx = boxes[size_t(b)].to_vector(), lb = labels[size_t(b)].to_vector();
    const int64_t n = int64_t(lb.size());
    std::vector<int64_t> owner(size_t(h * w), -1);
    std::vector<double> owner_area(size_t(h * w), INFINITY);
    for (int64_t k = 0; k < n; ++k) {
      const double x1 = bx[size_t(4 * k)], y1 = bx[size_t(4 * k + 1)], x2 = bx[size_t(4 * k + 2)], y2 = bx[size_t(4 * k + 3)];
      QS_CHECK(std::isfinite(x1 + y1 + x2 + y2) && x2 > x1 && y2 > y1, "fcos_targets: image {} box {} ({}, {}, {}, {}) "
               "is empty or not finite", b, k, x1, y1, x2, y2);
      QS_CHECK(lb[size_t(k)] >= 0 && lb[size_t(k)] < double(K), "fcos_targets: image {} box {} has class {} of {}", b, k,
               lb[size_t(k)], K);
      const double cx = (x1 + x2) / 2, cy = (y1 + y2) / 2, area = (x2 - x1) * (y2 - y1);
      bool claimed = false;
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          const double px = (double(j) + 0.5) * s, py = (double(i) + 0.5) * s;
          const bool inside = px > x1 && px < x2 && py > y1 && py < y2;
          const bool central = std::abs(px - cx) < radius && std::abs(py - cy) < radius;
          if (!inside || !central) continue;
          claimed = true;
          const size_t at = size_t(i * w + j);
          if (area < owner_area[at]) owner[at] = k, owner_area[at] = area;
        }
      if (!claimed) {  // smaller than a cell: the location nearest its centre
        const int64_t i = std::clamp<int64_t>(int64_t(cy / s), 0, h - 1), j = std::clamp<int64_t>(int64_t(cx / s), 0, w - 1);
        const size_t at = size_t(i * w + j);
        if (area < owner_area[at]) owner[at] = k, owner_area[at] = area;
      }
    }
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        const int64_t k = owner[size_t(i * w + j)];
        if (k < 0) continue;
        const double px = (double(j) + 0.5) * s, py = (double(i) + 0.5) * s;
        const double l = std::max(px - bx[size_t(4 * k)], 0.5), t = std::max(py - bx[size_t(4 * k + 1)], 0.5),
                     r = std::max(bx[size_t(4 * k + 2)] - px, 0.5), d = std::max(bx[size_t(4 * k + 3)] - py, 0.5);
        const int64_t c = int64_t(lb[size_t(k)]);
        cls[size_t(((b * K + c) * h + i) * w + j)] = 1.f;
        const double v[4] = {l, t, r, d};
        for (int q = 0; q < 4; ++q) reg[size_t(((b * 4 + q) * h + i) * w + j)] = float(v[q]);
        ctr[size_t((b * h + i) * w + j)] = float(std::sqrt(std::min(l, r) / std::max(l, r) * std::min(t, d) / std::max(t, d)));
        pos.push_back(double((b * h + i) * w + j));
      }
  }
  auto tensor = [](const std::vector<float>& v, Shape shape) {
    Tensor t = empty(shape);
    std::copy(v.begin(), v.end(), t.data_ptr<float>());
    return t;
  };
  DetectorTargets t;
  t.cls = tensor(cls, {B, K, h, w});
  t.reg = tensor(reg, {B, 4, h, w});
  t.ctr = tensor(ctr, {B, 1, h, w});
  t.n_pos = int64_t(pos.size());
  t.pos = t.n_pos ? from_vector(pos, {t.n_pos}, DType::i64) : empty({0}, DType::i64);
  return t;
}

namespace {

// [B, C, h, w] -> [B h w, C] rows at the flat indices `pos`.
Tensor rows_at(const Tensor& m, const Tensor& pos) {
  const int64_t C = m.size(1);
  return index_select(m.permute({0, 2, 3, 1}).reshape({-1, C}), 0, pos);
}

}  // namespace

DetectorNorms detector_norms(const DetectorTargets& t) {
  DetectorNorms n;
  n.pos = double(t.n_pos);
  if (t.n_pos > 0) n.ctr = sum(rows_at(t.ctr, t.pos)).item();
  return n;
}

DetectorLoss detector_loss(const DetectorMaps& m, const DetectorTargets& t) {
  DetectorNorms n = detector_norms(t);
  n.pos = std::max(1.0, n.pos);
  n.ctr = std::max(1e-6, n.ctr);
  return detector_loss(m, t, n);
}

DetectorLoss detector_loss(const DetectorMaps& m, const DetectorTargets& t, const DetectorNorms& norms) {
  QS_CHECK(m.cls.shape() == t.cls.shape(), "detector_loss: maps {} and targets {} differ", shape_str(m.cls.shape()),
           shape_str(t.cls.shape()));
  QS_CHECK(norms.pos > 0 && norms.ctr > 0, "detector_loss: normalisers must be positive, got {} and {}", norms.pos,
           norms.ctr);
  const double norm = norms.pos, alpha = 0.25;
  DetectorLoss l;
  // Focal loss: ce (1 - p_t)^2 (alpha z + (1 - alpha)(1 - z)), p_t = p z + (1 - p)(1 - z).
  {
    const Tensor p = sigmoid(m.cls), z = t.cls;
    const Tensor pt = p * z + (1.0 - p) * (1.0 - z);
    const Tensor one_minus = 1.0 - pt;
    l.cls = sum(binary_cross_entropy_with_logits(m.cls, z, Tensor(), "none") * one_minus * one_minus * (z * alpha + (1.0 - z) * (1.0 - alpha))) / norm;
  }
  if (t.n_pos == 0) {
    l.box = sum(m.reg) * 0.0;  // no positives: nothing to regress, but keep the graph whole
    l.ctr = sum(m.ctr) * 0.0;
  } else {
    const Tensor p = rows_at(m.reg, t.pos), g = rows_at(t.reg, t.pos), c = rows_at(t.ctr, t.pos).reshape({-1});
    auto col = [](const Tensor& x, int64_t i) { return x.select(1, i); };
    const Tensor pl = col(p, 0), pt = col(p, 1), pr = col(p, 2), pb = col(p, 3);
    const Tensor gl = col(g, 0), gt = col(g, 1), gr = col(g, 2), gb = col(g, 3);
    const Tensor area_p = (pl + pr) * (pt + pb), area_g = (gl + gr) * (gt + gb);
    const Tensor inter = (minimum(pl, gl) + minimum(pr, gr)) * (minimum(pt, gt) + minimum(pb, gb));
    const Tensor uni = area_p + area_g - inter;
    const Tensor enclose = (maximum(pl, gl) + maximum(pr, gr)) * (maximum(pt, gt) + maximum(pb, gb));
    const Tensor giou = inter / uni - (enclose - uni) / enclose;
    l.box = sum((1.0 - giou) * c) / norms.ctr;
    l.ctr = binary_cross_entropy_with_logits(rows_at(m.ctr, t.pos).reshape({-1}), c, Tensor(), "sum") / norm;
  }
  l.total = l.cls + l.box + l.ctr;
  return l;
}

std::vector<int> nms(const std::vector<std::array<double, 4>>& boxes, const std::vector<double>& scores, double iou) {
  QS_CHECK(boxes.size() == scores.size(), "nms: {} boxes and {} scores", boxes.size(), scores.size());
  std::vector<int> order(boxes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[size_t(a)] > scores[size_t(b)]; });
  auto box = [&](int i) {
    const auto& b = boxes[size_t(i)];
    return metrics::Box{b[0], b[1], b[2], b[3]};
  };
  std::vector<int> keep;
  for (int i : order) {
    bool suppressed = false;
    for (int k : keep)
      if (metrics::iou(box(i), box(k), metrics::BoxConvention::continuous) > iou) {
        suppressed = true;
        break;
      }
    if (!suppressed) keep.push_back(i);
  }
  return keep;
}

std::vector<std::vector<FoundBox>> decode_detections(const DetectorMaps& m, int64_t H, int64_t W, double threshold,
                                                     double nms_iou, int pre_nms, int max_boxes) {
  NoGrad ng;
  const int64_t B = m.cls.size(0), K = m.cls.size(1), h = m.cls.size(2), w = m.cls.size(3);
  const auto cls = sigmoid(m.cls).contiguous().to_vector(), ctr = sigmoid(m.ctr).contiguous().to_vector(),
             reg = m.reg.contiguous().to_vector();
  const double s = double(m.stride);
  std::vector<std::vector<FoundBox>> out(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    std::vector<FoundBox> cand;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          const double score = std::sqrt(cls[size_t(((b * K + k) * h + i) * w + j)] * ctr[size_t((b * h + i) * w + j)]);
          if (!(score > threshold)) continue;
          const double px = (double(j) + 0.5) * s, py = (double(i) + 0.5) * s;
          auto d = [&](int q) { return reg[size_t(((b * 4 + q) * h + i) * w + j)]; };
          FoundBox f;
          f.cls = int(k);
          f.score = score;
          f.box = {std::clamp(px - d(0), 0.0, double(W)), std::clamp(py - d(1), 0.0, double(H)),
                   std::clamp(px + d(2), 0.0, double(W)), std::clamp(py + d(3), 0.0, double(H))};
          cand.push_back(f);
        }
    std::stable_sort(cand.begin(), cand.end(), [](const FoundBox& a, const FoundBox& c) { return a.score > c.score; });
    if (int(cand.size()) > pre_nms) cand.resize(size_t(pre_nms));
    std::vector<FoundBox> kept;
    for (int64_t k = 0; k < K; ++k) {
      std::vector<std::array<double, 4>> bx;
      std::vector<double> sc;
      std::vector<const FoundBox*> of;
      for (const FoundBox& f : cand)
        if (f.cls == k) bx.push_back(f.box), sc.push_back(f.score), of.push_back(&f);
      for (int i : nms(bx, sc, nms_iou)) kept.push_back(*of[size_t(i)]);
    }
    std::stable_sort(kept.begin(), kept.end(), [](const FoundBox& a, const FoundBox& c) { return a.score > c.score; });
    if (int(kept.size()) > max_boxes) kept.resize(size_t(max_boxes));
    out[size_t(b)] = std::move(kept);
  }
  return out;
}

}  // namespace qs::apps
