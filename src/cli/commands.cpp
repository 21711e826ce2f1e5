// The table of verbs. Add a verb: a cmd_<verb>.cpp file and one row here.
#include "cli/cli.h"

namespace qs::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> c = {
      {"bench", "run benchmark workloads (JSON lines, same names as the PyTorch peers)",
       "usage: qiusuo bench <workload|all>... [--json] [--bf16] [--threads N] [--iters N] | --list\n"
       "  --json       one JSON object per line (fields as in shared/peers/)\n"
       "  --bf16       run the workload under bf16 autocast (workload name gets _bf16)\n"
       "  --threads N  OpenMP threads (default: all cores)\n"
       "  --iters N    timed iterations (default: the workload's)\n",
       cmd_bench},
      {"check", "run the op-table harness: reference vs optimised, gradcheck",
       "usage: qiusuo check [--mode test|grad|all] [--op NAME] [--verbose] [--seed N]\n"
       "  test: every optimised kernel against its reference (odd sizes, strided views, 1 and 2 threads,\n"
       "        guard bytes); grad: finite differences against autograd in f64. Exit code 2 on a failure.\n",
       cmd_check},
      {"demo", "the main job on built-in data: train the Fashion-MNIST CNN, print test accuracy",
       "usage: qiusuo demo [--epochs 3] [--out runs/demo] [--threads N] [--bf16]\n", cmd_demo},
      {"info", "show the build, the CPU features oneDNN uses, and the op table",
       "usage: qiusuo info [--ops]\n", cmd_info},
      {"train", "train a model: cnn (Fashion-MNIST)",
       "usage: qiusuo train cnn --out DIR [options]\n\n"
       "Trains the Fashion-MNIST CNN (shared/peers/torch_cnn.py) and prints the test accuracy and a JSON\n"
       "summary line. Checkpoints (safetensors) go to DIR/epoch-<e>.safetensors and DIR/last.safetensors.\n\n"
       "  --epochs N        passes over the training set (3)\n"
       "  --batch N         batch size (128)\n"
       "  --lr X            peak learning rate of SGD with momentum 0.9, cosine schedule (0.1)\n"
       "  --weight-decay X  L2 penalty (5e-4)\n"
       "  --seed N          initialisation and shuffling seed (0)\n"
       "  --threads N       OpenMP threads (all cores)\n"
       "  --bf16            bf16 autocast for convolutions and linear layers\n"
       "  --resume CKPT     continue exactly from a checkpoint of this command (same settings)\n"
       "  --save-every N    also checkpoint every N steps\n"
       "  --limit-train N   train on the first N images only\n"
       "  --data DIR        Fashion-MNIST folder (/usr/share/datasets/fashion-mnist)\n",
       cmd_train},
      {"tokenizer", "train a byte-level BPE tokenizer (tokenizer.json), or encode text with one",
       "usage: qiusuo tokenizer train --out FILE [--corpus FILE|DIR] [--vocab 8192] [--min-frequency 2]\n"
       "       qiusuo tokenizer encode --tokenizer FILE [TEXT...]   (TEXT or stdin; prints the ids)\n\n"
       "train learns GPT-2 style byte-level BPE merges on the corpus's train split (90%) and saves them in\n"
       "the Hugging Face tokenizer.json layout, then reports bytes per token on the validation split.\n"
       "  --corpus PATH      a UTF-8 file, or a folder of them (default: the King James Bible, from the\n"
       "                     Debian packages bible-kjv and bible-kjv-text, cached in $QIUSUO_CACHE)\n"
       "  --vocab N          vocabulary size, 256 byte tokens included (8192)\n"
       "  --min-frequency N  stop when the most frequent pair occurs fewer times (2)\n",
       cmd_tokenizer},
  };
  return c;
}

}  // namespace qs::cli
