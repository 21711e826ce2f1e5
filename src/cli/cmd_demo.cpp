// qiusuo demo: the README's main job on built-in data: train the Fashion-MNIST CNN and
// report its test accuracy, then train a small language model on the King James Bible
// and print its test perplexity and a sample.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/defect/synth.h"
#include "qiusuo/defect/train.h"
#include "qiusuo/medical/ct_train.h"
#include "qiusuo/medical/synth.h"

namespace qs::cli {

namespace {

void demo_cnn(const apps::TrainCnnOptions& o) {
  std::cout << "qiusuo demo: training the Fashion-MNIST CNN (" << o.epochs << " epochs, batch " << o.batch
            << ", SGD momentum 0.9, cosine schedule)\n"
            << "data: /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)\n"
            << "checkpoints: " << o.out_dir << "/\n";
  apps::TrainCnnResult r = apps::train_fashion_cnn(o);
  std::cout << fmt::format("test accuracy: {:.2f}% on 10000 test images (test loss {:.4f})\n", 100 * r.test_accuracy,
                           r.test_loss)
            << fmt::format("training: {} steps in {:.0f} s, {:.0f} images/s\n", r.steps, r.seconds, r.images_per_s)
            << "checkpoint: " << r.checkpoint << "\n";
  nlohmann::json summary = {{"test_accuracy", r.test_accuracy}, {"images_per_s", r.images_per_s}, {"steps", r.steps}};
  std::cout << summary.dump() << std::endl;
}

void demo_lm(const apps::TrainCnnOptions& cnn, int64_t steps) {
  apps::TrainLmOptions o;
  o.model.block = "gpt";
  o.model.d_model = 128, o.model.n_layers = 4, o.model.n_heads = 4;
  o.model.pos.kind = nn::PositionEncoding::rope;
  o.seq = 256, o.batch = 8, o.steps = steps, o.lr = 2e-3;
  o.eval_every = 0, o.eval_windows = 32;
  o.threads = cnn.threads, o.bf16 = cnn.bf16;
  o.out_dir = cnn.out_dir + "/lm";
  std::cout << "\nqiusuo demo: training a byte-level GPT (4 layers, d_model 128, RoPE) on the King James Bible\n"
            << "(Debian package bible-kjv), " << o.steps << " steps of " << o.batch << " x " << o.seq << " tokens\n";
  apps::TrainLmResult r = apps::train_lm(o);
  apps::LoadedLm lm = apps::load_lm(r.checkpoint);
  text::TextCorpus corpus = apps::open_corpus("");
  text::TokenStream test(corpus, text::Split::test, *lm.tokenizer);
  apps::EvalLmResult e = apps::evaluate_lm(*lm.model, test, o.seq, 8, 128);
  apps::GenerateOptions g;
  g.max_tokens = 200, g.temperature = 0.7, g.seed = 1;
  const std::string prompt = "Ge1:1 In the beginning";
  std::cout << fmt::format("test perplexity: {:.3f} per byte ({:.3f} bits/byte) on {} tokens of held-out verses\n",
                           e.perplexity, e.bits_per_byte, e.tokens)
            << fmt::format("training: {} steps in {:.0f} s, {:.0f} tokens/s\n", r.steps, r.seconds, r.tokens_per_s)
            << "sample (temperature 0.7):\n" << prompt << apps::generate_text(lm, prompt, g) << "\n"
            << "checkpoint: " << r.checkpoint << "  (try: qiusuo generate " << r.checkpoint
            << " --prompt \"And God said\")\n";
  nlohmann::json summary = {{"lm_test_perplexity", e.perplexity}, {"lm_bits_per_byte", e.bits_per_byte},
                            {"lm_tokens_per_s", r.tokens_per_s}, {"lm_steps", r.steps}};
  std::cout << summary.dump() << std::endl;
}

// The medical case: synthetic chest CT written as LIDC-IDRI is distributed, the 3D CNN with
// multi-scale fusion, attention gates and focal loss, the test AUC with its interval, and
// the AUC on an independent synthetic set.
int demo_ct(Args& a) {
  const std::string out = a.str("out", "runs/demo") + "/ct";
  const int cases = int(a.integer("cases", 80, 20, 100000));
  const int epochs = int(a.integer("epochs", 8, 1, 10000));
  if (const int t = a.threads(0); t > 0) set_num_threads(t);
  const bool bf16 = a.flag("bf16");
  a.finish();
  std::cout << "qiusuo demo ct: " << cases << " synthetic chest CT cases (DICOM series + LIDC-style reader XML; "
            << "LIDC-IDRI itself cannot be downloaded here) in " << out << "/data\n";
  const medical::SynthSummary s = medical::write_synth_dataset(out + "/data", cases);
  std::cout << fmt::format("{} nodules: {} malignant, {} benign, {} excluded (mean reader rating exactly 3)\n",
                           s.nodules, s.malignant, s.benign, s.excluded);
  medical::SynthOptions other;
  other.seed = 1;
  medical::write_synth_dataset(out + "/data_eval", 30, other);
  medical::TrainCtOptions o;
  o.data = out + "/data", o.out = out + "/run", o.epochs = epochs, o.bf16 = bf16;
  std::cout << "training the 3D CNN with multi-scale fusion and attention gates, focal loss, " << epochs
            << " epochs, patients split 60/20/20\n";
  const medical::TrainCtResult r = medical::train_ct(o);
  const medical::EvalCtResult e = medical::eval_ct(r.checkpoint, out + "/data_eval");
  std::cout << fmt::format("test ROC AUC {:.3f} (95% bootstrap interval {:.3f} to {:.3f}) on {} nodules; {:.1f} "
                           "volumes/s; {:.0f} s\n",
                           r.test_auc.auc, r.test_auc.lo, r.test_auc.hi, r.test, r.volumes_per_s, r.seconds)
            << fmt::format("independent synthetic set: ROC AUC {:.3f} ({:.3f} to {:.3f}) on {} nodules\n", e.auc.auc,
                           e.auc.lo, e.auc.hi, e.nodules)
            << "figures: " << out << "/run/roc.svg, " << out << "/run/figures/ (gate and Grad-CAM maps)\n"
            << "(synthetic nodules: not comparable with the handbook's AUC 0.962 on LIDC-IDRI; see docs/ct.md)\n";
  std::cout << nlohmann::json{{"ct_test_auc", r.test_auc.auc}, {"ct_test_auc_lo", r.test_auc.lo},
                              {"ct_test_auc_hi", r.test_auc.hi}, {"ct_eval_auc", e.auc.auc},
                              {"ct_volumes_per_s", r.volumes_per_s}}
                   .dump()
            << std::endl;
  return kExitOk;
}

// The industrial case: synthetic steel-strip inspection sequences (images + Pascal VOC), the
// per-frame ResNet-18 detector trained on them, its test mAP and drawn detections.
int demo_defect(Args& a) {
  const std::string out = a.str("out", "runs/demo") + "/defect";
  const int sequences = int(a.integer("sequences", 48, 4, 100000));
  const int epochs = int(a.integer("epochs", 8, 1, 10000));
  const std::string model = a.str("model", "cnn");
  if (const int t = a.threads(0); t > 0) set_num_threads(t);
  a.finish();
  std::cout << "qiusuo demo defect: synthetic inspection sequences of a moving steel strip with NEU-DET's six defect "
               "classes (images + Pascal VOC; NEU-DET itself cannot be downloaded here) in "
            << out << "/data\n";
  int split = 0;
  for (auto [name, n] : {std::pair{"train", sequences}, {"val", std::max(1, sequences / 4)}, {"test", std::max(1, sequences / 4)}}) {
    defect::SynthOptions so;
    so.sequences = n;
    so.seed = uint64_t(++split);
    const defect::SynthSummary s = defect::write_synthetic_sequences(out + "/data/" + name, so);
    std::cout << fmt::format("{}: {} sequences of {} frames, {} boxes\n", name, s.sequences, so.frames, s.boxes);
  }
  defect::TrainDefectOptions o;
  o.data = out + "/data", o.out = out + "/run", o.epochs = epochs, o.model.model = model, o.quiet = true;
  std::cout << "training the " << model << " detector (ResNet-18, feature pyramid, FCOS-style head), " << epochs
            << " epochs\n";
  const defect::TrainDefectResult r = defect::train_defect(o);
  std::cout << fmt::format("test mAP@0.5 {:.3f} (VOC all-point), COCO mAP@[.5:.95] {:.3f} on {} frames; {:.1f} frames/s; "
                           "{:.0f} s\n",
                           r.test.map50, r.test.coco_map, r.test.frames, r.frames_per_s, r.seconds)
            << "figures: " << out << "/run/pr.svg, " << out << "/run/figures/ (detections drawn)\n"
            << "(drawn defects, not NEU-DET's photographs: not comparable with the handbook's figures; see docs/defect.md)\n";
  std::cout << nlohmann::json{{"defect_test_map50", r.test.map50}, {"defect_test_coco_map", r.test.coco_map},
                              {"defect_frames_per_s", r.frames_per_s}}
                   .dump()
            << std::endl;
  return kExitOk;
}

}  // namespace

int cmd_demo(Args a) {
  if (!a.positionals().empty() && a.positionals()[0] == "ct") return demo_ct(a);
  if (!a.positionals().empty() && a.positionals()[0] == "defect") return demo_defect(a);
  if (!a.positionals().empty())
    throw UsageError("qiusuo demo: no demo named '" + a.positionals()[0] + "' (try: ct, defect)");
  apps::TrainCnnOptions o;
  o.epochs = int(a.integer("epochs", o.epochs));
  o.out_dir = a.str("out", "runs/demo");
  o.threads = a.threads(o.threads);
  o.bf16 = a.flag("bf16");
  const int64_t lm_steps = a.integer("lm-steps", 600);
  const bool skip_cnn = a.flag("skip-cnn");
  a.finish();
  if (!skip_cnn) demo_cnn(o);
  demo_lm(o, lm_steps);
  return kExitOk;
}

}  // namespace qs::cli
