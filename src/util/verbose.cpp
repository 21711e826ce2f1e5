// QS_VERBOSE, parsed once for the whole process.
#include "util/verbose.h"

#include <algorithm>
#include <cstdlib>

namespace qs::util {

std::vector<std::string> parse_verbose_topics(const char* value) {
  std::vector<std::string> topics;
  std::string rest = value ? value : "";
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string t = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    const size_t a = t.find_first_not_of(" \t"), b = t.find_last_not_of(" \t");
    if (a != std::string::npos) topics.push_back(t.substr(a, b - a + 1));
  }
  return topics;
}

bool verbose(const char* topic) {
  static const std::vector<std::string> topics = parse_verbose_topics(std::getenv("QS_VERBOSE"));
  return std::find(topics.begin(), topics.end(), topic) != topics.end();
}

}  // namespace qs::util
