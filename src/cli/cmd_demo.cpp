// qiusuo demo: the README's main job on built-in data. At this stage: train the
// Fashion-MNIST CNN for a few epochs and report its test accuracy.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/apps/cnn.h"

namespace qs::cli {

int cmd_demo(Args a) {
  apps::TrainCnnOptions o;
  o.epochs = int(a.integer("epochs", 3));
  o.out_dir = a.str("out", "runs/demo");
  o.threads = int(a.integer("threads", 0));
  o.bf16 = a.flag("bf16");
  a.finish();
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
  return kExitOk;
}

}  // namespace qs::cli
