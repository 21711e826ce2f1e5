// The synthetic translation task: lexicons, the grammar, and the splits. One dependency
// tree per sentence pair, linearised twice (SVO source, SOV target), so the parses and the
// alignment follow from the construction instead of being inferred.
#include "qiusuo/text/synthetic_mt.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_set>

#include <fmt/core.h>

#include "qiusuo/error.h"
#include "text/synthetic_mt_words.h"

namespace qs::text {

namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// The state of stream `stream` of seed `seed`: hashed, so nearby seeds give unrelated streams.
uint64_t stream_state(uint64_t seed, uint64_t stream) {
  uint64_t a = seed, b = stream ^ 0x6a09e667f3bcc909ull;
  return splitmix(a) ^ (splitmix(b) * 0x9e3779b97f4a7c15ull);
}
double uniform(uint64_t& s) { return double(splitmix(s) >> 11) * 0x1.0p-53; }
size_t pick(uint64_t& s, size_t n) { return size_t(splitmix(s) % n); }

using namespace synthetic_words;  // the word lists (synthetic_mt_words.h)

std::string s_form(const std::string& w) {  // "dog" -> "dogs", "watch" -> "watches"
  auto ends = [&](const char* t) { return w.size() >= std::strlen(t) && w.compare(w.size() - std::strlen(t), std::string::npos, t) == 0; };
  return (ends("s") || ends("x") || ends("z") || ends("ch") || ends("sh")) ? w + "es" : w + "s";
}

std::string source_pseudo_word(uint64_t& s) {
  static const char* on[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t",
                             "v", "w", "br", "cl", "dr", "fl", "gr", "pl", "st", "tr", "sk", "sn"};
  static const char* nu[] = {"a", "e", "i", "o", "u", "ai", "ea", "oo", "ou"};
  static const char* co[] = {"", "", "n", "r", "t", "m", "l", "nd", "rk", "g", "p"};
  const size_t syl = 1 + pick(s, 3);
  std::string w;
  for (size_t i = 0; i < syl; ++i) w += std::string(on[pick(s, 24)]) + nu[pick(s, 9)];
  return w + co[pick(s, 11)];
}
std::string target_pseudo_word(uint64_t& s) {
  static const char* on[] = {"k", "s", "t", "n", "h", "m", "y", "r", "w", "g", "z", "d", "b", "p", ""};
  static const char* nu[] = {"a", "i", "u", "e", "o"};
  const size_t syl = 2 + pick(s, 2);
  std::string w;
  for (size_t i = 0; i < syl; ++i) w += std::string(on[pick(s, 15)]) + nu[pick(s, 5)];
  return pick(s, 4) == 0 ? w + "n" : w;
}

// Unique word forms on both sides (a root, its -s form, its target root and plural). The one
// deliberate exception: a homograph's source form, taken first by a noun, may be taken once
// more by a verb seed (share_src); its target words stay distinct.
struct FormRegistry {
  std::set<std::string> src, tgt, shared;
  FormRegistry() {
    for (auto* list : {&kDetSg, &kDetPl, &kPreps})
      for (auto& [s, t] : *list) src.insert(s), tgt.insert(t);
    for (const Pronoun& p : kPronouns) src.insert(p.src), tgt.insert(p.tgt);
    src.insert("that");
    for (const char* t : {kCaseSubj, kCaseObj, kRelMarker, "mu", "su", "mira", "sura"}) tgt.insert(t);
  }
  bool take_src(const std::string& w) {
    if (src.count(w) || src.count(s_form(w))) return false;
    src.insert(w), src.insert(s_form(w));
    return true;
  }
  bool share_src(const std::string& w) { return src.count(w) && shared.insert(w).second; }
  bool take_tgt(const std::string& w) {
    if (w.size() < 4 || tgt.count(w) || tgt.count(w + kPluralSuffix)) return false;
    tgt.insert(w), tgt.insert(w + kPluralSuffix);
    return true;
  }
};

std::vector<SyntheticMtLanguage::Entry> make_class(const std::vector<std::string>& seed_words, int64_t n,
                                                   const std::string& suffix, FormRegistry& reg, uint64_t& st,
                                                   const std::set<std::string>& may_share = {}) {
  std::vector<SyntheticMtLanguage::Entry> out;
  auto add_src = [&](const std::string& w) {
    std::string t;
    do t = target_pseudo_word(st);
    while (!reg.take_tgt(t));
    out.push_back({w, t});
  };
  for (const std::string& w : seed_words) {
    if (int64_t(out.size()) >= n) break;
    if (may_share.count(w) ? reg.share_src(w) || reg.take_src(w) : reg.take_src(w)) add_src(w);
  }
  while (int64_t(out.size()) < n) {
    std::string w = source_pseudo_word(st) + suffix;
    if (reg.take_src(w)) add_src(w);
  }
  return out;
}

size_t pick_weighted(uint64_t& s, const std::vector<double>& p) {
  double u = uniform(s), acc = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if ((acc += p[i]) > u) return i;
  return p.size() - 1;
}

// One tree, two linearisations.
struct Node {
  std::string src, tgt, src_tag, tgt_tag, src_rel, tgt_rel;
  int head = -1;  // node index
};
struct Tree {
  std::vector<Node> nodes;
  int add(Node n) {
    nodes.push_back(std::move(n));
    return int(nodes.size()) - 1;
  }
};
void append(std::vector<int>& a, const std::vector<int>& b) { a.insert(a.end(), b.begin(), b.end()); }

// The homographs this lexicon makes: the first n_homographs of kHomographs whose verb is inside
// the verb classes (a verb seed of rank r exists when the class has more than r words).
std::set<std::string> chosen_homographs(const SyntheticMtOptions& opt) {
  auto within = [](const std::vector<std::string>& seeds, const std::string& w, int64_t n) {
    auto it = std::find(seeds.begin(), seeds.end(), w);
    return it != seeds.end() && it - seeds.begin() < n;
  };
  std::set<std::string> out;
  for (int64_t i = 0; i < opt.n_homographs; ++i) {
    const std::string& h = kHomographs[size_t(i)];
    if (within(kVerbsTr, h, opt.n_verbs_tr) || within(kVerbsIntr, h, opt.n_verbs_intr)) out.insert(h);
  }
  return out;
}

}  // namespace

