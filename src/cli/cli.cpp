#include "cli/cli.h"

#include <iostream>

#include "qiusuo/error.h"

namespace qs::cli {

Args::Args(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0 && s.size() > 2) {
      std::string name = s.substr(2), value;
      auto eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        with_equals_[name] = true;
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        value = argv[++i];
      } else {
        value = "";
      }
      opts_[name] = value;
    } else {
      pos_.push_back(s);
    }
  }
}

std::string Args::str(const std::string& name, const std::string& dflt) {
  used_[name] = true;
  auto it = opts_.find(name);
  return it == opts_.end() ? dflt : it->second;
}
std::string Args::required(const std::string& name) {
  used_[name] = true;
  auto it = opts_.find(name);
  if (it == opts_.end() || it->second.empty()) throw UsageError("missing required option --" + name);
  return it->second;
}
int64_t Args::integer(const std::string& name, int64_t dflt) {
  std::string v = str(name, "");
  if (!has(name)) return dflt;
  try {
    size_t pos = 0;
    int64_t r = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return r;
  } catch (const std::exception&) {
    throw UsageError("--" + name + " expects an integer, got '" + v + "'");
  }
}
int64_t Args::integer(const std::string& name, int64_t dflt, int64_t lo, int64_t hi) {
  const int64_t v = integer(name, dflt);
  if (v < lo || v > hi)
    throw UsageError("--" + name + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                     std::to_string(v));
  return v;
}
namespace {
double parse_number(const std::string& name, const std::string& v) {
  try {
    size_t pos = 0;
    double r = std::stod(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return r;
  } catch (const std::exception&) {
    throw UsageError("--" + name + " expects a number, got '" + v + "'");
  }
}
}  // namespace

double Args::number(const std::string& name, double dflt) {
  std::string v = str(name, "");
  if (!has(name)) return dflt;
  return parse_number(name, v);
}
std::vector<std::string> Args::list(const std::string& name) {
  const std::string v = str(name, "");
  std::vector<std::string> out;
  if (!has(name)) return out;
  for (size_t start = 0; start <= v.size();) {
    const size_t end = std::min(v.find(',', start), v.size());
    out.push_back(v.substr(start, end - start));
    start = end + 1;
  }
  return out;
}
std::vector<double> Args::numbers(const std::string& name) {
  std::vector<double> out;
  for (const std::string& item : list(name)) out.push_back(parse_number(name, item));
  return out;
}
bool Args::flag(const std::string& name) {
  used_[name] = true;
  auto it = opts_.find(name);
  if (it == opts_.end()) return false;
  if (with_equals_.count(name)) {  // "--flag=false" means false, not true
    const std::string& v = it->second;
    if (v == "true" || v == "1" || v == "yes") return true;
    if (v == "false" || v == "0" || v == "no") return false;
    throw UsageError("--" + name + " is a switch: --" + name + ", or --" + name + "=true|false, got '" + v + "'");
  }
  if (!it->second.empty()) {  // "--flag value": give the value back as a positional
    pos_.push_back(it->second);
    it->second.clear();
  }
  return true;
}
void Args::finish() {
  for (auto& [k, v] : opts_)
    if (!used_.count(k)) throw UsageError("unknown option --" + k);
}

int run_guarded(const std::function<int()>& f, const char* program) {
  try {
    return f();
  } catch (const UsageError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return kExitUsage;
  } catch (const qs::IOError& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    return kExitIO;
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    return kExitCheckFailed;
  }
}

}  // namespace qs::cli
