#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "qiusuo/error.h"

namespace qs::io::detail {
namespace {
std::atomic<int64_t> g_fail_after{-1};

std::string errno_str() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
}  // namespace

void set_fail_after_bytes_for_testing(int64_t k) { g_fail_after = k; }

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_)
    throw IOError(fmt::format("{}: cannot create temporary file '{}': {}", path_, tmp_, errno_str()));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) discard();
}

void AtomicFileWriter::discard() noexcept {
  if (f_) std::fclose(f_);
  f_ = nullptr;
  std::remove(tmp_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t n) {
  if (!f_) throw IOError(fmt::format("{}: write after the file was closed", path_));
  int64_t limit = g_fail_after.load();
  if (limit >= 0 && written_ + n > uint64_t(limit)) {
    size_t part = size_t(uint64_t(limit) - written_);
    if (part > 0) std::fwrite(data, 1, part, f_);  // leave a realistic partial file behind
    written_ += part;
    throw IOError(fmt::format("{}: simulated write failure after {} bytes (test hook)", path_, limit));
  }
  if (n > 0 && std::fwrite(data, 1, n, f_) != n)
    throw IOError(fmt::format("{}: writing {} bytes to '{}' failed after {} bytes: {}", path_, n,
                              tmp_, written_, errno_str()));
  written_ += n;
}

void AtomicFileWriter::commit() {
  if (!f_) throw IOError(fmt::format("{}: commit after the file was closed", path_));
  if (std::fflush(f_) != 0)
    throw IOError(fmt::format("{}: flushing '{}' failed: {}", path_, tmp_, errno_str()));
  if (::fsync(::fileno(f_)) != 0)
    throw IOError(fmt::format("{}: fsync of '{}' failed: {}", path_, tmp_, errno_str()));
  int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) throw IOError(fmt::format("{}: closing '{}' failed: {}", path_, tmp_, errno_str()));
  committed_ = true;  // from here the temporary file is publish()'s to rename or remove
  publish(tmp_, path_, /*synced=*/true);
}

void publish(const std::string& tmp, const std::string& path, bool synced) {
  if (!synced) {
    int fd = ::open(tmp.c_str(), O_RDONLY);
    int rc = fd < 0 ? -1 : ::fsync(fd);
    if (fd >= 0) ::close(fd);
    if (rc != 0) {
      const std::string why = errno_str();
      std::remove(tmp.c_str());
      throw IOError(fmt::format("{}: fsync of '{}' failed: {}", path, tmp, why));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_str();
    std::remove(tmp.c_str());
    throw IOError(fmt::format("{}: renaming '{}' over it failed: {}", path, tmp, why));
  }
  // Make the rename itself durable; the new file is already in place, so a failure
  // here is reported but cannot leave a half-written target.
  int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd < 0) throw IOError(fmt::format("{}: opening its directory to fsync failed: {}", path, errno_str()));
  int drc = ::fsync(dfd);
  ::close(dfd);
  if (drc != 0) throw IOError(fmt::format("{}: fsync of its directory failed: {}", path, errno_str()));
}

}  // namespace qs::io::detail
