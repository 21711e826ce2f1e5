// The outputs of `qiusuo heads`: heads.json (the viewer's --analysis format plus every
// metric), heads.md (tables and the handbook's claim beside the measurement), heads.svg (a
// grid of layers x heads per attention type, labelled with roles).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "io/atomic_file.h"
#include "qiusuo/apps/heads.h"
#include "qiusuo/error.h"
#include "qiusuo/util/svg_plot.h"

namespace qs::apps {

namespace {

const std::vector<std::string> kKinds = {"self", "causal", "cross"};

std::string kind_title(const std::string& kind, const std::string& model) {
  if (model == "lm") return "Causal self-attention (language model)";
  if (kind == "self") return "Encoder self-attention";
  if (kind == "causal") return "Decoder self-attention (causal)";
  return "Cross-attention (decoder to encoder)";
}

std::string fmt_num(double v, const char* f = "{:.2f}") { return std::isfinite(v) ? fmt::format(fmt::runtime(f), v) : "—"; }

std::string dir_short(const std::string& d) { return d == "dep->head" ? "d→h" : "h→d"; }

std::string syntax_cell(const HeadMetrics& m) {
  std::string s;
  for (const RelationScore& r : m.relations)
    if (r.syntactic)
      s += fmt::format("{}{} {} {:.2f} vs {:.2f}", s.empty() ? "" : "; ", r.relation, dir_short(r.direction),
                       r.accuracy, r.baseline);
  return s.empty() ? "—" : s;
}

std::string head_row(const HeadMetrics& m) {
  const std::string pos = m.kind == "cross" ? "—"
                                            : fmt::format("{:+d} ({:.2f}; {:.2f} of all rows){}", m.offset, m.offset_share,
                                                          m.offset_share_all, m.positional ? " **positional**" : "");
  const std::string rare = std::isfinite(m.rare) ? fmt::format("{:.2f} ({:.2f})", m.rare, m.rare_chance) : "—";
  const std::string align = std::isfinite(m.alignment)
                                ? fmt::format("{:.2f} / {:.2f}", m.alignment, m.alignment_reading)
                                : "—";
  std::string roles;
  for (const std::string& r : m.roles) roles += (roles.empty() ? "`" : ", `") + r + "`";
  return fmt::format("| {} | {} | {:.2f} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", m.layer, m.head,
                     m.confidence, pos, fmt_num(m.eos), m.kind == "causal" ? fmt_num(m.first) : "—", syntax_cell(m), rare, align, fmt_num(m.delta_loss, "{:+.3f}"), fmt_num(m.delta_bleu, "{:+.2f}"),
                     roles.empty() ? "—" : roles);
}

// Per relation and direction: the baseline and the best head of each attention type.
std::string relation_summary(const HeadsReport& r) {
  std::map<std::string, const HeadMetrics*> best;  // "kind rel dir" -> head
  std::map<std::string, const RelationScore*> score;
  for (const HeadMetrics& m : r.heads)
    for (const RelationScore& s : m.relations) {
      const std::string key = fmt::format("{}|{}|{}", m.kind, s.relation, s.direction);
      if (!score.count(key) || s.accuracy > score[key]->accuracy) best[key] = &m, score[key] = &s;
    }
  if (best.empty()) return "";
  std::string out = "\n## Syntactic relations: the best head against the positional baseline\n\n"
                    "| attention | relation | direction | instances | baseline (offset) | best head | accuracy | margin |\n"
                    "|---|---|---|---:|---:|---|---:|---:|\n";
  for (const auto& [key, m] : best) {
    const RelationScore& s = *score[key];
    out += fmt::format("| {} | {} | {} | {} | {:.2f} ({:+d}) | L{} H{} | {:.2f} | {:+.2f}{} |\n", m->kind, s.relation,
                       s.direction, s.instances, s.baseline, s.baseline_offset, m->layer, m->head, s.accuracy,
                       s.accuracy - s.baseline, s.syntactic ? " **syntactic**" : "");
  }
  return out;
}

std::string claim_section(const HeadsReport& r) {
  int64_t syn_low = 0, syn_high = 0, syn_other = 0, pos = 0, align = 0;
  std::string syn_heads;
  for (const HeadMetrics& m : r.heads) {
    const bool syn = std::any_of(m.relations.begin(), m.relations.end(), [](const RelationScore& s) { return s.syntactic; });
    if (syn) {
      (m.head <= 2 ? syn_low : m.head <= 5 ? syn_high : syn_other) += 1;
      syn_heads += fmt::format("{}{} L{} H{}", syn_heads.empty() ? "" : ", ", m.kind, m.layer, m.head);
    }
    pos += m.positional, align += m.roles.end() != std::find(m.roles.begin(), m.roles.end(), "alignment");
  }
  std::string out = "\n## The handbook's claim beside the measurement\n\n"
                    "> Claim: \"in machine translation heads 0-2 capture syntax and heads 3-5 semantic relations\".\n\n";
  if (r.model_kind != "mt")
    return out + "Not testable on this model: it is a language model, and its corpus has no parses.\n";
  out += fmt::format("Measured: {} heads pass a syntactic test ({}); {} of them have index 0-2, {} index 3-5 and {} "
                     "a higher index. {} heads are positional and {} are alignment heads.\n\n",
                     syn_low + syn_high + syn_other, syn_heads.empty() ? "none" : syn_heads, syn_low, syn_high,
                     syn_other, pos, align);
  out += "What this says about the claim: a head's index carries no meaning by itself. Heads of a layer are "
         "interchangeable at initialisation (permuting them, with their projection slices, gives the same "
         "model), so which index ends up with which function is an accident of the random start, and a claim "
         "about indices 0-2 versus 3-5 cannot hold across models. What does hold, here, is that some heads "
         "specialise: the tables above say which ones, in this checkpoint. \"Semantic relations\" are not "
         "defined by the synthetic task's annotations, so that half of the claim is not measured; the closest "
         "measured function is the cross-attention alignment (a target word to the source word it translates).\n";
  return out;
}

std::string importance_section(const HeadsReport& r) {
  if (!r.has_importance) return "";
  return fmt::format(
      "\n## Importance by masking (Michel et al. 2019)\n\n"
      "On {} test pairs the full model has loss {:.4f} nats/token and greedy BLEU {:.2f}. Each head was masked alone "
      "(its output multiplied by 0 before the output projection): the Δloss and ΔBLEU columns. Then heads were "
      "removed greedily in order of increasing Δloss, each kept out while BLEU stayed within {} of the full model "
      "(otherwise restored and the next one tried): **{} of {} heads can be removed**, leaving BLEU {:.2f} and "
      "loss {:.4f} (the heads marked `removable`).\n",
      r.importance_sentences, r.base_loss, r.base_bleu, r.bleu_budget, r.removable, r.heads.size(), r.pruned_bleu,
      r.pruned_loss);
}

}  // namespace

std::string heads_markdown(const HeadsReport& r, const std::string& command) {
  std::string out = fmt::format("# Attention heads of {} (step {})\n\n    {}\n\n", r.checkpoint, r.step, command);
  out += fmt::format("{} sentences from {}. Columns: confidence = mean maximum weight (Voita et al. 2019, `<eos>` rows "
                     "excluded); offset = the argmax offset key - query with the highest share of the rows in which that "
                     "offset exists (the first token has no -1; offsets that exist in under half the rows are not "
                     "tested), positional at >= 0.90, and its share of all rows; syntactic = relations whose accuracy beats the best fixed offset by >= 0.10 (accuracy vs "
                     "baseline; d→h: the dependent's row, h→d: the head's row); `<eos>` = argmax on the key side's `<eos>` "
                     "(a resting place); first = argmax on key 0 of a causal map (`<bos>`, or an LM's first token); rare = argmax on the rarest token "
                     "(chance); alignment = argmax on the aligned source word from the row that predicts the word / "
                     "the row that reads it; Δloss, ΔBLEU = the change when this head alone is masked.\n",
                     r.sentences, r.data);
  for (const std::string& n : r.notes) out += "\n" + n + "\n";
  for (const std::string& kind : kKinds) {
    if (std::none_of(r.heads.begin(), r.heads.end(), [&](const HeadMetrics& m) { return m.kind == kind; })) continue;
    out += fmt::format("\n## {}\n\n| layer | head | confidence | offset | `<eos>` | first | syntactic | rare | alignment | "
                       "Δloss | ΔBLEU | roles |\n|---:|---:|---:|---|---:|---:|---|---|---|---:|---:|---|\n",
                       kind_title(kind, r.model_kind));
    for (const HeadMetrics& m : r.heads)
      if (m.kind == kind) out += head_row(m);
  }
  double best_align = -1;
  const HeadMetrics* ba = nullptr;
  for (const HeadMetrics& m : r.heads)
    if (std::isfinite(m.alignment) && m.alignment > best_align) best_align = m.alignment, ba = &m;
  if (ba)
    out += fmt::format("\nBest cross-attention alignment: layer {} head {}, {:.3f} on the producing row ({:.3f} on the "
                       "reading row).\n", ba->layer, ba->head, ba->alignment, ba->alignment_reading);
  return out + relation_summary(r) + importance_section(r) + claim_section(r);
}

nlohmann::json heads_report_json(const HeadsReport& r) {
  nlohmann::json j = heads_to_json(r.heads);
  j["checkpoint"] = r.checkpoint, j["model_kind"] = r.model_kind, j["step"] = r.step;
  j["sentences"] = r.sentences, j["data"] = r.data, j["notes"] = r.notes;
  if (r.has_importance)
    j["importance"] = {{"sentences", r.importance_sentences}, {"base_loss", r.base_loss}, {"base_bleu", r.base_bleu},
                       {"bleu_budget", r.bleu_budget}, {"removable", r.removable}, {"pruned_bleu", r.pruned_bleu},
                       {"pruned_loss", r.pruned_loss}};
  return j;
}

std::vector<std::string> write_heads_report(const HeadsReport& r, const std::string& dir, const std::string& command) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw IOError(fmt::format("heads: cannot create the output folder '{}': {}", dir,
                              ec ? ec.message() : std::string("a file of that name exists")));
  const std::vector<std::pair<std::string, std::string>> files = {
      {"heads.json", heads_report_json(r).dump(1) + "\n"},
      {"heads.md", heads_markdown(r, command)},
      {"heads.svg", heads_svg(r)}};
  std::vector<std::string> out;
  for (const auto& [name, text] : files) {
    io::write_file_atomic(dir + "/" + name, text);
    out.push_back(dir + "/" + name);
  }
  return out;
}

}  // namespace qs::apps