void SyntheticMtOptions::validate() const {
  QS_CHECK(n_train >= 0 && n_valid >= 0 && n_test >= 0, "synthetic mt: split sizes must be >= 0, got {}/{}/{}",
           n_train, n_valid, n_test);
  QS_CHECK(n_nouns > 0 && n_verbs_tr > 0 && n_verbs_intr > 0 && n_adjectives > 0 && n_adverbs > 0,
           "synthetic mt: every lexicon class needs at least one word (nouns {}, verbs_tr {}, verbs_intr {}, "
           "adjectives {}, adverbs {})", n_nouns, n_verbs_tr, n_verbs_intr, n_adjectives, n_adverbs);
  QS_CHECK(n_homographs >= 0 && n_homographs <= int64_t(kHomographs.size()),
           "synthetic mt: n_homographs must be in [0, {}], got {}", kHomographs.size(), n_homographs);
  QS_CHECK(zipf >= 0 && zipf <= 4, "synthetic mt: zipf must be in [0, 4], got {}", zipf);
  for (auto [name, p] : {std::pair{"p_pronoun", p_pronoun}, {"p_relcl", p_relcl}, {"p_transitive", p_transitive},
                         {"p_adverb", p_adverb}, {"p_pp", p_pp}, {"p_adjective", p_adjective}, {"p_plural", p_plural}})
    QS_CHECK(p >= 0 && p <= 1, "synthetic mt: {} must be in [0, 1], got {}", name, p);
}

