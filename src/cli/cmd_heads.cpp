// qiusuo heads: what each attention head of a checkpoint does (apps/heads.h).
#include <iostream>

#include "cli/cli.h"
#include "qiusuo/apps/heads.h"
#include "qiusuo/error.h"

namespace qs::cli {

int cmd_heads(Args a) {
  if (a.positionals().size() != 1) throw UsageError("qiusuo heads: expected one checkpoint; see --help");
  const std::string ckpt = a.positionals()[0];
  const std::string out = a.required("out");
  apps::HeadsOptions o;
  std::string command = "qiusuo heads " + ckpt;
  for (const char* name : {"data", "sentences", "max-tokens", "importance-sentences", "bleu-budget"})
    if (a.has(name)) command += fmt::format(" --{} {}", name, a.str(name, ""));
  command += " --out " + out;
  o.data = a.str("data", "");
  o.sentences = a.integer("sentences", o.sentences);
  o.max_tokens = a.integer("max-tokens", o.max_tokens);
  o.importance_sentences = a.integer("importance-sentences", o.importance_sentences);
  o.bleu_budget = a.number("bleu-budget", o.bleu_budget);
  o.threads = a.threads(0);
  o.quiet = a.flag("quiet");
  a.finish();
  if (o.sentences <= 0) throw UsageError("--sentences: expected a positive number");
  if (o.importance_sentences < 0) throw UsageError("--importance-sentences: expected 0 (off) or more");
  apps::HeadsReport r = apps::analyse_checkpoint_heads(ckpt, o);
  for (const std::string& p : apps::write_heads_report(r, out, command)) std::cout << p << "\n";
  int64_t pos = 0, syn = 0;
  for (const auto& h : r.heads) {
    pos += h.positional;
    for (const auto& s : h.relations) syn += s.syntactic;
  }
  std::cout << fmt::format("{} heads over {} sentences: {} positional, {} syntactic head-relation pairs{}\n",
                           r.heads.size(), r.sentences, pos, syn,
                           r.has_importance ? fmt::format(", {} removable at a {} BLEU budget", r.removable,
                                                          r.bleu_budget)
                                            : std::string());
  return kExitOk;
}

}  // namespace qs::cli
