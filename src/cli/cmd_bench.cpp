// qiusuo bench <workload|all> [--json] [--bf16] [--threads N] [--iters N] [--weights int8|int4] [--kv-cache f16|f32]
//              [--model CKPT] [--profile]
// --model: the inference workloads (cnn_infer_*, lm_fwd_*, lm_gen_*) run a trained float or quantised
// checkpoint instead of their random model; with `all` the others are skipped, named ones refused.
// --profile: the op table of each workload's timed calls (qiusuo/profiler.h) on stderr.
#include <iostream>

#include "backend/dnnl_util.h"
#include "bench/bench.h"
#include "cli/cli.h"
#include "qiusuo/autocast.h"
#include "qiusuo/profiler.h"
#include "qiusuo/tensor.h"

namespace qs::cli {

int cmd_bench(Args a) {
  bench::Options o;
  bool json = a.flag("json");
  o.bf16 = a.flag("bf16");
  o.threads = a.threads(0);
  o.iters = int(a.integer("iters", 0));
  o.weights = a.str("weights", "");
  if (!o.weights.empty() && o.weights != "int8" && o.weights != "int4")
    throw UsageError("qiusuo bench: --weights must be int8 or int4, got '" + o.weights + "'");
  o.model = a.str("model", "");
  o.kv_cache = a.str("kv-cache", "f16");
  if (o.kv_cache != "f16" && o.kv_cache != "f32")
    throw UsageError("qiusuo bench: --kv-cache must be f16 or f32, got '" + o.kv_cache + "'");
  bench::profile_timed_calls() = a.flag("profile");
  bool list = a.flag("list");
  a.finish();
  if (list || a.positionals().empty()) {
    std::cout << "workloads:\n";
    for (auto& w : bench::workloads()) std::cout << "  " << w.name << "  " << w.what << "\n";
    return a.positionals().empty() && !list ? kExitUsage : kExitOk;
  }
  if (o.threads > 0) set_num_threads(o.threads);
  int found = 0;
  for (const std::string& name : a.positionals())
    for (auto& w : bench::workloads()) {
      if (name != "all" && name != w.name) continue;
      ++found;
      if (!o.model.empty() && !w.takes_model) {
        if (name == "all") continue;
        throw UsageError(std::string("qiusuo bench: ") + w.name + " does not take --model (the inference workloads "
                         "cnn_infer_*, lm_fwd_*, lm_gen_* do)");
      }
      std::vector<nlohmann::json> rows;
      if (bench::profile_timed_calls()) profiler::reset();
      {
        Autocast ac(o.bf16);
        rows = w.run(o);
      }
      if (bench::profile_timed_calls())
        std::cerr << "profile of " << w.name << " (its timed calls, all iterations):\n" << profiler::report() << "\n";
      for (auto& r : rows) {
        if (o.bf16) r["workload"] = r["workload"].get<std::string>() + "_bf16";
        r["threads"] = get_num_threads();
        r["isa"] = backend::cpu_isa_name();
        if (!o.weights.empty() && !r.contains("weights")) r["weights_ignored"] = o.weights;
        r["peer"] = "qiusuo";
        if (json)
          std::cout << r.dump() << std::endl;
        else
          std::cout << r.dump(2) << std::endl;
      }
    }
  if (!found) throw UsageError("no workload named '" + a.positionals().front() + "'; try 'qiusuo bench --list'");
  return kExitOk;
}

}  // namespace qs::cli