SyntheticMtLanguage::SyntheticMtLanguage(const SyntheticMtOptions& opt) : opt_(opt) {
  opt_.validate();
  uint64_t st = stream_state(opt.lexicon_seed, 0x1e71c0);
  FormRegistry reg;
  const std::set<std::string> homographs = chosen_homographs(opt);
  std::vector<std::string> noun_seeds;  // homographs at noun ranks 1, 3, 5, ...
  for (const std::string& h : kHomographs)
    if (homographs.count(h)) noun_seeds.push_back(h), noun_seeds.push_back(kNouns[noun_seeds.size() / 2]);
  for (size_t i = noun_seeds.size() / 2; i < kNouns.size(); ++i) noun_seeds.push_back(kNouns[i]);
  nouns_ = make_class(noun_seeds, opt.n_nouns, "", reg, st);
  verbs_tr_ = make_class(kVerbsTr, opt.n_verbs_tr, "", reg, st, homographs);
  verbs_intr_ = make_class(kVerbsIntr, opt.n_verbs_intr, "", reg, st, homographs);
  adjectives_ = make_class(kAdjectives, opt.n_adjectives, "", reg, st);
  adverbs_ = make_class(kAdverbs, opt.n_adverbs, "ly", reg, st);
  for (auto* cls : {&nouns_, &verbs_tr_, &verbs_intr_, &adjectives_, &adverbs_}) {
    std::vector<double> cdf;
    double acc = 0;
    for (size_t r = 0; r < cls->size(); ++r) cdf.push_back(acc += std::pow(double(r + 1), -opt.zipf));
    cdf_.push_back(std::move(cdf));
  }
  for (auto* cls : {&verbs_tr_, &verbs_intr_})
    for (auto& e : *cls) src_to_tgt_[e.src] = e.tgt, src_to_tgt_[s_form(e.src)] = e.tgt;
  for (auto& e : nouns_) {
    auto& m = src_to_tgt_.count(e.src) ? noun_reading_ : src_to_tgt_;  // a verb has the form: a homograph
    m[e.src] = e.tgt, m[s_form(e.src)] = e.tgt + kPluralSuffix;
  }
  for (auto* cls : {&adjectives_, &adverbs_})
    for (auto& e : *cls) src_to_tgt_[e.src] = e.tgt;
  for (auto* list : {&kDetSg, &kDetPl, &kPreps})
    for (auto& [s, t] : *list)
      if (!t.empty()) src_to_tgt_[s] = t;
  for (const Pronoun& p : kPronouns) src_to_tgt_[p.src] = p.tgt;
  src_to_tgt_["that"] = kRelMarker;
}

std::string SyntheticMtLanguage::translate_word(const std::string& w, const std::string& tag) const {
  if (auto h = noun_reading_.find(w); h != noun_reading_.end()) {
    if (tag.empty()) return {};
    if (tag.rfind("NOUN", 0) == 0) return h->second;
  }
  auto it = src_to_tgt_.find(w);
  return it == src_to_tgt_.end() ? std::string() : it->second;
}

std::vector<std::string> SyntheticMtLanguage::homograph_forms() const {
  std::vector<std::string> out;
  for (auto& [form, tgt] : noun_reading_) out.push_back(form);
  return out;
}

namespace {
size_t zipf_pick(uint64_t& s, const std::vector<double>& cdf) {
  double u = uniform(s) * cdf.back();
  return size_t(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
}
}  // namespace

// Samples one pair: builds the tree with both word orders, then reads off the parses.
struct SentenceBuilder {
  const SyntheticMtLanguage& L;
  uint64_t& st;
  Tree t;

  struct Phrase {
    int head;
    std::string feat;  // "sg" / "pl" for nouns, "1sg".."3pl" for pronouns
    std::vector<int> src, tgt;
  };
  enum Class { kNoun, kVerbTr, kVerbIntr, kAdj, kAdv };
  const SyntheticMtLanguage::Entry& word(Class c) const {
    const std::vector<SyntheticMtLanguage::Entry>* cls[] = {&L.nouns_, &L.verbs_tr_, &L.verbs_intr_, &L.adjectives_,
                                                             &L.adverbs_};
    return (*cls[c])[zipf_pick(st, L.cdf_[size_t(c)])];
  }
  bool chance(double p) { return uniform(st) < p; }
  int leaf(std::string s, std::string tg, std::string tag, std::string rel, int head) {
    return t.add({std::move(s), std::move(tg), tag, tag, rel, rel, head});
  }
  int particle(const std::string& tg, const std::string& rel, int head) {
    return t.add({"", tg, "", "PRT", "", rel, head});
  }

