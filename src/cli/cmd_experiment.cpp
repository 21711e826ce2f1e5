// qiusuo experiment <name>: the curriculum's measured experiments.
#include <iostream>

#include "cli/cli.h"
#include "qiusuo/apps/experiments.h"

namespace qs::cli {

int cmd_experiment(Args a) {
  if (a.positionals().size() != 1) throw UsageError("qiusuo experiment: which one? (available: pe, quant)");
  const std::string what = a.positionals()[0];
  if (what == "quant" && a.has("replot")) {
    const std::string dir = a.str("replot", "");
    a.finish();
    apps::write_quant_plots(dir);
    std::cout << "wrote " << dir << "/retained.svg, speedup.svg\n";
    return kExitOk;
  }
  if (what == "quant") {
    apps::QuantExperimentOptions q;
    q.quick = a.flag("quick");
    q.out_dir = a.required("out");
    q.cnn = a.str("cnn", "");
    q.lm = a.str("lm", "");
    q.threads = a.threads(0);
    a.finish();
    nlohmann::json r = apps::run_quant_experiment(q);
    std::cout << "wrote " << q.out_dir << "/results.json, results.md\n" << r["claims"].dump() << std::endl;
    return kExitOk;
  }
  if (what != "pe") throw UsageError("qiusuo experiment: unknown experiment '" + what + "' (available: pe, quant)");
  apps::PeExperimentOptions o;
  o.quick = a.flag("quick");
  o.out_dir = a.required("out");
  o.corpus = a.str("corpus", "");
  std::string encs = a.str("encodings", "");
  for (size_t p = 0; !encs.empty();) {
    size_t c = encs.find(',', p);
    o.encodings.push_back(encs.substr(p, c == std::string::npos ? std::string::npos : c - p));
    if (c == std::string::npos) break;
    p = c + 1;
  }
  o.train_len = a.integer("train-len", 0);
  o.steps = a.integer("steps", 0);
  o.eval_tokens = a.integer("eval-tokens", 0);
  o.threads = a.threads(0);
  o.seed = uint64_t(a.integer("seed", 0));
  a.finish();
  nlohmann::json r = apps::run_pe_experiment(o);
  std::cout << "wrote " << o.out_dir << "/results.json, results.md, perplexity.svg\n" << r["claim"].dump() << std::endl;
  return kExitOk;
}

}  // namespace qs::cli
