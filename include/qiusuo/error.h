// Errors: every failure is a qs::Error whose message says what failed, what was
// expected and what was found, and where possible a "hint:".
#pragma once
#include <fmt/core.h>

#include <stdexcept>
#include <string>

namespace qs {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// An error reading or writing a file (the CLI maps it to exit code 3).
class IOError : public Error {
 public:
  explicit IOError(const std::string& msg) : Error(msg) {}
};

}  // namespace qs

#define QS_CHECK(cond, ...)                                  \
  do {                                                       \
    if (!(cond)) throw ::qs::Error(fmt::format(__VA_ARGS__)); \
  } while (0)

#define QS_FAIL(...) throw ::qs::Error(fmt::format(__VA_ARGS__))
