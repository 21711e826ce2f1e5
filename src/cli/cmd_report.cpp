// qiusuo report: every claim experiment run (or read from a folder), then one page with a
// row per handbook claim (include/qiusuo/apps/report.h).
#include <chrono>
#include <filesystem>
#include <iostream>

#include "cli/cli.h"
#include "io/read_file.h"
#include "qiusuo/apps/experiments.h"
#include "qiusuo/apps/heads.h"
#include "qiusuo/apps/mt.h"
#include "qiusuo/apps/report.h"
#include "qiusuo/defect/experiment.h"
#include "qiusuo/error.h"
#include "qiusuo/medical/ct_experiment.h"
#include "qiusuo/tensor.h"

namespace qs::cli {

namespace {

namespace fs = std::filesystem;

// The result document of experiment `name` under `dir`, if it is there.
std::optional<nlohmann::json> read_results(const fs::path& dir, const std::string& name) {
  const fs::path p = name == "heads" ? dir / "heads" / "heads.json" : dir / name / "results.json";
  if (!fs::exists(p)) return std::nullopt;
  try {
    return nlohmann::json::parse(io::read_file_bounded(p.string(), uint64_t(256) << 20, "report"), nullptr, true,
                                 false);
  } catch (const nlohmann::json::exception& e) {
    throw IOError(fmt::format("{}: not JSON: {}", p.string(), e.what()));
  }
}

// The heads experiment: a translation model trained on the synthetic task with homographs
// (docs/results/heads/README.md), then `qiusuo heads` on it.
std::string run_heads(const fs::path& dir, bool quick, int threads, bool quiet) {
  apps::TrainMtOptions t;
  t.data.synthetic.n_homographs = 20;
  t.model.pos.kind = nn::PositionEncoding::learned;
  if (quick) {
    t.model.d_model = 64, t.model.n_heads = 8, t.model.enc_layers = t.model.dec_layers = 2;
    t.steps = 1500, t.batch = 32, t.eval_every = 0, t.eval_sentences = 50, t.test_sentences = 200;
  } else {
    t.model.d_model = 128, t.model.n_heads = 8, t.model.enc_layers = t.model.dec_layers = 3;
    t.steps = 4000, t.batch = 64, t.eval_every = 0;
  }
  t.threads = threads, t.quiet = quiet;
  t.out_dir = (dir / "mt").string();
  const apps::TrainMtResult tr = apps::train_mt(t);
  apps::HeadsOptions h;
  h.sentences = quick ? 100 : 500;
  h.importance_sentences = quick ? 50 : 200;
  h.threads = threads, h.quiet = quiet;
  const std::string command = fmt::format(
      "qiusuo train mt --homographs 20 --layers {} --d-model {} --heads 8 --pe learned --steps {} --batch {} --out "
      "{}/mt && qiusuo heads {} --sentences {} --importance-sentences {} --out {}",
      t.model.enc_layers, t.model.d_model, t.steps, t.batch, dir.string(), tr.checkpoint, h.sentences,
      h.importance_sentences, dir.string());
  apps::write_heads_report(apps::analyse_checkpoint_heads(tr.checkpoint, h), dir.string(), command);
  return command;
}

}  // namespace

int cmd_report(Args a) {
  if (!a.positionals().empty()) throw UsageError("qiusuo report: no positional arguments; see --help");
  const std::string out = a.required("out");
  const bool quick = a.flag("quick");
  const std::string from = a.str("from", "");
  std::vector<std::string> only = a.list("experiments");
  const int threads = a.threads(0);
  const bool quiet = a.flag("quiet");
  a.finish();
  if (quick && !from.empty()) throw UsageError("qiusuo report: --quick runs the experiments, --from reads them: one or the other");
  const std::vector<std::string>& all = apps::report_experiments();
  for (const std::string& e : only)
    if (std::find(all.begin(), all.end(), e) == all.end())
      throw UsageError(fmt::format("qiusuo report: unknown experiment '{}' (available: {})", e, fmt::join(all, ", ")));
  const std::string subset = only.empty() ? "" : fmt::format(" --experiments {}", fmt::join(only, ","));
  if (only.empty()) only = all;
  if (threads > 0) set_num_threads(threads);

  apps::ReportPage page;
  page.command = "qiusuo report" + std::string(quick ? " --quick" : "") + (from.empty() ? "" : " --from " + from) +
                 subset + " --out " + out;
  page.cpu = apps::machine_summary();
  page.mode = !from.empty() ? "read from " + from : quick ? "quick: every experiment at its CI size" : "full budgets";
  const fs::path results = from.empty() ? fs::path(out) : fs::path(from);
  apps::ReportInputs in;
  int failed = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const std::string& e : only) {
    const fs::path dir = results / e;
    if (from.empty()) {
      std::fprintf(stderr, "report: experiment %s into %s\n", e.c_str(), dir.string().c_str());
      const auto s0 = std::chrono::steady_clock::now();
      std::string command;
      try {
        if (e == "pe") {
          apps::PeExperimentOptions o;
          o.quick = quick, o.out_dir = dir.string(), o.threads = threads;
          command = apps::run_pe_experiment(o).value("command", "");
        } else if (e == "quant") {
          apps::QuantExperimentOptions o;
          o.quick = quick, o.out_dir = dir.string(), o.threads = threads;
          command = apps::run_quant_experiment(o).value("command", "");
        } else if (e == "prune") {
          apps::PruneExperimentOptions o;
          o.quick = quick, o.out_dir = dir.string(), o.threads = threads;
          command = apps::run_prune_experiment(o).value("command", "");
        } else if (e == "ct") {
          medical::CtExperimentOptions o;
          o.quick = quick, o.out_dir = dir.string(), o.threads = threads, o.quiet = quiet;
          medical::run_ct_experiment(o);
          command = fmt::format("qiusuo experiment ct{} --out {}", quick ? " --quick" : "", dir.string());
        } else if (e == "defect") {
          defect::DefectExperimentOptions o;
          o.quick = quick, o.out_dir = dir.string(), o.quiet = quiet;
          defect::run_defect_experiment(o);
          command = fmt::format("qiusuo experiment defect{} --out {}", quick ? " --quick" : "", dir.string());
        } else if (e == "heads") {
          command = run_heads(dir, quick, threads, quiet);
        }
      } catch (const Error& err) {
        ++failed;
        std::fprintf(stderr, "report: experiment %s failed: %s\n", e.c_str(), err.what());
        continue;
      }
      page.experiment_seconds[e] = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
      page.experiment_commands[e] = command;
    }
    if (std::optional<nlohmann::json> doc = read_results(results, e)) {
      if (const std::string c = doc->value("command", ""); !from.empty() && !c.empty()) page.experiment_commands[e] = c;
      if (doc->contains("seconds") && (*doc)["seconds"].is_number()) page.recorded_seconds[e] = (*doc)["seconds"].get<double>();
      if (doc->contains("machine") && (*doc)["machine"].is_string()) page.recorded_machine[e] = (*doc)["machine"].get<std::string>();
      in[e] = std::move(*doc);
    }
  }
  if (from.empty()) page.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<apps::ClaimRow> rows = apps::claim_rows(in);
  apps::write_report(rows, page, results.string(), out);
  std::cout << fmt::format("wrote {}/report.md, report.html, report.json\n", out);
  for (size_t i = 0; i < rows.size(); ++i)
    std::cout << fmt::format("{:2}. {}: {} ({})\n", i + 1, rows[i].id, rows[i].verdict,
                             rows[i].ours.empty() ? rows[i].reason : rows[i].ours);
  if (failed > 0) throw Error(fmt::format("qiusuo report: {} experiment(s) failed (above); their rows say \"not run\"", failed));
  return kExitOk;
}

}  // namespace qs::cli
