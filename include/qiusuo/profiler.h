// An op-level profiler, the counterpart of torch.profiler's operator table: every op call
// that goes through the one dispatch point (forward ops and the backward ops autograd runs;
// not the optimisers' updates, which are loops over the parameters' data and show in the
// gap below) is timed while profiling is on, and the calls are summed per op and
// kernel ("linear/onednn", "softmax/ref"). Self time excludes the ops a kernel calls
// itself (contiguous copies, casts), total time includes them; time spent outside any op
// (the framework, allocation outside kernels, Python-free user code) shows as the gap
// between the op time and the profiled wall time.
//
//   { qs::profiler::Profile p; model(x); }           // or start() / stop()
//   std::cerr << qs::profiler::report();
//
// From the shell: QS_PROFILE=1 (or =shapes, one row per op, kernel and input shapes)
// profiles any qiusuo command and prints the table to stderr at exit;
// `qiusuo bench W --profile` profiles only the workload's timed iterations.
// Off (the default) costs one relaxed atomic load per op call. Thread-safe: calls from
// several threads are summed together.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qs::profiler {

struct Options {
  bool record_shapes = false;  // one row per distinct input dtypes and shapes, too
};

struct OpStat {
  std::string op;      // the op-table row, e.g. "linear"
  std::string kernel;  // the kernel that ran: "ref" or an optimised kernel's name ("view" for views)
  std::string shapes;  // input dtypes and shapes, when recorded
  int64_t calls = 0;
  double total_ms = 0;  // wall time inside the call, nested op calls included
  double self_ms = 0;   // the same, less the op calls made inside it
};

// Clears the counters (unless `keep`) and starts timing op calls.
void start(Options o = {}, bool keep = false);
// Stops timing; the counters stay until the next start() or reset().
void stop();
void reset();
bool active();

// Rows sorted by self time, largest first.
std::vector<OpStat> results();
// Wall time profiled so far (the sum of the start()..stop() windows), in ms.
double profiled_ms();
// A text table of the `max_rows` largest rows with the share of the profiled time.
std::string report(size_t max_rows = 25);

// RAII: start() on construction, stop() on destruction.
class Profile {
 public:
  explicit Profile(Options o = {}) { start(o); }
  ~Profile() { stop(); }
  Profile(const Profile&) = delete;
  Profile& operator=(const Profile&) = delete;
};

}  // namespace qs::profiler
