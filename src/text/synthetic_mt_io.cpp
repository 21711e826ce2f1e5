// Parallel corpora on disk: the synthetic pairs as JSONL or TSV (with their parses and
// alignments), real corpora as two aligned text files, and the grammar's README.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qiusuo/error.h"
#include "qiusuo/text/synthetic_mt.h"
#include "text/unicode.h"
#include "util/json_bounded.h"

namespace qs::text {

namespace {

std::string join(const std::vector<std::string>& w, const char* sep = " ") {
  std::string s;
  for (size_t i = 0; i < w.size(); ++i) s += (i ? sep : "") + w[i];
  return s;
}
std::string join_ints(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s;
}
std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}
std::vector<std::string> split_tabs(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s)
    if (c == '\t') out.emplace_back();
    else out.back() += c;
  return out;
}
std::vector<int32_t> ints(const std::string& s, const std::string& where) {
  std::vector<int32_t> out;
  for (const std::string& w : split_ws(s)) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != w.size()) throw IOError(fmt::format("{}: expected an integer, found '{}'", where, w));
    out.push_back(int32_t(v));
  }
  return out;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw IOError(fmt::format("{}: cannot open the file for writing", path));
  f << text;
  if (!f) throw IOError(fmt::format("{}: write failed", path));
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IOError(fmt::format("parallel corpus: {}: cannot open the file", path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

void check_heads(const std::vector<int32_t>& head, const std::vector<std::string>& rel, size_t n,
                 const std::string& side, const std::string& where) {
  if (head.size() != n || rel.size() != n)
    throw IOError(fmt::format("{}: {} has {} words but {} heads and {} relations", where, side, n, head.size(),
                              rel.size()));
  int roots = 0;
  for (size_t i = 0; i < n; ++i) {
    if (head[i] < -1 || head[i] >= int32_t(n) || head[i] == int32_t(i))
      throw IOError(fmt::format("{}: {} word {} has head {}, expected -1 or another index in [0, {})", where, side, i,
                                head[i], n));
    roots += head[i] == -1;
  }
  if (roots != 1) throw IOError(fmt::format("{}: {} parse has {} roots, expected exactly one", where, side, roots));
  for (size_t i = 0; i < n; ++i) {  // every word reaches the root: no cycles
    int32_t at = int32_t(i);
    for (size_t steps = 0; at != -1; ++steps, at = head[size_t(at)])
      if (steps > n)
        throw IOError(fmt::format("{}: {} parse has a cycle through word {}; expected a tree", where, side, i));
  }
}

}  // namespace

void check_parallel_example(const ParallelExample& p, const std::string& where) {
  if (p.src.empty() || p.tgt.empty())
    throw IOError(fmt::format("{}: a sentence pair needs words on both sides (source {}, target {})", where,
                              p.src.size(), p.tgt.size()));
  if (!p.has_syntax()) return;
  check_heads(p.src_head, p.src_rel, p.src.size(), "the source", where);
  check_heads(p.tgt_head, p.tgt_rel, p.tgt.size(), "the target", where);
  if (p.align.size() != p.tgt.size())
    throw IOError(fmt::format("{}: {} alignments for {} target words", where, p.align.size(), p.tgt.size()));
  for (size_t i = 0; i < p.align.size(); ++i)
    if (p.align[i] < -1 || p.align[i] >= int32_t(p.src.size()))
      throw IOError(fmt::format("{}: target word {} is aligned to {}, expected -1 or a source index < {}", where, i,
                                p.align[i], p.src.size()));
  if ((!p.src_tag.empty() && p.src_tag.size() != p.src.size()) ||
      (!p.tgt_tag.empty() && p.tgt_tag.size() != p.tgt.size()))
    throw IOError(fmt::format("{}: the tags do not match the words ({} / {} source, {} / {} target)", where,
                              p.src_tag.size(), p.src.size(), p.tgt_tag.size(), p.tgt.size()));
}

void write_parallel_jsonl(const std::string& path, const std::vector<ParallelExample>& pairs) {
  std::string out;
  for (const ParallelExample& p : pairs) {
    nlohmann::json j = {{"src", p.src},         {"tgt", p.tgt},         {"src_head", p.src_head},
                        {"src_rel", p.src_rel}, {"tgt_head", p.tgt_head}, {"tgt_rel", p.tgt_rel},
                        {"align", p.align},     {"src_tag", p.src_tag}, {"tgt_tag", p.tgt_tag}};
    out += j.dump() + "\n";
  }
  write_text(path, out);
}

std::vector<ParallelExample> read_parallel_jsonl(const std::string& path) {
  std::vector<ParallelExample> out;
  std::vector<std::string> lines = read_lines(path);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string where = fmt::format("{}:{}", path, i + 1);
    if (lines[i].empty()) continue;
    ParallelExample p;
    try {
      nlohmann::json j = util::parse_json_bounded(lines[i]);
      p.src = j.at("src").get<std::vector<std::string>>();
      p.tgt = j.at("tgt").get<std::vector<std::string>>();
      p.src_head = j.value("src_head", std::vector<int32_t>{});
      p.src_rel = j.value("src_rel", std::vector<std::string>{});
      p.tgt_head = j.value("tgt_head", std::vector<int32_t>{});
      p.tgt_rel = j.value("tgt_rel", std::vector<std::string>{});
      p.align = j.value("align", std::vector<int32_t>{});
      p.src_tag = j.value("src_tag", std::vector<std::string>{});
      p.tgt_tag = j.value("tgt_tag", std::vector<std::string>{});
    } catch (const nlohmann::json::exception& e) {
      throw IOError(fmt::format("{}: expected a JSON object with \"src\" and \"tgt\" word lists: {}", where, e.what()));
    }
    check_parallel_example(p, where);
    out.push_back(std::move(p));
  }
  return out;
}

