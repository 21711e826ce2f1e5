// Data for the translation jobs: word vocabularies, the splits, padded batches.
#include <algorithm>
#include <map>

#include "apps/mt_internal.h"
#include "qiusuo/error.h"
#include "qiusuo/ops.h"

namespace qs::apps {

namespace {
const char* const kSpecials[] = {"<pad>", "<unk>", "<bos>", "<eos>"};
}

WordVocab::WordVocab() {
  for (const char* s : kSpecials) index_[s] = int64_t(words_.size()), words_.push_back(s);
}

WordVocab WordVocab::build(const std::vector<std::vector<std::string>>& sentences, int64_t min_count) {
  QS_CHECK(min_count >= 1, "WordVocab: min_count must be >= 1, got {}", min_count);
  std::map<std::string, int64_t> count;
  for (const auto& s : sentences)
    for (const auto& w : s) ++count[w];
  std::vector<std::pair<std::string, int64_t>> sorted(count.begin(), count.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.second > b.second; });
  WordVocab v;
  for (auto& [w, n] : sorted)
    if (n >= min_count && !v.index_.count(w)) v.index_[w] = int64_t(v.words_.size()), v.words_.push_back(w);
  return v;
}

int64_t WordVocab::id(const std::string& w) const {
  auto it = index_.find(w);
  return it == index_.end() ? kUnk : it->second;
}

const std::string& WordVocab::word(int64_t id) const {
  QS_CHECK(id >= 0 && id < size(), "WordVocab: id {} outside [0, {})", id, size());
  return words_[size_t(id)];
}

std::vector<int64_t> WordVocab::encode(const std::vector<std::string>& words) const {
  std::vector<int64_t> out;
  for (const auto& w : words) out.push_back(id(w));
  return out;
}

std::vector<std::string> WordVocab::decode(const std::vector<int64_t>& ids) const {
  std::vector<std::string> out;
  for (int64_t i : ids)
    if (i != kPad && i != kBos && i != kEos) out.push_back(word(i));
  return out;
}

nlohmann::json WordVocab::to_json() const { return words_; }

WordVocab WordVocab::from_json(const nlohmann::json& j) {
  QS_CHECK(j.is_array() && j.size() >= 4, "WordVocab: expected a JSON list of at least the 4 special words");
  WordVocab v;
  for (size_t i = 0; i < 4; ++i)
    QS_CHECK(j[i] == kSpecials[i], "WordVocab: entry {} must be {}, found {}", i, kSpecials[i], j[i].dump());
  for (size_t i = 4; i < j.size(); ++i) {
    const std::string w = j[i].get<std::string>();
    QS_CHECK(!v.index_.count(w), "WordVocab: the word '{}' occurs twice", w);
    v.index_[w] = int64_t(v.words_.size()), v.words_.push_back(w);
  }
  return v;
}

nlohmann::json synthetic_options_json(const text::SyntheticMtOptions& o) {
  return {{"seed", o.seed},         {"lexicon_seed", o.lexicon_seed}, {"n_train", o.n_train},
          {"n_valid", o.n_valid},   {"n_test", o.n_test},             {"n_nouns", o.n_nouns},
          {"n_verbs_tr", o.n_verbs_tr}, {"n_verbs_intr", o.n_verbs_intr}, {"n_adjectives", o.n_adjectives},
          {"n_adverbs", o.n_adverbs}, {"zipf", o.zipf},               {"p_pronoun", o.p_pronoun},
          {"p_relcl", o.p_relcl},   {"p_transitive", o.p_transitive}, {"p_adverb", o.p_adverb},
          {"p_pp", o.p_pp},         {"p_adjective", o.p_adjective},   {"p_plural", o.p_plural},
          {"n_homographs", o.n_homographs}};
}

