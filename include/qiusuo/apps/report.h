// `qiusuo report`: the handbook's numeric claims beside what qiusuo measures, one row per
// claim, built from the result documents of the curriculum's experiments (`qiusuo
// experiment pe|quant|prune|ct|defect` and `qiusuo heads`). The CLI runs the experiments
// (or reads a folder of their results) and this file turns their documents into rows, a
// Markdown page and an HTML page with the experiments' plots.
//
// Every row says the handbook's number, ours, the setting it was measured in and a verdict:
//   reproduced      ours meets the row's stated rule (the rule is in the row's reason)
//   not reproduced  measured, and it does not
//   inconclusive    measured, but the run cannot decide it (the reason says why, e.g. a
//                   baseline that has not converged)
//   not measurable  the claim names no quantity, or its data cannot be had here; the nearest
//                   measurement is given where there is one
//   not run         the experiment's results were not there (the reason names the file)
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qs::apps {

struct ClaimRow {
  std::string id;        // stable key, e.g. "pe_rope_vs_sinusoidal"
  std::string area;      // "positional encodings", "attention heads", ...
  std::string claim;     // the handbook's claim in words
  std::string handbook;  // the handbook's number(s)
  std::string ours;      // qiusuo's measurement ("" only when the verdict is "not run")
  std::string setting;   // what was measured how (model, data, budget, command)
  std::string verdict;   // one of the five above
  std::string reason;    // the rule applied, or why nothing could be measured
  std::string source;    // the experiment the row reads ("pe", "quant", ...; "" for none)
};

// The experiments' result documents by name: "pe", "quant", "prune", "ct", "defect" (their
// results.json) and "heads" (heads.json). A missing name gives "not run" rows.
using ReportInputs = std::map<std::string, nlohmann::json>;

// The names report rows read, in the page's order.
const std::vector<std::string>& report_experiments();

// One row per claim, in a fixed order; never throws on a document with missing fields (the
// row becomes "not run" naming the field).
std::vector<ClaimRow> claim_rows(const ReportInputs& in);

struct ReportPage {
  std::string title = "The handbook's claims, measured by qiusuo";
  std::string command;     // the command that made the page
  std::string cpu;         // the machine, e.g. "oneDNN ISA avx512_core_bf16, 2 threads"
  std::string mode;        // "quick", "full" or "from DIR"
  double seconds = -1;     // wall time of the whole run (< 0: not timed, e.g. read from a folder)
  std::map<std::string, double> experiment_seconds;  // per experiment run here
  std::map<std::string, std::string> experiment_commands;  // what made each result
  // Per experiment, what its results.json records of the run that made it ("seconds",
  // "machine": apps::stamp_run), so a page read from committed results states their times.
  std::map<std::string, double> recorded_seconds;
  std::map<std::string, std::string> recorded_machine;
};

// report.json (rows + page facts), report.md and report.html (the table, then the plots of
// each experiment found under `results_dir`/<name>/, inlined) into out_dir. Returns report.json.
nlohmann::json write_report(const std::vector<ClaimRow>& rows, const ReportPage& page, const std::string& results_dir,
                            const std::string& out_dir);

}  // namespace qs::apps
