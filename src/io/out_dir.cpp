// io::OutDirLock (include/qiusuo/io/out_dir.h).
#include "qiusuo/io/out_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "qiusuo/error.h"

namespace qs::io {

namespace {

// "X.tmp" or "X.tmp.<digits>" with a non-empty X: what atomic saves and checkpoint copies leave.
bool is_temporary(const std::string& name) {
  const size_t at = name.rfind(".tmp");
  if (at == std::string::npos || at == 0) return false;
  const std::string rest = name.substr(at + 4);
  if (rest.empty()) return true;
  if (rest[0] != '.' || rest.size() == 1) return false;
  for (size_t i = 1; i < rest.size(); ++i)
    if (rest[i] < '0' || rest[i] > '9') return false;
  return true;
}

}  // namespace

OutDirLock::OutDirLock(const std::string& dir, const std::string& job) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IOError(fmt::format("{}: cannot create the output folder {}: {}", job, dir, ec.message()));
  const std::string path = (fs::path(dir) / ".qiusuo.lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IOError(fmt::format("{}: cannot open the lock file {}: {}", job, path, std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    const std::string holder = n > 0 ? std::string(buf, size_t(n)) : std::string("unknown");
    if (err == EWOULDBLOCK)
      throw IOError(fmt::format("{}: the output folder {} is in use by another run (pid {}, per {}); two runs writing one "
                                "folder would overwrite each other's checkpoints; hint: another --out, or wait for it",
                                job, dir, holder.substr(0, holder.find('\n')), path));
    throw IOError(fmt::format("{}: cannot lock {}: {}", job, path, std::strerror(err)));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    const int err = errno;
    ::close(fd_);  // the destructor does not run for a throwing constructor
    fd_ = -1;
    throw IOError(fmt::format("{}: cannot write the lock file {}: {}", job, path, std::strerror(err)));
  }
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file(ec) || !is_temporary(name)) continue;
    std::error_code rm;
    if (fs::remove(e.path(), rm)) removed_.push_back(name);
  }
}

OutDirLock::~OutDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock; the file stays (its pid is only informative)
}

}  // namespace qs::io
