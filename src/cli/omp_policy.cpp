// Idle OpenMP threads spin (libgomp: up to 300000 polls) before they sleep. On a quiet
// machine that saves a wake-up per parallel region; when the cores are already taken the
// spinning threads steal them from the working ones. Measured, LM training (4 layers,
// d 256, b8 n256) on 2 cores: load ~9, 208 tokens/s spinning, 336 passive; load ~5,
// 660-830 spinning, 1330-1410 passive. But the 1-minute average lags: back-to-back
// benchmarks kept it at ~2 on 2 cores with nothing else running, and passive waiting then
// cost cnn_train_b128 ~8% (1703-1739 images/s spinning, 1542-1622 passive, alternating):
// so a runnable thread of another process must also be seen now.
#include "cli/omp_policy.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "util/verbose.h"

namespace qs::cli {

namespace {
bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

// /proc/loadavg: the 1-minute load average and the number of runnable threads now
// (this one included); -1 where unreadable.
struct LoadAvg {
  double one_min = 0;
  int runnable = -1;
};
LoadAvg read_loadavg() {
  LoadAvg l;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    double five, fifteen;
    int total;
    if (std::fscanf(f, "%lf %lf %lf %d/%d", &l.one_min, &five, &fifteen, &l.runnable, &total) != 5) l.runnable = -1;
    std::fclose(f);
  }
  return l;
}

// Threads of other processes runnable right now: the fewest seen over `samples` reads 2 ms
// apart (a read can catch a short-lived process; a busy neighbour shows up in every one).
int others_runnable(int samples) {
  int fewest = -1;
  for (int i = 0; i < samples; ++i) {
    if (i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    int r = read_loadavg().runnable;
    if (r < 0) return -1;
    fewest = fewest < 0 ? r - 1 : std::min(fewest, r - 1);
  }
  return fewest;
}
}  // namespace

bool busy_for_openmp(double load_1min, double cores, int others_now) {
  if (cores <= 0 || load_1min < cores) return false;
  // The 1-minute average lags: a benchmark or build that has just ended still counts for
  // a minute. Passive only while someone else is actually runnable (unknown: trust the average).
  return others_now < 0 || others_now >= 1;
}

void adapt_omp_wait_policy(char** argv) {
  if (env_set("OMP_WAIT_POLICY") || env_set("GOMP_SPINCOUNT")) return;
  const char* mode = std::getenv("QS_OMP_AUTO");
  if (mode && !std::strcmp(mode, "0")) return;
  const bool forced = mode && !std::strcmp(mode, "passive");
  const double load = read_loadavg().one_min, cores = double(std::thread::hardware_concurrency());
  // The five samples (8 ms) are taken only when the average alone would say busy.
  const int others = cores > 0 && load >= cores ? others_runnable(5) : 0;
  if (!forced && !busy_for_openmp(load, cores, others)) return;
  if (util::verbose("omp"))
    std::cerr << "qiusuo: load average " << load << " on " << cores
              << " cores: OMP_WAIT_POLICY=passive (QS_OMP_AUTO=0 keeps spinning)\n";
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on with the default policy
}

}  // namespace qs::cli
