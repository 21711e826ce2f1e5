// qiusuo-run: the standalone graph runtime. Loads a graph written by `qiusuo export`
// (include/qiusuo/graph/graph.h) and runs it: no autograd is recorded, no training, model
// or tokenizer code is linked in (only what running a graph reaches of the library: the
// op table, its kernels, safetensors).
//
//   qiusuo-run GRAPH [--input IN.safetensors] [--output OUT.safetensors] [--batch N] [--seq S] [--bench N] [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/dnnl_util.h"
#include "cli/cli.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/io/safetensors.h"

namespace {

using namespace qs;
using Clock = std::chrono::steady_clock;

const char* kUsage =
    "usage: qiusuo-run GRAPH [--input IN.safetensors] [--output OUT.safetensors] [--batch N] [--seq S]\n"
    "                  [--bench N] [--threads N]\n\n"
    "Runs a graph written by `qiusuo export` (GRAPH and GRAPH.safetensors). Inputs come from IN.safetensors, one\n"
    "tensor per graph input under its name (x0, x1, ...); without --input they are drawn at random (floats\n"
    "N(0, 1), integers 0), at --batch N (1) where the graph's batch is dynamic and --seq S (its max_seq) where its\n"
    "sequence length is. Prints each output's dtype,\n"
    "shape and sum; --output writes them (y0, y1, ...).\n"
    "--bench N times N runs after 3 warm-up runs and prints a JSON line (median step_ms, the CPU's ISA).\n"
    "Exit codes as qiusuo's: 0 ok, 1 usage, 2 error, 3 input/output (a missing or damaged file).\n";

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

int run_main(cli::Args a) {
  if (a.flag("help")) {
    std::fputs(kUsage, stdout);
    return cli::kExitOk;
  }
  const std::string in_path = a.str("input", ""), out_path = a.str("output", "");
  const int64_t bench = a.integer("bench", 0), threads = a.threads(), batch = a.integer("batch", 1);
  int64_t seq = a.integer("seq", 0);
  a.finish();
  if (a.positionals().size() != 1)
    throw cli::UsageError(fmt::format("expected one graph, got {}\n{}", a.positionals().size(), kUsage));
  if (bench < 0 || threads < 0 || batch < 1 || seq < 0)
    throw cli::UsageError("--bench and --threads must not be negative, --batch and --seq must be positive");
  const std::string graph_path = a.positionals()[0];
  if (threads > 0) set_num_threads(int(threads));

  auto t0 = Clock::now();
  graph::Graph g = graph::load(graph_path);
  const double load_ms = ms_since(t0);
  if (seq == 0) seq = g.max_seq;

  std::vector<Tensor> inputs;
  if (!in_path.empty()) {
    io::SafetensorsFile f = io::load_safetensors(in_path);
    std::map<std::string, Tensor> by_name(f.tensors.begin(), f.tensors.end());
    for (int id : g.inputs) {
      const graph::Value& v = g.values[size_t(id)];
      auto it = by_name.find(v.name);
      if (it == by_name.end()) throw IOError(fmt::format("{}: no tensor named '{}' (the graph's inputs are x0, x1, ...)", in_path, v.name));
      inputs.push_back(it->second);
    }
  } else {
    Generator gen(0);
    for (int id : g.inputs) {
      const graph::Value& v = g.values[size_t(id)];
      const Shape shape = graph::with_sizes(v.shape, {batch, seq});
      inputs.push_back(is_floating(v.dtype) ? randn(shape, v.dtype, &gen) : zeros(shape, v.dtype));
    }
  }

  t0 = Clock::now();
  std::vector<Tensor> out = graph::run(g, inputs);
  const double first_ms = ms_since(t0);
  std::printf("%s: %zu nodes, loaded in %.1f ms, first run %.1f ms\n", graph_path.c_str(), g.nodes.size(), load_ms,
              first_ms);
  io::NamedTensors named;
  for (size_t i = 0; i < out.size(); ++i) {
    double sum = 0;
    for (double x : out[i].to_vector()) sum += x;
    std::printf("y%zu: %s%s sum %.6g\n", i, dtype_name(out[i].dtype()), shape_str(out[i].shape()).c_str(), sum);
    named.emplace_back(fmt::format("y{}", i), out[i]);
  }
  if (!out_path.empty()) io::save_safetensors(out_path, named);

  if (bench > 0) {
    for (int w = 0; w < 3; ++w) graph::run(g, inputs);
    std::vector<double> ms;
    for (int64_t r = 0; r < bench; ++r) {
      t0 = Clock::now();
      graph::run(g, inputs);
      ms.push_back(ms_since(t0));
    }
    std::sort(ms.begin(), ms.end());
    std::string stem = graph_path.substr(graph_path.find_last_of('/') + 1);
    std::printf("{\"workload\": \"%s\", \"peer\": \"qiusuo-run\", \"step_ms\": %.4f, \"iters\": %lld, \"threads\": %d, "
                "\"isa\": \"%s\"}\n",
                stem.c_str(), ms[ms.size() / 2], (long long)bench, get_num_threads(), backend::cpu_isa_name());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qs::cli::run_guarded([&] { return run_main(qs::cli::Args(argc - 1, argv + 1)); }, "qiusuo-run");
}
