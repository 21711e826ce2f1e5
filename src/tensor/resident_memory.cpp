// Resident memory of the process from /proc/self/status (include/qiusuo/memory.h).
#include <malloc.h>

#include <cctype>
#include <fstream>
#include <sstream>

#include "qiusuo/memory.h"

namespace qs {

int64_t parse_proc_status_bytes(const std::string& status_text, const std::string& key) {
  std::istringstream in(status_text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() <= key.size() || line.compare(0, key.size(), key) != 0 || line[key.size()] != ':') continue;
    size_t i = key.size() + 1;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t digits = i;
    while (digits < line.size() && std::isdigit(static_cast<unsigned char>(line[digits]))) ++digits;
    if (digits == i || line.compare(digits, std::string::npos, " kB") != 0) return -1;
    return std::stoll(line.substr(i, digits - i)) * 1024;
  }
  return -1;
}

ResidentMemory resident_memory() {
  std::ifstream f("/proc/self/status");
  if (!f) return {};
  std::stringstream text;
  text << f.rdbuf();
  return {parse_proc_status_bytes(text.str(), "VmRSS"), parse_proc_status_bytes(text.str(), "VmHWM")};
}

bool reset_resident_peak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  return bool(f.flush());
}

ResidentGrowth resident_growth(const std::function<void()>& fn) {
  malloc_trim(0);
  const bool peak_ok = reset_resident_peak();
  const ResidentMemory before = resident_memory();
  fn();
  malloc_trim(0);  // what fn freed is not retained (VmHWM keeps the peak)
  const ResidentMemory after = resident_memory();
  if (before.rss_bytes < 0 || after.rss_bytes < 0) return {};
  return {peak_ok ? after.hwm_bytes - before.rss_bytes : -1, after.rss_bytes - before.rss_bytes};
}

}  // namespace qs
