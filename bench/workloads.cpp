#include "bench/bench.h"

namespace qs::bench {

const std::vector<Workload>& workloads() {
  static const std::vector<Workload> all = [] {
    std::vector<Workload> w;
    for (auto&& f : {matmul_workloads, cnn_workloads, attention_workloads, moe_workloads, lm_workloads, quant_workloads, defect_workloads, memory_workloads})
      for (auto& x : f()) w.push_back(x);
    return w;
  }();
  return all;
}

}  // namespace qs::bench
