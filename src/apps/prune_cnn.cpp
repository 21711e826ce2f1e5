// `qiusuo prune` on the Fashion-MNIST CNN: analyse the traced forward, plan by a
// criterion, shrink into a narrower FashionCNN, optionally fine-tune, and measure both
// models (include/qiusuo/apps/prune.h).
#include "qiusuo/apps/prune.h"

#include <chrono>
#include <filesystem>

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

void describe(PruneCnnStats& s, FashionCNN& m) {
  s.widths = m.widths();
  s.params = m.num_parameters();
  s.flops = graph::trace(m, zeros({1, 1, 28, 28})).flops();
}

// Inference on 64 images and one SGD step on 128, alternating between the two models round
// by round (the machine's state changes over seconds; each round compares like with like).
void measure_latency(PruneCnnResult& r, FashionCNN& before, FashionCNN& after, int rounds) {
  if (rounds <= 0) return;
  Generator g(1);
  const Tensor x64 = randn({64, 1, 28, 28}, DType::f32, &g), x128 = randn({128, 1, 28, 28}, DType::f32, &g);
  const Tensor y128 = randint(0, 10, {128}, DType::i64, &g);
  // Training steps change weights: they run on fresh models of the same widths.
  FashionCNN tb(before.widths(), g), ta(after.widths(), g);
  optim::SGD sb(tb.parameters(), 0.01, 0.9), sa(ta.parameters(), 0.01, 0.9);
  auto infer = [&](FashionCNN& m) {
    NoGrad ng;
    nn::EvalScope e(m);
    return util::seconds_per_call_for([&] { m(x64); }, 0.25);
  };
  auto step = [&](FashionCNN& m, optim::SGD& opt) {
    m.train();
    return util::seconds_per_call_for(
        [&] {
          opt.zero_grad();
          cross_entropy(m(x128), y128).backward();
          opt.step();
        },
        0.5);
  };
  std::vector<double> ib, ia, tbs, tas, iratio, tratio;
  for (int k = 0; k < rounds; ++k) {
    ib.push_back(infer(before)), ia.push_back(infer(after));
    tbs.push_back(step(tb, sb)), tas.push_back(step(ta, sa));
    iratio.push_back(ib.back() / ia.back()), tratio.push_back(tbs.back() / tas.back());
  }
  r.before.infer_b64_ms = util::median(ib) * 1e3, r.after.infer_b64_ms = util::median(ia) * 1e3;
  r.before.train_b128_ms = util::median(tbs) * 1e3, r.after.train_b128_ms = util::median(tas) * 1e3;
  r.infer_speedup = util::median(iratio), r.train_speedup = util::median(tratio);
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
  const auto t0 = std::chrono::steady_clock::now();
  prune::PruneOptions po;
  po.criterion = prune::parse_criterion(o.method);
  po.ratio = o.ratio;
  po.per_layer = o.per_layer;
  po.global = o.global;

  std::string method;
  auto model = load_fashion_cnn(o.checkpoint, &method);
  QS_CHECK(method == "fp32", "prune: {} is quantised ({}); prune the float checkpoint, then quantise the result",
           o.checkpoint, method);
  data::FashionMNIST test_set(false, o.data_root, true);
  const Tensor test_x = first_rows(test_set.images, o.limit_test), test_y = first_rows(test_set.labels, o.limit_test);

  PruneCnnResult r;
  const prune::Dependencies dep = prune::analyse(*model, zeros({2, 1, 28, 28}));
  r.groups = dep.to_text();
  const prune::Plan plan = prune::plan_channels(dep, *model, po);
  r.channels_removed = plan.channels_removed();
  const nn::StateDict small = prune::shrink(dep, plan, model->state_dict());
  Generator g(o.seed);
  auto pruned = std::make_shared<FashionCNN>(FashionCNN::widths_of(small), g);
  pruned->load_state_dict(small);
  pruned->eval();

  r.before.accuracy = evaluate_classifier(*model, test_x, test_y).first;
  r.pruned_accuracy = r.after.accuracy = evaluate_classifier(*pruned, test_x, test_y).first;

  std::filesystem::path out(o.out);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  nlohmann::json per_layer = nlohmann::json::object();
  for (const auto& [k, v] : o.per_layer) per_layer[k] = v;
  nlohmann::json config = {{"model", "FashionCNN"},
                           {"widths", pruned->widths().to_json()},
                           {"pruned",
                            {{"source", o.checkpoint},
                             {"method", o.method},
                             {"ratio", o.ratio},
                             {"per_layer", per_layer},
                             {"global", o.global},
                             {"channels_removed", r.channels_removed},
                             {"finetune_epochs", o.finetune_epochs},
                             {"accuracy_before", r.before.accuracy},
                             {"accuracy_pruned", r.pruned_accuracy}}}};
  io::save_checkpoint(o.out, io::Checkpoint{pruned->state_dict(), {}, 0, {}, config, nullptr});

  if (o.finetune_epochs > 0) {
    TrainCnnOptions t;
    t.init = o.out;
    t.epochs = o.finetune_epochs;
    t.lr = o.finetune_lr;
    t.batch = o.batch;
    t.seed = o.seed;
    t.data_root = o.data_root;
    t.limit_train = o.limit_train;
    t.limit_test = o.limit_test;
    t.quiet = o.quiet;
    TrainCnnResult tr = train_fashion_cnn(t);
    pruned = tr.model;
    r.after.accuracy = tr.test_accuracy;
    r.finetune_steps = tr.steps;
    config["pruned"]["accuracy_finetuned"] = r.after.accuracy;
    config["pruned"]["finetune_lr"] = o.finetune_lr;
    config["pruned"]["finetune_steps"] = tr.steps;
    io::save_checkpoint(o.out, io::Checkpoint{pruned->state_dict(), {}, 0, {}, config, nullptr});
  }

  describe(r.before, *model);
  describe(r.after, *pruned);
  r.before.file_bytes = model_file_bytes(*model, o.out);
  r.after.file_bytes = int64_t(std::filesystem::file_size(o.out));
  measure_latency(r, *model, *pruned, o.latency_rounds);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qs::apps
