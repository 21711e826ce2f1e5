// `qiusuo prune` on the Fashion-MNIST CNN: analyse the traced forward, plan by a
// criterion, shrink into a narrower FashionCNN, optionally fine-tune, and measure both
// models (include/qiusuo/apps/prune.h).
#include "qiusuo/apps/prune.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "qiusuo/autograd.h"
#include "qiusuo/data/idx.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/prune/prune.h"
#include "util/timing.h"

namespace qs::apps {

namespace {

// Model-only checkpoint bytes of `m`, written beside `near` and removed.
int64_t model_file_bytes(const FashionCNN& m, const std::string& near) {
  const std::string tmp = near + ".size.tmp";
  io::save_checkpoint(tmp, io::Checkpoint{m.state_dict(), {}, 0, {}, {{"model", "FashionCNN"}}, nullptr});
  const int64_t b = int64_t(std::filesystem::file_size(tmp));
  std::filesystem::remove(tmp);
  return b;
}

int64_t flops_per_image(FashionCNN& m) { return graph::trace(m, zeros({1, 1, 28, 28})).flops(); }

// The last step already counted the pruned model's parameters and FLOPs (fine-tuning does
// not change its widths): `step` saves tracing it again.
void describe(PruneCnnStats& s, FashionCNN& m, const PruneCnnStep* step = nullptr) {
  s.widths = m.widths();
  s.params = step ? step->params : m.num_parameters();
  s.flops = step ? step->flops : flops_per_image(m);
}

// Inference on 64 images and one SGD step on 128, the two models alternating
// (util::alternating).
void measure_latency(PruneCnnResult& r, FashionCNN& before, FashionCNN& after, int rounds) {
  if (rounds <= 0) return;
  Generator g(1);
  const Tensor x64 = randn({64, 1, 28, 28}, DType::f32, &g), x128 = randn({128, 1, 28, 28}, DType::f32, &g);
  const Tensor y128 = randint(0, 10, {128}, DType::i64, &g);
  // Training steps change weights: they run on fresh models of the same widths.
  FashionCNN tb(before.widths(), g), ta(after.widths(), g);
  tb.train(), ta.train();
  optim::SGD sb(tb.parameters(), 0.01, 0.9), sa(ta.parameters(), 0.01, 0.9);
  util::AlternatingTimes inf;
  {
    NoGrad ng;
    nn::EvalScope eb(before), ea(after);
    inf = util::alternating([&] { before(x64); }, [&] { after(x64); }, rounds, 0.25);
  }
  auto step = [&](FashionCNN* m, optim::SGD* opt) {
    return [m, opt, &x128, &y128] {
      opt->zero_grad();
      cross_entropy((*m)(x128), y128).backward();
      opt->step();
    };
  };
  const util::AlternatingTimes tr = util::alternating(step(&tb, &sb), step(&ta, &sa), rounds, 0.5);
  r.before.infer_b64_ms = inf.a * 1e3, r.after.infer_b64_ms = inf.b * 1e3, r.infer_speedup = inf.ratio;
  r.before.train_b128_ms = tr.a * 1e3, r.after.train_b128_ms = tr.b * 1e3, r.train_speedup = tr.ratio;
}

}  // namespace

nlohmann::json to_json(const PruneCnnStats& s) {
  return {{"widths", s.widths.to_json()}, {"params", s.params},         {"flops", s.flops},
          {"file_bytes", s.file_bytes},   {"accuracy", s.accuracy},     {"infer_b64_ms", s.infer_b64_ms},
          {"train_b128_ms", s.train_b128_ms}};
}

PruneCnnResult prune_cnn(const PruneCnnOptions& o) {
  QS_CHECK(!o.out.empty(), "prune: an output checkpoint (--out) is required");
  QS_CHECK(o.finetune_epochs >= 0, "prune: --finetune-epochs must be 0 or more, got {}", o.finetune_epochs);
  QS_CHECK(o.iterations >= 1 && o.iterations <= 100, "prune: --iterations must be between 1 and 100, got {}",
           o.iterations);
  QS_CHECK(o.iterations == 1 || o.per_layer.empty(),
           "prune: --iterations with --per-layer is not supported (give one ratio, or prune once)");
  const auto t0 = std::chrono::steady_clock::now();
  prune::PruneOptions po;
  po.criterion = prune::parse_criterion(o.method);
  po.ratio = o.ratio;
  po.per_layer = o.per_layer;
  po.global = o.global;
  po.round_to = o.round_to;

  std::string method;
  auto model = load_fashion_cnn(o.checkpoint, &method);
  QS_CHECK(method == "fp32", "prune: {} is quantised ({}); prune the float checkpoint, then quantise the result",
           o.checkpoint, method);
  data::FashionMNIST test_set(false, o.data_root, true);
  const Tensor test_x = first_rows(test_set.images, o.limit_test), test_y = first_rows(test_set.labels, o.limit_test);

  PruneCnnResult r;
  const prune::Dependencies dep0 = prune::analyse(*model, zeros({2, 1, 28, 28}));
  r.groups = dep0.to_text();
  r.before.accuracy = evaluate_classifier(*model, test_x, test_y).first;
  // The channels each group keeps in the end (one-shot: floor(ratio * size) go); iteration k
  // of K keeps size * (kept / size)^(k / K) of them, rounded, so the last lands exactly there.
  std::map<std::string, std::pair<int64_t, int64_t>> sizes;  // group -> (size, kept in the end)
  if (o.iterations > 1 && !o.global)
    for (const prune::Group& g : dep0.groups)
      if (g.prunable) sizes[g.name] = {g.size, g.size - int64_t(std::floor(o.ratio * double(g.size) + 1e-9))};

  std::filesystem::path out(o.out);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  nlohmann::json per_layer = nlohmann::json::object();
  for (const auto& [k, v] : o.per_layer) per_layer[k] = v;
  nlohmann::json config = {{"model", "FashionCNN"},
                           {"pruned",
                            {{"source", o.checkpoint},
                             {"method", o.method},
                             {"ratio", o.ratio},
                             {"per_layer", per_layer},
                             {"global", o.global},
                             {"round_to", o.round_to},
                             {"iterations", o.iterations},
                             {"finetune_epochs", o.finetune_epochs},
                             {"finetune_lr", o.finetune_lr},
                             {"accuracy_before", r.before.accuracy}}}};

  std::shared_ptr<FashionCNN> pruned = model;
  const int64_t total = [&] {
    int64_t n = 0;
    for (const prune::Group& g : dep0.groups) n += g.prunable ? g.size : 0;
    return n;
  }();
  for (int k = 1; k <= o.iterations; ++k) {
    // The first cut is on the loaded model, already analysed.
    const prune::Dependencies dep = k == 1 ? dep0 : prune::analyse(*pruned, zeros({2, 1, 28, 28}));
    prune::PruneOptions step = po;
    if (o.iterations > 1) {
      if (o.global) {
        // Remove the share of what is left that brings the total to total * (1 - ratio)^(k/K).
        int64_t now = 0;
        for (const prune::Group& g : dep.groups) now += g.prunable ? g.size : 0;
        const auto target = int64_t(std::llround(double(total) * std::pow(1.0 - o.ratio, double(k) / o.iterations)));
        const int64_t kept_end = total - int64_t(std::floor(o.ratio * double(total) + 1e-9));
        const int64_t keep = k == o.iterations ? kept_end : std::max(target, kept_end);
        step.ratio = now > 0 ? double(now - keep) / double(now) : 0;
      } else {
        step.ratio = 0;
        for (const prune::Group& g : dep.groups) {
          auto it = sizes.find(g.name);
          if (it == sizes.end()) continue;
          const auto [size0, kept_end] = it->second;
          const double frac = double(kept_end) / double(size0);
          const int64_t keep =
              k == o.iterations ? kept_end
                                : std::max(kept_end, int64_t(std::llround(double(size0) * std::pow(frac, double(k) / o.iterations))));
          if (keep < g.size) step.per_layer[g.name] = double(g.size - keep) / double(g.size);
        }
      }
    }
    const prune::Plan plan = prune::plan_channels(dep, *pruned, step);
    r.channels_removed += plan.channels_removed();
    const nn::StateDict small = prune::shrink(dep, plan, pruned->state_dict());
    Generator g(o.seed + uint64_t(k));
    auto next = std::make_shared<FashionCNN>(FashionCNN::widths_of(small), g);
    next->load_state_dict(small);
    next->eval();
    pruned = next;
    PruneCnnStep st;
    st.widths = pruned->widths();
    st.params = pruned->num_parameters();
    st.flops = flops_per_image(*pruned);
    st.pruned_accuracy = st.accuracy = evaluate_classifier(*pruned, test_x, test_y).first;
    config["widths"] = pruned->widths().to_json();
    io::save_checkpoint(o.out, io::Checkpoint{pruned->state_dict(), {}, 0, {}, config, nullptr});
    if (o.finetune_epochs > 0) {
      TrainCnnOptions t;
      t.init = o.out;
      t.epochs = o.finetune_epochs;
      t.lr = o.finetune_lr;
      t.batch = o.batch;
      t.seed = o.seed + uint64_t(k - 1);
      t.data_root = o.data_root;
      t.limit_train = o.limit_train;
      t.limit_test = o.limit_test;
      t.quiet = o.quiet;
      TrainCnnResult tr = train_fashion_cnn(t);
      pruned = tr.model;
      st.accuracy = tr.test_accuracy;
      st.finetune_steps = tr.steps;
      r.finetune_steps += tr.steps;
    }
    if (k == 1) r.pruned_accuracy = st.pruned_accuracy;
    r.steps.push_back(st);
  }
  r.after.accuracy = r.steps.back().accuracy;
  config["pruned"]["channels_removed"] = r.channels_removed;
  config["pruned"]["accuracy_pruned"] = r.pruned_accuracy;
  config["pruned"]["accuracy_after"] = r.after.accuracy;
  config["pruned"]["finetune_steps"] = r.finetune_steps;
  io::save_checkpoint(o.out, io::Checkpoint{pruned->state_dict(), {}, 0, {}, config, nullptr});

  describe(r.before, *model);
  describe(r.after, *pruned, &r.steps.back());
  r.before.file_bytes = model_file_bytes(*model, o.out);
  r.after.file_bytes = int64_t(std::filesystem::file_size(o.out));
  measure_latency(r, *model, *pruned, o.latency_rounds);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qs::apps
