// qiusuo train cnn [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N] [--bf16]
//                  [--resume CKPT] [--init CKPT] [--save-every N] [--limit-train N] --out DIR
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/apps/cnn.h"

namespace qs::cli {

// The defaults printed are TrainCnnOptions' (and TrainLmOptions', TrainMtOptions'), the
// same ones the flags fall back to.
std::string train_usage() {
  const apps::TrainCnnOptions o;
  return fmt::format(
             "usage: qiusuo train cnn --out DIR [options]\n"
             "       qiusuo train lm --out DIR [options]\n"
             "       qiusuo train mt --out DIR [options]\n"
             "       qiusuo train ct --data DIR --out DIR [options]\n"
             "       qiusuo train defect --data DIR --out DIR [options]\n\n"
             "cnn: trains the Fashion-MNIST CNN (shared/peers/torch_cnn.py) and prints the test accuracy and a JSON\n"
             "summary line. Checkpoints (safetensors) go to DIR/epoch-<e>.safetensors and DIR/last.safetensors.\n\n"
             "  --epochs N        passes over the training set ({})\n"
             "  --batch N         batch size ({})\n"
             "  --lr X            peak learning rate of SGD with momentum {} (Nesterov's unless --nesterov 0), cosine\n"
             "                    schedule ({})\n"
             "  --weight-decay X  L2 penalty ({})\n"
             "  --nesterov 0|1    Nesterov momentum ({:d})\n"
             "  --label-smoothing X  of the training loss ({})\n"
             "  --bn-l1 X         network slimming: X * sum |gamma| of the batch norms added to the loss (0); then\n"
             "                    'qiusuo prune --method bn-scale --global' finds the channels it drove to zero\n"
             "  --hflip 0|1       mirror each training image left-right with probability 1/2 ({:d})\n"
             "  --seed N          initialisation and shuffling seed ({})\n"
             "  --sync-bn         under mpirun: batch norm statistics over every rank's samples (docs/distributed.md)\n"
             "  --threads N       OpenMP threads (all cores)\n"
             "  --bf16            bf16 autocast for convolutions and linear layers\n"
             "  --resume CKPT     continue exactly from a checkpoint of this command (same settings)\n"
             "  --init CKPT       start from a float FashionCNN checkpoint (its weights and widths: fine-tune a\n"
             "                    pruned model) with a fresh optimiser and schedule\n"
             "  --save-every N    also checkpoint every N steps\n"
             "  --limit-train N   train on the first N images only\n"
             "  --data DIR        Fashion-MNIST folder ({})\n\n",
             o.epochs, o.batch, o.momentum, o.lr, o.weight_decay, o.nesterov, o.label_smoothing, o.hflip, o.seed,
             o.data_root) +
         train_lm_usage() + "\n" + train_mt_usage() +
         "\nct: the CT nodule classifier (docs/ct.md) on a LIDC-IDRI style tree (qiusuo ct synth writes one): a 32 mm\n"
         "cube around each labelled nodule, resampled to --patch^3 voxels, patients split 60/20/20, the 3D CNN trained\n"
         "with AdamW and augmentation, the epoch with the best validation AUC kept; prints the test ROC AUC with its\n"
         "95% bootstrap interval and operating points; writes DIR/last.safetensors, report.json, roc.svg and\n"
         "figures/ (gate and Grad-CAM maps).\n\n"
         "  --model base|fusion|fusion+gates  (fusion+gates)   --width N  channels of the first stage (8)\n"
         "  --loss focal|ce  --gamma X (2)  --alpha A (none: focal weight of the malignant class)\n"
         "  --epochs N (20)  --batch N (16)  --lr X (1e-3)  --weight-decay X (1e-4)  --no-augment  --bf16  --sync-bn\n"
         "  --patch-mm X (32)  --patch N (32)  --seed N  --split-seed N  --bootstrap N (1000)  --threads N  --quiet\n"
         "\ndefect: a steel-surface defect detector (docs/defect.md) on inspection sequences (qiusuo defect synth writes\n"
         "DIR/train, val, test): a ResNet, a feature pyramid at stride 8 and an FCOS-style head, each frame alone (cnn) or\n"
         "with a Transformer over the last --frames frames (spatiotemporal); AdamW, the epoch with the best validation\n"
         "mAP@0.5 kept; prints the test mAP (VOC all-point and 11-point at IoU 0.5, COCO at .5:.95) and AP per class;\n"
         "writes DIR/last.safetensors, report.json, pr.svg and figures/ (detections drawn on test frames).\n\n"
         "  --model cnn|spatiotemporal (cnn)  --frames T (4)  --temporal-layers N (1)  --heads N (4)\n"
         "  --travel PX (0: pixels the strip moves up per frame; the spatiotemporal model aligns earlier frames by it)\n"
         "  --depth 18|34|50 (18)  --width N (32: the ResNet's first stage)  --channels N (64)  --window N (4: frames\n"
         "  t >= N - 1 are evaluated, the same for both models)  --epochs N (12)  --batch N (8)  --lr X (1e-3)\n"
         "  --weight-decay X (1e-4)  --no-hflip  --seed N  --threads N  --quiet\n"
         "\nUnder mpirun -np N, every trainer trains data-parallel: --batch is per rank, rank 0 logs and writes; ct, defect\n"
         "and cnn take --sync-bn (docs/distributed.md).\n";
}

int cmd_train(Args a) {
  if (a.positionals().empty()) throw UsageError("qiusuo train: which model? (available: cnn, lm, mt, ct, defect); see 'qiusuo train --help'");
  std::string what = a.positionals()[0];
  if (what == "lm") return cmd_train_lm(a);
  if (what == "mt") return cmd_train_mt(a);
  if (what == "ct") return cmd_train_ct(a);
  if (what == "defect") return cmd_train_defect(a);
  if (what != "cnn") throw UsageError("qiusuo train: unknown model '" + what + "' (available: cnn, lm, mt, ct, defect)");
  apps::TrainCnnOptions o;
  o.epochs = int(a.integer("epochs", o.epochs));
  o.batch = a.integer("batch", o.batch);
  o.lr = a.number("lr", o.lr);
  o.weight_decay = a.number("weight-decay", o.weight_decay);
  o.nesterov = a.integer("nesterov", o.nesterov) != 0;
  o.label_smoothing = a.number("label-smoothing", o.label_smoothing);
  o.bn_l1 = a.number("bn-l1", o.bn_l1);
  o.hflip = a.integer("hflip", o.hflip) != 0;
  o.sync_bn = a.flag("sync-bn");
  o.seed = uint64_t(a.integer("seed", int64_t(o.seed)));
  o.threads = a.threads(o.threads);
  o.bf16 = a.flag("bf16");
  o.resume = a.str("resume", o.resume);
  o.init = a.str("init", o.init);
  o.save_every = a.integer("save-every", o.save_every);
  o.stop_after = a.integer("stop-after", o.stop_after);
  o.limit_train = a.integer("limit-train", o.limit_train);
  o.limit_test = a.integer("limit-test", o.limit_test);
  o.data_root = a.str("data", o.data_root);
  o.out_dir = a.required("out");
  a.finish();
  apps::TrainCnnResult r = apps::train_fashion_cnn(o);
  if (o.stop_after == 0 || r.steps < o.stop_after)
    std::cout << fmt::format("test accuracy: {:.2f}%  (test loss {:.4f}, {:.0f} images/s)\n", 100 * r.test_accuracy,
                             r.test_loss, r.images_per_s);
  nlohmann::json summary = {{"test_accuracy", r.test_accuracy}, {"test_loss", r.test_loss},
                            {"final_train_loss", r.final_train_loss}, {"images_per_s", r.images_per_s},
                            {"steps", r.steps}, {"seconds", r.seconds}, {"checkpoint", r.checkpoint},
                            {"bf16", o.bf16}};
  std::cout << summary.dump() << std::endl;
  return kExitOk;
}

}  // namespace qs::cli
