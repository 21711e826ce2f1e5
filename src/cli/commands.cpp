// The table of verbs. Add a verb: a cmd_<verb>.cpp file and one row here.
#include "cli/cli.h"

namespace qs::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> c = {
      {"bench", "run benchmark workloads (JSON lines, same names as the PyTorch peers)", cmd_bench},
      {"check", "run the op-table harness: reference vs optimised, gradcheck", cmd_check},
      {"demo", "the main job on built-in data: train the Fashion-MNIST CNN, print test accuracy", cmd_demo},
      {"info", "show the build, the CPU features oneDNN uses, and the op table", cmd_info},
      {"train", "train a model: cnn (Fashion-MNIST)", cmd_train},
  };
  return c;
}

}  // namespace qs::cli
