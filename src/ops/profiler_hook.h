// What the dispatch point needs of the profiler (qiusuo/profiler.h): a flag to test per
// call, and a timer around the call that nests (self time excludes inner op calls).
#pragma once
#include <atomic>
#include <chrono>
#include <string>

namespace qs::profiler::detail {

extern std::atomic<bool> g_on;
inline bool on() { return g_on.load(std::memory_order_relaxed); }
bool record_shapes();

class CallTimer {
 public:
  CallTimer();
  // A call that threw is not counted, and its frame leaves the nesting stack.
  ~CallTimer();
  CallTimer(const CallTimer&) = delete;
  CallTimer& operator=(const CallTimer&) = delete;
  // Ends the call and adds it to the row of (op, kernel, shapes).
  void finish(const char* op, const char* kernel, const std::string& shapes);

 private:
  std::chrono::steady_clock::time_point t0_;
  bool open_ = true;
};

}  // namespace qs::profiler::detail
