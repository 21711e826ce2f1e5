// Command-line plumbing shared by the verbs: argument parsing, exit codes, progress.
#pragma once
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace qs::cli {

// Exit codes: 0 ok, 1 usage, 2 check failed, 3 input/output.
constexpr int kExitOk = 0, kExitUsage = 1, kExitCheckFailed = 2, kExitIO = 3;

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --name value / --flag / positionals. Unknown options are reported by finish().
class Args {
 public:
  Args(int argc, char** argv);
  std::string str(const std::string& name, const std::string& dflt);
  std::string required(const std::string& name);
  int64_t integer(const std::string& name, int64_t dflt);
  // The same, refused (UsageError naming the range) outside [lo, hi]: no silent narrowing.
  int64_t integer(const std::string& name, int64_t dflt, int64_t lo, int64_t hi);
  int threads(int dflt = 0) { return int(integer("threads", dflt, 0, 1 << 16)); }  // 0: all cores
  double number(const std::string& name, double dflt);
  // --name a,b,c: the comma-separated items ({} when absent; empty items kept, for the
  // caller's check to name).
  std::vector<std::string> list(const std::string& name);
  std::vector<double> numbers(const std::string& name);  // each item as number() reads one
  // --name, or --name=true|false|1|0|yes|no (anything else is a UsageError).
  bool flag(const std::string& name);
  bool has(const std::string& name) const { return opts_.count(name) > 0; }
  const std::vector<std::string>& positionals() const { return pos_; }
  void finish();  // throws UsageError naming any option nobody asked for

 private:
  std::map<std::string, std::string> opts_;
  std::map<std::string, bool> used_, with_equals_;
  std::vector<std::string> pos_;
};

struct Command {
  const char* name;
  const char* summary;
  std::string usage;  // printed by `qiusuo <verb> --help`
  std::function<int(Args)> run;
};
const std::vector<Command>& commands();
void print_usage(std::ostream& os);  // commands.cpp
// Runs f, mapping exceptions to messages (prefixed by `program`) and exit codes. Args and
// run_guarded (cli.cpp) are also what qiusuo-run parses its command line with.
int run_guarded(const std::function<int()>& f, const char* program = "qiusuo");

// Verbs (one file each).
int cmd_attention(Args a);
int cmd_bench(Args a);
int cmd_check(Args a);
int cmd_demo(Args a);
int cmd_export(Args a);
int cmd_info(Args a);
int cmd_train(Args a);
int cmd_train_lm(Args& a);
int cmd_train_mt(Args& a);
// `qiusuo train --help`, its defaults read from the Train*Options structs.
std::string train_usage();     // cmd_train.cpp
std::string train_lm_usage();  // cmd_lm.cpp
std::string train_mt_usage();  // cmd_mt.cpp
int cmd_eval_mt(Args& a);
int cmd_translate(Args a);
int cmd_mt_data(Args a);
int cmd_eval(Args a);
int cmd_eval_cnn(Args& a);
int cmd_quantize(Args a);
int cmd_prune(Args a);
int cmd_ct(Args a);
int cmd_defect(Args a);
int cmd_detect(Args a);
int cmd_train_defect(Args& a);
int cmd_eval_defect(Args& a);
int cmd_train_ct(Args& a);
int cmd_eval_ct(Args& a);
int cmd_quantize_lm(Args& a, const std::string& ckpt, const std::string& method);
int cmd_generate(Args a);
int cmd_serve(Args a);
int cmd_experiment(Args a);
int cmd_report(Args a);
int cmd_tokenizer(Args a);

}  // namespace qs::cli
