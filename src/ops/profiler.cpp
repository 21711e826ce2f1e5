// The op-level profiler (include/qiusuo/profiler.h) and its hook into the dispatch point.
#include "qiusuo/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <tuple>

#include <fmt/core.h>

#include "ops/profiler_hook.h"
#include "qiusuo/error.h"

namespace qs::profiler {

namespace {

using Clock = std::chrono::steady_clock;
using Key = std::tuple<std::string, std::string, std::string>;  // op, kernel, shapes

struct State {
  std::mutex mu;
  std::map<Key, OpStat> rows;
  Clock::time_point since{};
  double window_ms = 0;
};
State& state() {
  static State s;
  return s;
}

// Per thread: the children time of each open call, innermost last.
thread_local std::vector<double> t_child_ms;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

namespace detail {

std::atomic<bool> g_on{false};
std::atomic<bool> g_shapes{false};  // start()'s Options::record_shapes, read per call without the lock

bool record_shapes() { return g_shapes.load(std::memory_order_relaxed); }

CallTimer::CallTimer() : t0_(Clock::now()) { t_child_ms.push_back(0); }

CallTimer::~CallTimer() {
  if (open_) t_child_ms.pop_back();
}

void CallTimer::finish(const char* op, const char* kernel, const std::string& shapes) {
  double total = ms_since(t0_);
  double child = t_child_ms.back();
  t_child_ms.pop_back();
  open_ = false;
  if (!t_child_ms.empty()) t_child_ms.back() += total;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  OpStat& r = s.rows[Key{op, kernel, shapes}];
  if (r.calls == 0) r.op = op, r.kernel = kernel, r.shapes = shapes;
  ++r.calls;
  r.total_ms += total;
  r.self_ms += std::max(0.0, total - child);
}

}  // namespace detail

void start(Options o, bool keep) {
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!keep) s.rows.clear(), s.window_ms = 0;
    if (!detail::g_on.load()) s.since = Clock::now();
  }
  detail::g_shapes.store(o.record_shapes);
  detail::g_on.store(true);
}

void stop() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (detail::g_on.exchange(false)) s.window_ms += ms_since(s.since);
}

void reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.rows.clear();
  s.window_ms = 0;
  s.since = Clock::now();
}

bool active() { return detail::g_on.load(std::memory_order_relaxed); }

std::vector<OpStat> results() {
  State& s = state();
  std::vector<OpStat> out;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (auto& [k, r] : s.rows) out.push_back(r);
  }
  std::stable_sort(out.begin(), out.end(), [](const OpStat& a, const OpStat& b) { return a.self_ms > b.self_ms; });
  return out;
}

double profiled_ms() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.window_ms + (detail::g_on.load() ? ms_since(s.since) : 0.0);
}

std::string report(size_t max_rows) {
  std::vector<OpStat> rows = results();
  double wall = profiled_ms(), self = 0;
  int64_t calls = 0;
  for (auto& r : rows) self += r.self_ms, calls += r.calls;
  auto pct = [&](double v) { return wall > 0 ? 100.0 * v / wall : 0.0; };
  std::string s = fmt::format("qiusuo profile: {} op calls; {:.1f} ms inside ops of {:.1f} ms profiled ({:.1f}%)\n",
                              calls, self, wall, pct(self));
  bool shapes = std::any_of(rows.begin(), rows.end(), [](const OpStat& r) { return !r.shapes.empty(); });
  s += fmt::format("{:<28} {:<14} {:>8} {:>10} {:>7} {:>10} {:>10}{}\n", "op", "kernel", "calls", "self ms", "self %",
                   "total ms", "mean us", shapes ? "  inputs" : "");
  for (size_t i = 0; i < rows.size() && i < max_rows; ++i) {
    const OpStat& r = rows[i];
    s += fmt::format("{:<28} {:<14} {:>8} {:>10.2f} {:>6.1f}% {:>10.2f} {:>10.1f}{}\n", r.op, r.kernel, r.calls,
                     r.self_ms, pct(r.self_ms), r.total_ms, 1000.0 * r.total_ms / double(r.calls),
                     shapes ? "  " + r.shapes : "");
  }
  if (rows.size() > max_rows) {
    double rest = 0;
    for (size_t i = max_rows; i < rows.size(); ++i) rest += rows[i].self_ms;
    s += fmt::format("({} more rows: {:.2f} ms self, {:.1f}%)\n", rows.size() - max_rows, rest, pct(rest));
  }
  return s;
}

namespace {

// QS_PROFILE=1|shapes: profile the whole process and print the table at exit.
struct EnvProfile {
  bool on = false;
  EnvProfile() {
    const char* e = std::getenv("QS_PROFILE");
    if (!e || !*e || std::string(e) == "0") return;
    std::string v(e);
    if (v != "1" && v != "shapes") {
      std::cerr << "qs warning: QS_PROFILE='" << v << "' is not understood (1 or shapes); not profiling\n";
      return;
    }
    on = true;
    start(Options{.record_shapes = v == "shapes"});
  }
  ~EnvProfile() {
    if (!on) return;
    stop();
    std::cerr << report(40);
  }
};
const EnvProfile g_env_profile;

}  // namespace

}  // namespace qs::profiler
