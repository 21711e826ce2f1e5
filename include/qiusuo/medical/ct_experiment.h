// `qiusuo experiment ct`: the ablation of the handbook's medical case (docs/ct.md): the 3D
// CNN, + multi-scale fusion, + attention gates, + focal loss, each trained with several
// seeds on a synthetic LIDC-style data set and scored on its own test split and on an
// independent synthetic set, with bootstrap intervals; results.json, results.md and roc.svg.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace qs::medical {

struct CtExperimentOptions {
  std::string out_dir;
  std::string data, eval_data;  // "" : synthesised into out_dir/data and out_dir/data_eval
  int cases = 160, eval_cases = 60;
  int seeds = 3;
  int epochs = 12;
  bool quick = false;  // CI: 30 small cases, 16^3 patches, width 4, 2 epochs, 2 seeds
  int threads = 0;
  bool quiet = false;
};

// Errors: train_ct's and the readers'.
nlohmann::json run_ct_experiment(const CtExperimentOptions& opt);

}  // namespace qs::medical
