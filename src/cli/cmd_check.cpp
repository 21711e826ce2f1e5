// qiusuo check [--mode test|grad|all] [--op NAME] [--verbose] [--seed N]: the op-table harness.
#include <iostream>

#include "cli/cli.h"
#include "ops/harness.h"

namespace qs::cli {

int cmd_check(Args a) {
  std::string mode = a.str("mode", "test");
  std::string only = a.str("op", "");
  bool verbose = a.flag("verbose");
  uint64_t seed = uint64_t(a.integer("seed", 1));
  a.finish();
  if (mode != "test" && mode != "grad" && mode != "all") throw UsageError("--mode must be test, grad or all");
  if (!only.empty() && !ops::find_op(only)) throw UsageError("no op named '" + only + "' in the op table");
  int passed = 0, failed = 0, skipped = 0;
  for (const auto& def : ops::op_table()) {
    if (!only.empty() && only != def.name) continue;
    std::vector<ops::CheckResult> rs;
    if (mode != "grad") rs = ops::check_kernels(def, seed);
    if (mode != "test") {
      auto g = ops::check_gradients(def, seed);
      rs.insert(rs.end(), g.begin(), g.end());
    }
    for (auto& r : rs) {
      if (r.skipped) ++skipped;
      else if (r.ok) ++passed;
      else ++failed;
      if (!r.ok || verbose)
        std::cout << (r.skipped ? "SKIP " : r.ok ? "ok   " : "FAIL ") << r.op << " [" << r.kernel << ", " << r.dtype
                  << ", " << r.sample << "] " << r.message << "\n";
    }
  }
  std::cout << passed << " passed, " << failed << " failed, " << skipped << " skipped\n";
  return failed ? kExitCheckFailed : kExitOk;
}

}  // namespace qs::cli
