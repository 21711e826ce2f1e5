// Atomic file replacement: write to "<path>.tmp.<pid>", flush + fsync, rename over the
// target, fsync the directory. Until commit() succeeds the target is untouched; on any
// failure (or destruction without commit) the temporary file is removed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace qs::io::detail {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);  // throws IOError if the temp file cannot be created
  ~AtomicFileWriter();                          // removes the temp file unless committed
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);  // throws IOError (with the path) on failure
  void commit();                           // fflush, fsync, close, rename, fsync dir
  const std::string& temp_path() const { return tmp_; }
  uint64_t bytes_written() const { return written_; }

 private:
  void discard() noexcept;
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Puts a complete file that a library wrote at `tmp` (beside `path`) in place: fsync
// (unless `synced`), rename over `path`, fsync the directory. On failure the temporary file
// is removed and `path` is untouched. Errors: IOError naming both.
void publish(const std::string& tmp, const std::string& path, bool synced = false);

// Test hook: when >= 0, the next writers throw IOError as soon as a write would take the
// file past this many bytes (simulating a crash or full disk mid-save). -1 disables.
void set_fail_after_bytes_for_testing(int64_t k);

}  // namespace qs::io::detail

namespace qs::io {
// Writes `text` to `path` atomically (temp file, fsync, rename). Errors: IOError.
inline void write_file_atomic(const std::string& path, const std::string& text) {
  detail::AtomicFileWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}
}  // namespace qs::io
