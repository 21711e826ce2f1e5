// A one-line progress display for long work: step, loss, throughput, ETA. Writes to
// stderr; redraws in place on a terminal, prints every `every` steps otherwise.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include <fmt/core.h>

namespace qs::util {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit, int64_t every = 50)
      : label_(std::move(label)), unit_(std::move(unit)), total_(total), every_(every),
        tty_(isatty(STDERR_FILENO)), t0_(std::chrono::steady_clock::now()) {}

  // `done` steps finished, each of `items` units (images, tokens).
  void update(int64_t done, double loss, int64_t items) {
    items_ += items;
    if (!tty_ && done % every_ != 0 && done != total_) return;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    double rate = secs > 0 ? double(items_) / secs : 0;
    double eta = done > 0 ? secs / double(done) * double(total_ - done) : 0;
    int width = 24, fill = total_ > 0 ? int(width * done / total_) : 0;
    std::string bar = std::string(size_t(fill), '#') + std::string(size_t(width - fill), '.');
    std::string line = fmt::format("{} [{}] {}/{} loss {:.4f} {:.0f} {}/s ETA {:.0f}s", label_, bar, done, total_, loss, rate,
                                   unit_, eta);
    if (tty_)
      std::fprintf(stderr, "\r%s\033[K", line.c_str());
    else
      std::fprintf(stderr, "%s\n", line.c_str());
    if (tty_ && done == total_) std::fprintf(stderr, "\n");
  }
  void restart(int64_t total) {
    total_ = total;
    items_ = 0;
    t0_ = std::chrono::steady_clock::now();
  }

 private:
  std::string label_, unit_;
  int64_t total_, every_;
  bool tty_;
  int64_t items_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace qs::util