void write_parallel_tsv(const std::string& path, const std::vector<ParallelExample>& pairs) {
  std::string out = "src\ttgt\tsrc_head\tsrc_rel\ttgt_head\ttgt_rel\talign\tsrc_tag\ttgt_tag\n";
  for (const ParallelExample& p : pairs)
    out += join({join(p.src), join(p.tgt), join_ints(p.src_head), join(p.src_rel), join_ints(p.tgt_head),
                 join(p.tgt_rel), join_ints(p.align), join(p.src_tag), join(p.tgt_tag)}, "\t") + "\n";
  write_text(path, out);
}

std::vector<ParallelExample> read_parallel_tsv(const std::string& path) {
  std::vector<ParallelExample> out;
  std::vector<std::string> lines = read_lines(path);
  for (size_t i = 1; i < lines.size(); ++i) {  // line 1 is the header
    const std::string where = fmt::format("{}:{}", path, i + 1);
    if (lines[i].empty()) continue;
    std::vector<std::string> c = split_tabs(lines[i]);
    if (c.size() != 9) throw IOError(fmt::format("{}: expected 9 tab-separated columns, found {}", where, c.size()));
    ParallelExample p{split_ws(c[0]), split_ws(c[1]), ints(c[2], where), ints(c[4], where),
                      split_ws(c[3]), split_ws(c[5]), ints(c[6], where), split_ws(c[7]), split_ws(c[8])};
    check_parallel_example(p, where);
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<ParallelExample> read_parallel_text(const std::string& src_path, const std::string& tgt_path) {
  std::vector<std::string> src = read_lines(src_path), tgt = read_lines(tgt_path);
  if (src.size() != tgt.size())
    throw IOError(fmt::format("parallel corpus: {} has {} lines but {} has {}; expected one sentence per line in "
                              "both, aligned line by line", src_path, src.size(), tgt_path, tgt.size()));
  std::vector<ParallelExample> out;
  for (size_t i = 0; i < src.size(); ++i) {
    for (const auto& [path, line] : {std::pair{&src_path, &src[i]}, {&tgt_path, &tgt[i]}}) {
      size_t bad = detail::first_invalid_utf8(*line);
      if (bad != std::string::npos)
        throw IOError(fmt::format("parallel corpus: {}:{}: invalid UTF-8 at byte {} of the line", *path, i + 1, bad));
      if (line->find_first_not_of(" \t\f\v") == std::string::npos)
        throw IOError(fmt::format("parallel corpus: {}:{}: empty line; expected one sentence per line", *path, i + 1));
    }
    ParallelExample p;
    p.src = split_ws(src[i]), p.tgt = split_ws(tgt[i]);
    out.push_back(std::move(p));
  }
  if (out.empty()) throw IOError(fmt::format("parallel corpus: {} is empty", src_path));
  return out;
}

std::string SyntheticMtLanguage::describe(int64_t n_examples) const {
  std::string s = fmt::format(
      "# Synthetic parallel corpus (qiusuo mt-data)\n\n"
      "Generated by `qiusuo mt-data` (src/text/synthetic_mt.cpp) from seed {} and lexicon seed {}.\n\n"
      "## Source: an English-like SVO language\n\n"
      "    S     = NP_subj Verb [NP_obj] [Adverb] [Prep NP]\n"
      "    NP    = Det Adj{{0..2}} Noun [that Verb [NP]]  |  Pronoun (subjects: I he she it we they)\n"
      "    agreement: 3rd person singular subjects put -s on the verb; plural nouns take -s\n"
      "    determiners: the a this every (singular), the these some many (plural)\n\n"
      "## Target: an SOV language with postpositions and case particles\n\n"
      "    S     = NP_subj ka [NP postposition] [NP_obj ro] [Adverb] Verb AGR\n"
      "    NP    = [[NP_obj ro] Verb ta] Noun(-ni plural) Adj* Det\n"
      "    AGR   = mu (1sg) su (3sg) mira (1pl) sura (3pl); 'a' is not translated\n\n"
      "Lexicon: {} source forms with a translation; {} nouns, {} transitive and {} intransitive verbs, {} adjectives,\n"
      "{} adverbs (Zipf exponent {} within each class: a long tail of rare words).\n\n"
      "## Files\n\n"
      "One JSON object per line: `src`, `tgt` (words), `src_head`, `tgt_head` (head index per word, -1 root),\n"
      "`src_rel`, `tgt_rel` (nsubj dobj det amod advmod prep pobj relcl root; target also case agr mark),\n"
      "`align` (per target word the source index it translates, -1 for case/agreement particles),\n"
      "`src_tag`, `tgt_tag` (NOUN:sg, VERB:3sg, PRON:1pl, DET, ADJ, ADV, ADP, PRT).\n\n## Examples\n\n",
      opt_.seed, opt_.lexicon_seed, src_to_tgt_.size(), nouns_.size(), verbs_tr_.size(), verbs_intr_.size(),
      adjectives_.size(), adverbs_.size(), opt_.zipf);
  if (!noun_reading_.empty())
    s.insert(s.find("## Files"), fmt::format(
        "Homographs: {} source forms are both a noun and a verb, as in English, with different translations;\n"
        "the word before decides which (a determiner or adjective: the noun; a subject or 'that': the verb):\n"
        "{}.\n\n", noun_reading_.size(), join(homograph_forms())));
  std::vector<ParallelExample> ex = generate_synthetic_mt(opt_, n_examples, 99);
  for (const ParallelExample& p : ex) {
    s += "    " + join(p.src) + "\n    " + join(p.tgt) + "\n    align " + join_ints(p.align) + "\n\n";
  }
  return s;
}

}  // namespace qs::text
