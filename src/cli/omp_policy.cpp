// Idle OpenMP threads spin (libgomp: up to 300000 polls) before they sleep. On a quiet
// machine that saves a wake-up per parallel region; when the cores are already taken the
// spinning threads steal them from the working ones. Measured, LM training (4 layers,
// d 256, b8 n256) on 2 cores: load ~9, 208 tokens/s spinning, 336 passive; load ~5,
// 660-830 spinning, 1330-1410 passive.
#include "cli/omp_policy.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

namespace qs::cli {

namespace {
bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

double load_average_1min() {
  double load = 0;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = 0;
    std::fclose(f);
  }
  return load;
}
}  // namespace

void adapt_omp_wait_policy(char** argv) {
  if (env_set("OMP_WAIT_POLICY") || env_set("GOMP_SPINCOUNT")) return;
  const char* mode = std::getenv("QS_OMP_AUTO");
  if (mode && !std::strcmp(mode, "0")) return;
  const bool forced = mode && !std::strcmp(mode, "passive");
  const double load = load_average_1min(), cores = double(std::thread::hardware_concurrency());
  if (!forced && (cores <= 0 || load < cores)) return;
  const char* verbose = std::getenv("QS_VERBOSE");
  if (verbose && std::strstr(verbose, "omp"))
    std::cerr << "qiusuo: load average " << load << " on " << cores
              << " cores: OMP_WAIT_POLICY=passive (QS_OMP_AUTO=0 keeps spinning)\n";
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on with the default policy
}

}  // namespace qs::cli
