// Head metrics from captured attention (include/qiusuo/apps/heads.h): confidence, positional,
// syntactic (against the positional baseline), rare-word and alignment tests.
#include "qiusuo/apps/heads.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "apps/experiment_util.h"
#include "qiusuo/error.h"

namespace qs::apps {

namespace {

struct RelKey {
  std::string rel, dir;
  bool operator<(const RelKey& o) const { return std::tie(rel, dir) < std::tie(o.rel, o.dir); }
};

// One scored syntactic instance: a query row and the keys that count as correct.
struct Instance {
  int64_t query = 0;
  std::vector<int64_t> targets;
};

// Running sums of one head.
struct HeadAcc {
  double sum_max = 0;
  int64_t rows = 0;
  std::map<int64_t, int64_t> offsets;
  std::map<RelKey, int64_t> rel_hits;
  int64_t rare_hits = 0, rare_rows = 0;
  double rare_chance = 0;
  int64_t align_hits = 0, align_rows = 0, read_hits = 0, read_rows = 0;
  int64_t eos_hits = 0, eos_rows = 0, first_hits = 0;
};

// Per map: the heads' sums and the relation baselines (shared by all heads of the map).
struct MapAcc {
  std::string name, kind;
  int64_t layer = 0, heads = 0;
  std::vector<HeadAcc> head;
  std::map<RelKey, std::map<int64_t, int64_t>> base_offsets;  // per relation: offset -> correct instances
  std::map<RelKey, int64_t> instances;
  int64_t rows = 0;                     // scored rows (the same for every head of the map)
  std::map<int64_t, int64_t> offset_rows;  // offset -> scored rows in which that key exists
};

struct Sides {
  const SideGold* q;
  const SideGold* k;
};

Sides sides_of(const AttentionMap& m, const HeadSentence& s) {
  const bool lm = s.snap.source_ids.empty() && s.snap.source_tokens.empty();
  if (m.kind == "self" && !lm) return {&s.source, &s.source};
  if (m.kind == "cross") return {&s.target, &s.source};
  return {&s.target, &s.target};
}

void check_side(const SideGold& g, int64_t tokens, const std::string& what) {
  const int64_t words = int64_t(g.head.size());
  QS_CHECK(g.first >= 0 && g.first + words <= tokens, "heads: the {} side has {} tokens; {} words from token {} do not fit",
           what, tokens, words, g.first);
  QS_CHECK(g.rel.size() == g.head.size(), "heads: the {} side has {} heads but {} relations", what, words, g.rel.size());
  for (int32_t h : g.head)
    QS_CHECK(h >= -1 && h < words, "heads: the {} side has a head index {} outside [-1, {})", what, h, words);
  QS_CHECK(g.freq.empty() || int64_t(g.freq.size()) == tokens, "heads: the {} side has {} tokens but {} frequencies",
           what, tokens, g.freq.size());
  QS_CHECK(g.eos >= -1 && g.eos < tokens, "heads: the {} side's eos index {} is outside its {} tokens", what, g.eos,
           tokens);
}

bool scored_row(const SideGold& q, bool causal, int64_t row) { return row != q.eos && !(causal && row == 0); }

int64_t argmax_row(const float* w, int64_t n) { return int64_t(std::max_element(w, w + n) - w); }

// The instances of one relation and direction on a side (causal: targets restricted to visible keys).
std::vector<Instance> instances_of(const SideGold& g, const std::string& rel, bool head_to_dep, bool causal) {
  std::map<int64_t, Instance> by_query;
  for (size_t w = 0; w < g.head.size(); ++w) {
    if (g.rel[w] != rel || g.head[w] < 0) continue;
    const int64_t dep = g.first + int64_t(w), head = g.first + g.head[w];
    const int64_t q = head_to_dep ? head : dep, t = head_to_dep ? dep : head;
    if (q == g.eos || (causal && (t > q || q == 0))) continue;
    Instance& in = by_query[q];
    in.query = q;
    in.targets.push_back(t);
  }
  std::vector<Instance> out;
  for (auto& [q, in] : by_query) out.push_back(std::move(in));
  return out;
}

void score_syntax(MapAcc& acc, const float* w, int64_t tq, int64_t tk, const SideGold& g, bool causal,
                  const HeadAnalysisOptions& opt) {
  for (const std::string& rel : opt.relations) {
    for (bool h2d : {false, true}) {
      const RelKey key{rel, h2d ? "head->dep" : "dep->head"};
      for (const Instance& in : instances_of(g, rel, h2d, causal)) {
        acc.instances[key] += 1;
        for (int64_t t : std::set<int64_t>(in.targets.begin(), in.targets.end())) acc.base_offsets[key][t - in.query] += 1;
        for (int64_t h = 0; h < acc.heads; ++h) {
          const int64_t best = argmax_row(w + (h * tq + in.query) * tk, tk);
          if (std::find(in.targets.begin(), in.targets.end(), best) != in.targets.end()) acc.head[h].rel_hits[key] += 1;
        }
      }
    }
  }
}

void score_rare(HeadAcc& a, const float* row, int64_t visible, const std::vector<double>& freq) {
  const double lo = *std::min_element(freq.begin(), freq.begin() + visible);
  if (!std::isfinite(lo)) return;
  const int64_t ties = std::count(freq.begin(), freq.begin() + visible, lo);
  a.rare_rows += 1;
  a.rare_chance += double(ties) / double(visible);
  if (freq[argmax_row(row, visible)] == lo) a.rare_hits += 1;
}

void score_alignment(MapAcc& acc, const float* w, int64_t tq, int64_t tk, const HeadSentence& s) {
  const int64_t first = s.target.first;
  for (size_t j = 0; j < s.align.size(); ++j) {
    if (s.align[j] < 0) continue;
    const int64_t key = s.source.first + s.align[j], produce = first + int64_t(j) - 1, read = first + int64_t(j);
    QS_CHECK(key < tk && read < tq, "heads: alignment {} -> {} is outside the cross map [{}, {}]", j, s.align[j], tq, tk);
    for (int64_t h = 0; h < acc.heads; ++h) {
      HeadAcc& a = acc.head[h];
      if (produce >= 0) {
        a.align_rows += 1;
        a.align_hits += argmax_row(w + (h * tq + produce) * tk, tk) == key;
      }
      a.read_rows += 1;
      a.read_hits += argmax_row(w + (h * tq + read) * tk, tk) == key;
    }
  }
}

void score_map(MapAcc& acc, const AttentionMap& m, const HeadSentence& s, const HeadAnalysisOptions& opt) {
  const Sides sd = sides_of(m, s);
  const bool causal = m.kind == "causal", cross = m.kind == "cross";
  Tensor wt = m.weights.to(DType::f32).contiguous();
  QS_CHECK(wt.dim() == 3 && wt.size(0) == acc.heads, "heads: map {} has weights {}, expected [{}, T, T]", m.name,
           shape_str(wt.shape()), acc.heads);
  const int64_t tq = wt.size(1), tk = wt.size(2);
  check_side(*sd.q, tq, m.kind + " query");
  check_side(*sd.k, tk, m.kind + " key");
  const float* w = wt.data_ptr<float>();
  for (int64_t q = 0; q < tq && !cross; ++q) {
    if (!scored_row(*sd.q, causal, q)) continue;
    acc.rows += 1;
    for (int64_t k = 0; k < (causal ? std::min(q + 1, tk) : tk); ++k) acc.offset_rows[k - q] += 1;
  }
  for (int64_t h = 0; h < acc.heads; ++h) {
    HeadAcc& a = acc.head[h];
    for (int64_t q = 0; q < tq; ++q) {
      if (!scored_row(*sd.q, causal, q)) continue;
      const float* row = w + (h * tq + q) * tk;
      const int64_t visible = causal ? std::min(q + 1, tk) : tk;
      const int64_t best = argmax_row(row, visible);
      a.sum_max += row[best];
      a.rows += 1;
      if (!cross) a.offsets[best - q] += 1;
      if (sd.k->eos >= 0 && sd.k->eos < visible) a.eos_rows += 1, a.eos_hits += best == sd.k->eos;
      a.first_hits += best == 0;
      if (!sd.k->freq.empty()) score_rare(a, row, visible, sd.k->freq);
    }
  }
  if (!cross && !sd.q->head.empty()) score_syntax(acc, w, tq, tk, *sd.q, causal, opt);
  if (cross && !s.align.empty()) score_alignment(acc, w, tq, tk, s);
}

double ratio(int64_t a, int64_t b) { return b > 0 ? double(a) / double(b) : std::numeric_limits<double>::quiet_NaN(); }

// The positional test's offset: the one whose argmax share is highest among the rows in which
// that offset exists (the first token has no -1), considering only offsets that exist in at
// least opt.min_offset_coverage of the scored rows. Ties: the offset hit more often.
void choose_offset(const MapAcc& acc, const HeadAcc& a, const HeadAnalysisOptions& opt, HeadMetrics& m) {
  int64_t best_hits = -1;
  for (const auto& [off, n] : a.offsets) {
    auto it = acc.offset_rows.find(off);
    const int64_t exist = it == acc.offset_rows.end() ? 0 : it->second;
    if (exist == 0 || double(exist) < opt.min_offset_coverage * double(acc.rows)) continue;
    const double share = ratio(n, exist);
    if (share > m.offset_share || (share == m.offset_share && n > best_hits))
      m.offset = off, m.offset_share = share, m.offset_share_all = ratio(n, a.rows), m.offset_rows = exist,
      best_hits = n;
  }
}

HeadMetrics finish_head(const MapAcc& acc, int64_t h, const HeadAnalysisOptions& opt) {
  const HeadAcc& a = acc.head[h];
  HeadMetrics m;
  m.name = acc.name, m.kind = acc.kind, m.layer = acc.layer, m.head = h, m.rows = a.rows;
  m.confidence = a.rows ? a.sum_max / double(a.rows) : 0.0;
  choose_offset(acc, a, opt, m);
  m.positional = acc.kind != "cross" && a.rows > 0 && m.offset_share >= opt.positional_share;
  for (const auto& [key, n] : acc.instances) {
    RelationScore r{key.rel, key.dir, n};
    auto hit = a.rel_hits.find(key);
    r.accuracy = ratio(hit == a.rel_hits.end() ? 0 : hit->second, n);
    for (const auto& [off, c] : acc.base_offsets.at(key))
      if (ratio(c, n) > r.baseline) r.baseline = ratio(c, n), r.baseline_offset = off;
    r.syntactic = n >= opt.min_instances && r.accuracy >= r.baseline + opt.syntactic_margin;
    m.relations.push_back(r);
  }
  if (a.rare_rows) m.rare = ratio(a.rare_hits, a.rare_rows), m.rare_chance = a.rare_chance / double(a.rare_rows);
  if (a.eos_rows) m.eos = ratio(a.eos_hits, a.eos_rows);
  m.first = a.rows ? ratio(a.first_hits, a.rows) : 0.0;
  if (a.align_rows) m.alignment = ratio(a.align_hits, a.align_rows);
  if (a.read_rows) m.alignment_reading = ratio(a.read_hits, a.read_rows);
  assign_roles(m, opt);
  return m;
}

}  // namespace

void assign_roles(HeadMetrics& m, const HeadAnalysisOptions& opt) {
  m.roles.clear();
  if (m.positional) m.roles.push_back(fmt::format("positional {}{}", m.offset > 0 ? "+" : "", m.offset));
  if (m.positional && m.offset == -1) m.roles.push_back("previous token");
  for (const RelationScore& r : m.relations)
    if (r.syntactic) m.roles.push_back(fmt::format("syntactic {} {}", r.relation, r.direction));
  if (std::isfinite(m.rare) && m.rare >= opt.rare_threshold && m.rare >= 2 * m.rare_chance)
    m.roles.push_back("rare words");
  if (std::isfinite(m.alignment) && m.alignment >= opt.alignment_threshold) m.roles.push_back("alignment");
  if (std::isfinite(m.eos) && m.eos >= opt.eos_threshold) m.roles.push_back("<eos> sink");
  if (m.kind == "causal" && m.first >= opt.first_threshold) m.roles.push_back("first-token sink");
  if (m.pruned) m.roles.push_back("removable");
}

std::vector<HeadMetrics> analyse_heads(const std::vector<HeadSentence>& sentences, const HeadAnalysisOptions& opt) {
  QS_CHECK(!sentences.empty(), "heads: no sentences to analyse");
  const AttentionSnapshot& s0 = sentences[0].snap;
  QS_CHECK(!s0.maps.empty(), "heads: the snapshot has no attention maps");
  std::vector<MapAcc> maps;
  for (const AttentionMap& m : s0.maps) {
    QS_CHECK(m.weights.defined() && m.weights.dim() == 3, "heads: map {} has no [H, T, T] weights", m.name);
    MapAcc acc{m.name, m.kind, m.layer, m.weights.size(0)};
    acc.head.resize(size_t(acc.heads));
    maps.push_back(std::move(acc));
  }
  for (size_t i = 0; i < sentences.size(); ++i) {
    const HeadSentence& s = sentences[i];
    QS_CHECK(s.snap.maps.size() == maps.size(), "heads: sentence {} has {} maps, sentence 0 has {}", i,
             s.snap.maps.size(), maps.size());
    for (size_t m = 0; m < maps.size(); ++m) {
      QS_CHECK(s.snap.maps[m].name == maps[m].name && s.snap.maps[m].kind == maps[m].kind,
               "heads: sentence {} map {} is {} ({}), sentence 0 has {} ({})", i, m, s.snap.maps[m].name,
               s.snap.maps[m].kind, maps[m].name, maps[m].kind);
      score_map(maps[m], s.snap.maps[m], s, opt);
    }
  }
  std::vector<HeadMetrics> out;
  for (const MapAcc& acc : maps)
    for (int64_t h = 0; h < acc.heads; ++h) out.push_back(finish_head(acc, h, opt));
  return out;
}

nlohmann::json heads_to_json(const std::vector<HeadMetrics>& heads) {
  nlohmann::json list = nlohmann::json::array();
  for (const HeadMetrics& m : heads) {
    nlohmann::json rels = nlohmann::json::array();
    for (const RelationScore& r : m.relations)
      rels.push_back({{"relation", r.relation}, {"direction", r.direction}, {"instances", r.instances},
                      {"accuracy", finite_or_null(r.accuracy)}, {"baseline", finite_or_null(r.baseline)},
                      {"baseline_offset", r.baseline_offset}, {"syntactic", r.syntactic}});
    list.push_back({{"name", m.name}, {"layer", m.layer}, {"head", m.head}, {"kind", m.kind}, {"roles", m.roles},
                    {"confidence", finite_or_null(m.confidence)}, {"rows", m.rows}, {"offset", m.offset},
                    {"offset_share", finite_or_null(m.offset_share)},
                    {"offset_share_all", finite_or_null(m.offset_share_all)}, {"offset_rows", m.offset_rows},
                    {"positional", m.positional}, {"eos", finite_or_null(m.eos)}, {"first", finite_or_null(m.first)}, {"relations", rels},
                    {"rare", finite_or_null(m.rare)}, {"rare_chance", finite_or_null(m.rare_chance)}, {"alignment", finite_or_null(m.alignment)},
                    {"alignment_reading", finite_or_null(m.alignment_reading)}, {"delta_loss", finite_or_null(m.delta_loss)},
                    {"delta_bleu", finite_or_null(m.delta_bleu)}, {"pruned", m.pruned}});
  }
  return {{"heads", list}};
}

}  // namespace qs::apps
