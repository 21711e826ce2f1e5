// A training run's claim on its output folder (issue 19). Two runs writing one --out would
// overwrite each other's checkpoints, and a run killed during a save leaves its temporary
// files (`X.tmp`, `X.tmp.<pid>`: io's atomic saves) behind. While an OutDirLock lives, this
// process holds an exclusive flock on DIR/.qiusuo.lock (the kernel releases it when the
// process ends, kill -9 included); a second run on the folder fails at once naming the
// holder's pid. Having the folder to itself, the run then removes the temporary files that
// earlier runs left at its top level (nothing else: files under a checkpoint's name, other
// files and subfolders stay).
#pragma once
#include <string>
#include <vector>

namespace qs::io {

class OutDirLock {
 public:
  // Creates `dir` if needed. Throws IOError when another process holds the folder (with its
  // pid) or the lock file cannot be made. `job` starts the messages ("train lm").
  OutDirLock(const std::string& dir, const std::string& job);
  ~OutDirLock();
  OutDirLock(const OutDirLock&) = delete;
  OutDirLock& operator=(const OutDirLock&) = delete;
  // The stale temporary files removed when the lock was taken (their names).
  const std::vector<std::string>& removed() const { return removed_; }

 private:
  int fd_ = -1;
  std::vector<std::string> removed_;
};

}  // namespace qs::io