  // Det Adj{0..2} Noun [RelCl] (source); [RelCl] Noun Adj* Det (target).
  Phrase noun_phrase(bool allow_relcl, bool allow_pronoun) {
    Phrase p;
    if (allow_pronoun && chance(L.opt_.p_pronoun)) {
      const Pronoun& pr = kPronouns[pick(st, std::size(kPronouns))];
      p.head = leaf(pr.src, pr.tgt, std::string("PRON:") + pr.feat, "", -1);
      p.feat = pr.feat;
      p.src = p.tgt = {p.head};
      return p;
    }
    const bool plural = chance(L.opt_.p_plural);
    p.feat = plural ? "pl" : "sg";
    const auto& n = word(kNoun);
    p.head = leaf(plural ? s_form(n.src) : n.src, plural ? n.tgt + kPluralSuffix : n.tgt,
                  std::string("NOUN:") + p.feat, "", -1);
    const auto& dets = plural ? kDetPl : kDetSg;
    const auto& det = dets[pick_weighted(st, plural ? kDetPlP : kDetSgP)];
    const int d = leaf(det.first, det.second, "DET", "det", p.head);
    std::vector<int> adjs;
    while (adjs.size() < 2 && chance(L.opt_.p_adjective)) {
      const auto& a = word(kAdj);
      adjs.push_back(leaf(a.src, a.tgt, "ADJ", "amod", p.head));
    }
    Phrase rel;
    if (allow_relcl && chance(L.opt_.p_relcl)) rel = relative_clause(p);
    p.src = {d};
    append(p.src, adjs);
    p.src.push_back(p.head);
    append(p.src, rel.src);
    p.tgt = rel.tgt;
    p.tgt.push_back(p.head);
    append(p.tgt, adjs);
    if (!det.second.empty()) p.tgt.push_back(d);
    return p;
  }

  // "that" Verb [Obj] (source); [Obj ro] Verb "ta" (target). The verb agrees with the noun.
  Phrase relative_clause(const Phrase& noun) {
    Phrase r;
    const bool tr = chance(L.opt_.p_transitive);
    const auto& v = word(tr ? kVerbTr : kVerbIntr);
    const bool sg = noun.feat == "sg";
    r.head = leaf(sg ? s_form(v.src) : v.src, v.tgt, sg ? "VERB:3sg" : "VERB:3pl", "relcl", noun.head);
    const int that = t.add({"that", kRelMarker, "PRON:rel", "PRT", "nsubj", "mark", r.head});
    r.src = {that, r.head};
    if (tr) {
      Phrase o = noun_phrase(false, false);
      t.nodes[size_t(o.head)].src_rel = t.nodes[size_t(o.head)].tgt_rel = "dobj";
      t.nodes[size_t(o.head)].head = r.head;
      append(r.src, o.src);
      r.tgt = o.tgt;
      r.tgt.push_back(particle(kCaseObj, "case", o.head));
    }
    r.tgt.push_back(r.head);
    r.tgt.push_back(that);
    return r;
  }

  void attach(const Phrase& p, const char* rel, int head) {
    Node& n = t.nodes[size_t(p.head)];
    n.src_rel = n.tgt_rel = rel;
    n.head = head;
  }

  // Subj Verb [Obj] [Adv] [Prep NP] (source); Subj ka [NP postp] [Obj ro] [Adv] Verb AGR (target).
  void clause(std::vector<int>& src, std::vector<int>& tgt) {
    Phrase subj = noun_phrase(true, true);
    const std::string agr = subj.feat == "sg" ? "3sg" : subj.feat == "pl" ? "3pl" : subj.feat;
    const bool tr = chance(L.opt_.p_transitive);
    const auto& v = word(tr ? kVerbTr : kVerbIntr);
    const int verb = leaf(agr == "3sg" ? s_form(v.src) : v.src, v.tgt, "VERB:" + agr, "root", -1);
    attach(subj, "nsubj", verb);
    src = subj.src;
    src.push_back(verb);
    tgt = subj.tgt;
    tgt.push_back(particle(kCaseSubj, "case", subj.head));
    std::vector<int> obj_t, adv_t, pp_t;
    if (tr) {
      Phrase obj = noun_phrase(true, false);
      attach(obj, "dobj", verb);
      append(src, obj.src);
      obj_t = obj.tgt;
      obj_t.push_back(particle(kCaseObj, "case", obj.head));
    }
    if (chance(L.opt_.p_adverb)) {
      const auto& a = word(kAdv);
      int adv = leaf(a.src, a.tgt, "ADV", "advmod", verb);
      src.push_back(adv), adv_t.push_back(adv);
    }
    if (chance(L.opt_.p_pp)) {
      const auto& pr = kPreps[pick(st, kPreps.size())];
      int prep = leaf(pr.first, pr.second, "ADP", "prep", verb);
      Phrase obj = noun_phrase(false, false);
      attach(obj, "pobj", prep);
      src.push_back(prep);
      append(src, obj.src);
      pp_t = obj.tgt;
      pp_t.push_back(prep);
    }
    append(tgt, pp_t);
    append(tgt, obj_t);
    append(tgt, adv_t);
    tgt.push_back(verb);
    tgt.push_back(particle(agreement_particle(agr), "agr", verb));
  }

