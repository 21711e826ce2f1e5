// qiusuo attention: heatmaps of a model's attention on one text, and the dynamic views
// across checkpoints and generation steps.
#include <filesystem>
#include <iostream>
#include <sstream>

#include <fmt/ranges.h>

#include "cli/cli.h"
#include "io/atomic_file.h"
#include "qiusuo/apps/attention_report.h"
#include "qiusuo/apps/mt.h"
#include "qiusuo/error.h"
#include "qiusuo/io/checkpoint.h"

namespace qs::cli {

namespace {

// Present but empty reaches the model's own check ("the text is empty").
std::string text_arg(Args& a, const std::string& name) { return a.has(name) ? a.str(name, "") : a.required(name); }

void set_formats(Args& a, apps::AttentionFigureOptions& o) {
  o.png = o.svg = false;
  for (const std::string& f : a.list("format")) {
    if (f == "png") o.png = true;
    else if (f == "svg") o.svg = true;
    else throw UsageError("--format: expected png, svg or png,svg; found '" + a.str("format", "") + "'");
  }
}

// Creates the folder and writes one page into it.
std::string write_page(const std::string& dir, const std::string& name, const std::string& html) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw IOError(fmt::format("attention: cannot create the output folder '{}': {}", dir,
                              ec ? ec.message() : std::string("a file of that name exists")));
  const std::string path = dir + "/" + name;
  io::write_file_atomic(path, html);
  return path;
}

std::string name_of(const std::string& path) { return std::filesystem::path(path).filename().string(); }

int run_checkpoints(std::vector<std::string> ckpts, const std::string& text, const std::string& out,
                    int64_t max_tokens, int64_t view_max) {
  std::vector<apps::AttentionSnapshot> snaps;
  std::vector<std::string> labels;
  for (const std::string& c : ckpts) {
    apps::LoadedLm lm = apps::load_lm(c);
    snaps.push_back(apps::capture_attention(*lm.model, *lm.tokenizer, text, max_tokens));
    labels.push_back(fmt::format("step {} ({})", lm.step, name_of(c)));
    std::cout << fmt::format("{}: step {}, {} tokens, {} maps\n", c, lm.step, snaps.back().tokens.size(),
                             snaps.back().maps.size());
  }
  const std::string path = write_page(
      out, "checkpoints.html", apps::checkpoints_view_html(snaps, labels, "attention across checkpoints", view_max));
  std::cout << fmt::format("wrote {} ({} frames)\n", path, snaps.size());
  return kExitOk;
}

int run_generation(const std::string& ckpt, const std::string& prompt, const apps::GenerateOptions& g,
                   const std::string& out, int64_t view_max) {
  apps::LoadedLm lm = apps::load_lm(ckpt);
  apps::GenerationCapture cap = apps::capture_generation(lm, prompt, g);
  std::string text;
  for (const std::string& t : cap.generated) text += t;
  std::cout << fmt::format("generated {} tokens: {}\n", cap.generated.size(), text);
  const std::string path =
      write_page(out, "generation.html",
                 apps::generation_view_html(cap, fmt::format("attention while generating ({})", name_of(ckpt)), view_max));
  std::cout << fmt::format("wrote {} ({} frames)\n", path, cap.generated.size());
  return kExitOk;
}

bool is_mt_checkpoint(const std::string& path) {
  const io::Checkpoint ck = io::load_checkpoint(path);
  return ck.config.is_object() && ck.config.value("kind", std::string()) == "qiusuo-mt";
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// A translation checkpoint: the source sentence and, optionally, the target (else the
// model's greedy translation); encoder, decoder and cross-attention maps.
apps::AttentionSnapshot capture_mt(const std::string& ckpt, const std::string& source, const std::string& target,
                                   apps::AttentionFigureOptions& o) {
  apps::LoadedMt mt = apps::load_mt(ckpt);
  const std::vector<std::string> src = words_of(source);
  if (src.empty()) throw UsageError("--source: the sentence is empty");
  std::vector<std::string> tgt = words_of(target);
  if (tgt.empty()) tgt = apps::translate(mt, src);
  std::cout << "target: " << fmt::format("{}", fmt::join(tgt, " ")) << "\n";
  o.title = fmt::format("{} (step {})", name_of(ckpt), mt.step);
  return apps::capture_attention(mt, src, tgt);
}

}  // namespace

int cmd_attention(Args a) {
  const std::string out = a.required("out");
  const int64_t max_tokens = a.integer("max-tokens", 0);
  const int64_t view_max = a.integer("view-max", 256);
  if (int t = a.threads(); t > 0) set_num_threads(t);
  if (a.has("checkpoints")) {
    std::vector<std::string> ckpts = {a.str("checkpoints", "")};
    for (const std::string& p : a.positionals()) ckpts.push_back(p);
    const std::string text = text_arg(a, "text");
    a.finish();
    if (ckpts[0].empty()) throw UsageError("--checkpoints: expected one or more checkpoint files");
    return run_checkpoints(ckpts, text, out, max_tokens, view_max);
  }
  if (a.positionals().size() != 1)
    throw UsageError("qiusuo attention: expected one checkpoint (or --checkpoints CK1 CK2 ...); see --help");
  const std::string ckpt = a.positionals()[0];
  if (a.has("generate")) {
    apps::GenerateOptions g;
    g.max_tokens = a.integer("generate", 16);
    g.temperature = a.number("temperature", 0.0);
    g.top_k = a.integer("top-k", 0);
    g.top_p = a.number("top-p", 1.0);
    g.seed = uint64_t(a.integer("seed", 0));
    const std::string prompt = text_arg(a, "prompt");
    a.finish();
    return run_generation(ckpt, prompt, g, out, view_max);
  }
  apps::AttentionFigureOptions o;
  const bool mt = is_mt_checkpoint(ckpt);
  const bool has_text = a.has("text");
  const std::string text = mt && !has_text ? std::string() : text_arg(a, "text");
  // Translation: --source (or --text) is the source sentence.
  const std::string source = !mt ? "" : has_text && !a.has("source") ? text : text_arg(a, "source");
  const std::string target = mt ? a.str("target", "") : "";
  o.layer = a.integer("layer", -1);
  o.head = a.integer("head", -1);
  o.style.log = a.flag("log");
  o.style.log_floor = a.number("log-floor", o.style.log_floor);
  o.style.max_matrix_px = int(a.integer("max-px", o.style.max_matrix_px));
  if (a.has("format")) set_formats(a, o);  // default: both
  a.finish();
  apps::AttentionSnapshot s;
  if (mt) {
    s = capture_mt(ckpt, source, target, o);
  } else {
    apps::LoadedLm lm = apps::load_lm(ckpt);
    o.title = fmt::format("{} (step {})", name_of(ckpt), lm.step);
    s = apps::capture_attention(*lm.model, *lm.tokenizer, text, max_tokens);
  }
  std::cout << fmt::format("{} tokens, {} attention maps\n", s.tokens.size(), s.maps.size());
  for (const std::string& f : apps::write_attention_figures(s, out, o)) std::cout << out << "/" << f << "\n";
  return kExitOk;
}

}  // namespace qs::cli
