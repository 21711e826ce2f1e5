// What the experiments record of their own runs (include/qiusuo/apps/experiments.h).
#include <cmath>

#include <fmt/format.h>

#include "apps/experiment_util.h"
#include "backend/dnnl_util.h"
#include "qiusuo/apps/experiments.h"
#include "qiusuo/tensor.h"

namespace qs::apps {

std::string machine_summary() {
  const int n = get_num_threads();
  return fmt::format("oneDNN ISA {}, {} thread{}", backend::cpu_isa_name(), n, n == 1 ? "" : "s");
}

void stamp_run(nlohmann::json& results, std::chrono::steady_clock::time_point started, double earlier_seconds) {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() + earlier_seconds;
  results["seconds"] = finite_or_null(s);
  results["machine"] = machine_summary();
}

}  // namespace qs::apps