text::SyntheticMtOptions synthetic_options_from_json(const nlohmann::json& j) {
  text::SyntheticMtOptions o;
  const nlohmann::json known = synthetic_options_json(o);
  for (auto it = j.begin(); it != j.end(); ++it)
    QS_CHECK(known.contains(it.key()), "synthetic mt options: unknown key '{}'", it.key());
  auto rd = [&](const char* k, auto& v) {
    if (j.contains(k)) v = j.at(k).get<std::decay_t<decltype(v)>>();
  };
  rd("seed", o.seed), rd("lexicon_seed", o.lexicon_seed), rd("n_train", o.n_train), rd("n_valid", o.n_valid);
  rd("n_test", o.n_test), rd("n_nouns", o.n_nouns), rd("n_verbs_tr", o.n_verbs_tr), rd("n_verbs_intr", o.n_verbs_intr);
  rd("n_adjectives", o.n_adjectives), rd("n_adverbs", o.n_adverbs), rd("zipf", o.zipf), rd("p_pronoun", o.p_pronoun);
  rd("p_relcl", o.p_relcl), rd("p_transitive", o.p_transitive), rd("p_adverb", o.p_adverb), rd("p_pp", o.p_pp);
  rd("p_adjective", o.p_adjective), rd("p_plural", o.p_plural);
  // Checkpoints from before the homographs have no key: their corpus had none.
  o.n_homographs = j.value("n_homographs", int64_t(0));
  o.validate();
  return o;
}

nlohmann::json MtDataOptions::to_json() const {
  nlohmann::json j = {{"data", data}};
  if (data == "synthetic")
    j["synthetic"] = synthetic_options_json(synthetic);
  else
    j["src_file"] = src_file, j["tgt_file"] = tgt_file;
  return j;
}

MtDataOptions MtDataOptions::from_json(const nlohmann::json& j) {
  MtDataOptions o;
  o.data = j.value("data", std::string("synthetic"));
  if (j.contains("synthetic")) o.synthetic = synthetic_options_from_json(j["synthetic"]);
  o.src_file = j.value("src_file", std::string());
  o.tgt_file = j.value("tgt_file", std::string());
  return o;
}

text::MtSplits load_mt_data(const MtDataOptions& o) {
  if (o.data == "synthetic") return text::synthetic_mt_splits(o.synthetic);
  QS_CHECK(o.data == "files", "mt data: unknown source '{}'; expected synthetic or files (--src FILE --tgt FILE)",
           o.data);
  QS_CHECK(!o.src_file.empty() && !o.tgt_file.empty(), "mt data: a real corpus needs both --src and --tgt files");
  std::vector<text::ParallelExample> all = text::read_parallel_text(o.src_file, o.tgt_file);
  QS_CHECK(all.size() >= 20, "mt data: {} has {} sentence pairs; at least 20 are needed (every 20th line goes to "
           "validation, the next to test)", o.src_file, all.size());
  text::MtSplits s;
  for (size_t i = 0; i < all.size(); ++i)
    (i % 20 == 18 ? s.valid : i % 20 == 19 ? s.test : s.train).push_back(std::move(all[i]));
  return s;
}

std::vector<MtIds> encode_pairs(const std::vector<text::ParallelExample>& pairs, const WordVocab& src,
                                const WordVocab& tgt) {
  std::vector<MtIds> out;
  out.reserve(pairs.size());
  for (const auto& p : pairs) {
    MtIds m{src.encode(p.src), tgt.encode(p.tgt)};
    m.src.push_back(WordVocab::kEos);
    out.push_back(std::move(m));
  }
  return out;
}

MtBatch make_batch(const std::vector<MtIds>& data, const std::vector<size_t>& rows) {
  size_t s = 0, t = 0;
  for (size_t r : rows) s = std::max(s, data[r].src.size()), t = std::max(t, data[r].tgt.size() + 1);
  const size_t b = rows.size();
  std::vector<double> src(b * s, double(WordVocab::kPad)), in(b * t, double(WordVocab::kPad)),
      out(b * t, double(WordVocab::kPad));
  MtBatch batch;
  for (size_t i = 0; i < b; ++i) {
    const MtIds& m = data[rows[i]];
    std::copy(m.src.begin(), m.src.end(), src.begin() + long(i * s));
    in[i * t] = double(WordVocab::kBos);
    for (size_t j = 0; j < m.tgt.size(); ++j) in[i * t + j + 1] = out[i * t + j] = double(m.tgt[j]);
    out[i * t + m.tgt.size()] = double(WordVocab::kEos);
    batch.tokens += int64_t(m.tgt.size()) + 1;
  }
  batch.src = from_vector(src, {int64_t(b), int64_t(s)}, DType::i64);
  batch.tgt_in = from_vector(in, {int64_t(b), int64_t(t)}, DType::i64);
  batch.tgt_out = from_vector(out, {int64_t(b), int64_t(t)}, DType::i64);
  return batch;
}

}  // namespace qs::apps
