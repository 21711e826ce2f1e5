// Workloads behind `qiusuo bench`: each prints JSON objects whose workload names and
// fields match the PyTorch peers in shared/peers/ so the two compare line by line.
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "ops/op.h"
#include "qiusuo/profiler.h"
#include "util/timing.h"

namespace qs::bench {

struct Options {
  bool bf16 = false;  // run under Autocast
  int threads = 0;    // 0: all cores
  int iters = 0;      // 0: the workload's default
  std::string weights;  // lm_gen_b1_p256_g128: "" (f32), "int8" or "int4" (weight-only linears, group 128)
  std::string model;    // --model CKPT: a trained (float or quantised) checkpoint instead of the random model
  std::string kv_cache = "f16";  // lm_gen_b1_p256_g128: the KV cache's dtype (f16 as llama.cpp's default, or f32)
};

struct Workload {
  const char* name;
  const char* what;
  std::function<std::vector<nlohmann::json>(const Options&)> run;
  bool takes_model = false;  // accepts Options::model (cmd_bench refuses --model otherwise)
};

const std::vector<Workload>& workloads();

// `qiusuo bench --profile`: the op profiler runs during the timed calls of time_per_call.
inline bool& profile_timed_calls() {
  static bool on = false;
  return on;
}

// Mean seconds per call of fn after `warm` untimed calls.
inline double time_per_call(const std::function<void()>& fn, int warm, int iters) {
  for (int i = 0; i < warm; ++i) fn();
  if (profile_timed_calls()) profiler::start({}, /*keep=*/true);
  double s = util::seconds_per_call(fn, 0, iters);
  if (profile_timed_calls()) profiler::stop();
  return s;
}

// Seconds per call of one named kernel of `op`: "ref", or "fast" for the first optimised
// kernel (the reference again in a build without them). Outputs are allocated once.
double kernel_time(ops::OpKind op, std::vector<Tensor> in, Attrs attrs, std::string impl, int iters);

// Registration, one function per workload family (bench_<family>.cpp).
std::vector<Workload> matmul_workloads();
std::vector<Workload> cnn_workloads();
std::vector<Workload> attention_workloads();
std::vector<Workload> moe_workloads();
std::vector<Workload> lm_workloads();
std::vector<Workload> quant_workloads();
std::vector<Workload> defect_workloads();
std::vector<Workload> memory_workloads();

}  // namespace qs::bench