  ParallelExample build() {
    std::vector<int> src, tgt;
    clause(src, tgt);
    std::vector<int> src_pos(t.nodes.size(), -1), tgt_pos(t.nodes.size(), -1);
    for (size_t i = 0; i < src.size(); ++i) src_pos[size_t(src[i])] = int(i);
    for (size_t i = 0; i < tgt.size(); ++i) tgt_pos[size_t(tgt[i])] = int(i);
    ParallelExample ex;
    for (int id : src) {
      const Node& n = t.nodes[size_t(id)];
      ex.src.push_back(n.src), ex.src_tag.push_back(n.src_tag), ex.src_rel.push_back(n.src_rel);
      ex.src_head.push_back(n.head < 0 ? -1 : src_pos[size_t(n.head)]);
    }
    for (int id : tgt) {
      const Node& n = t.nodes[size_t(id)];
      ex.tgt.push_back(n.tgt), ex.tgt_tag.push_back(n.tgt_tag), ex.tgt_rel.push_back(n.tgt_rel);
      ex.tgt_head.push_back(n.head < 0 ? -1 : tgt_pos[size_t(n.head)]);
      ex.align.push_back(n.src.empty() ? -1 : src_pos[size_t(id)]);
    }
    return ex;
  }
};

ParallelExample SyntheticMtLanguage::sample(uint64_t& state) const {
  SentenceBuilder b{*this, state, {}};
  return b.build();
}

std::vector<ParallelExample> generate_synthetic_mt(const SyntheticMtOptions& opt, int64_t count, uint64_t stream) {
  QS_CHECK(count >= 0, "generate_synthetic_mt: count must be >= 0, got {}", count);
  SyntheticMtLanguage lang(opt);
  uint64_t st = stream_state(opt.seed, stream);
  std::vector<ParallelExample> out;
  out.reserve(size_t(count));
  for (int64_t i = 0; i < count; ++i) out.push_back(lang.sample(st));
  return out;
}

namespace {
std::string joined(const std::vector<std::string>& w) {
  std::string s;
  for (auto& x : w) s += (s.empty() ? "" : " ") + x;
  return s;
}
}  // namespace

MtSplits synthetic_mt_splits(const SyntheticMtOptions& opt) {
  MtSplits s;
  s.train = generate_synthetic_mt(opt, opt.n_train, 0);
  std::unordered_set<std::string> seen;
  for (auto& e : s.train) seen.insert(joined(e.src));
  SyntheticMtLanguage lang(opt);
  auto held_out = [&](int64_t n, uint64_t stream) {
    std::vector<ParallelExample> out;
    uint64_t st = stream_state(opt.seed, stream);
    for (int64_t tries = 0; int64_t(out.size()) < n; ++tries) {
      QS_CHECK(tries < 100 * n + 1000, "synthetic mt: could not draw {} held-out sentences unseen in training; the "
               "language is too small for the training split (hint: more lexicon words or fewer --train pairs)", n);
      ParallelExample e = lang.sample(st);
      if (seen.insert(joined(e.src)).second) out.push_back(std::move(e));
    }
    return out;
  };
  s.valid = held_out(opt.n_valid, 1);
  s.test = held_out(opt.n_test, 2);
  return s;
}

}  // namespace qs::text
