// Corpus BLEU with sacreBLEU's definitions (sacrebleu/metrics/bleu.py, tokenizer_13a.py).
#include "qiusuo/text/bleu.h"

#include <cmath>
#include <map>

#include <fmt/core.h>

#include "qiusuo/error.h"

namespace qs::text {

namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

// The characters of 13a's first rule: [\{-\~\[-\` -\&\(-\+\:-\@\/].
bool is_13a_punct(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
         (c >= ':' && c <= '@') || c == '/';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_period_comma(char c) { return c == '.' || c == ','; }

// re.sub of a two-character pattern (a)(b) -> `repl(a, b)`: non-overlapping, left to right.
template <class Match, class Repl> std::string sub2(const std::string& s, Match match, Repl repl) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && match(s[i], s[i + 1])) {
      out += repl(s[i], s[i + 1]);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

std::vector<std::string> split_ascii_ws(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

using NgramCounts = std::map<std::vector<std::string>, int64_t>;
NgramCounts ngrams(const std::vector<std::string>& w) {
  NgramCounts c;
  for (size_t n = 1; n <= 4; ++n)
    for (size_t i = 0; i + n <= w.size(); ++i) ++c[std::vector<std::string>(w.begin() + long(i), w.begin() + long(i + n))];
  return c;
}

}  // namespace

std::vector<std::string> tokenize_13a(const std::string& text) {
  std::string line = text;
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  std::string s;
  for (char c : " " + line + " ") {
    if (is_13a_punct(c))
      s += std::string(" ") + c + " ";
    else
      s += c;
  }
  auto str = [](char c) { return std::string(1, c); };
  s = sub2(s, [](char a, char b) { return !is_digit(a) && is_period_comma(b); },
           [&](char a, char b) { return str(a) + " " + str(b) + " "; });
  s = sub2(s, [](char a, char b) { return is_period_comma(a) && !is_digit(b); },
           [&](char a, char b) { return " " + str(a) + " " + str(b); });
  s = sub2(s, [](char a, char b) { return is_digit(a) && b == '-'; },
           [&](char a, char b) { return str(a) + " " + str(b) + " "; });
  return split_ascii_ws(s);
}

std::string BleuScore::to_string() const {
  return fmt::format("BLEU = {:.2f} {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})",
                     score, precisions[0], precisions[1], precisions[2], precisions[3], bp,
                     ref_len > 0 ? double(sys_len) / double(ref_len) : 0.0, sys_len, ref_len);
}

BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs,
                      const std::string& smooth, const std::string& tokenize) {
  QS_CHECK(!refs.empty(), "corpus_bleu: no reference streams given");
  for (size_t r = 0; r < refs.size(); ++r)
    QS_CHECK(refs[r].size() == hyps.size(), "corpus_bleu: reference stream {} has {} sentences, the hypotheses {}", r,
             refs[r].size(), hyps.size());
  QS_CHECK(smooth == "none" || smooth == "exp", "corpus_bleu: unknown smoothing '{}'; expected none or exp", smooth);
  QS_CHECK(tokenize == "13a" || tokenize == "none", "corpus_bleu: unknown tokenizer '{}'; expected 13a or none",
           tokenize);
  auto tok = [&](const std::string& s) { return tokenize == "13a" ? tokenize_13a(s) : split_ascii_ws(s); };
  BleuScore b;
  for (size_t i = 0; i < hyps.size(); ++i) {
    const std::vector<std::string> h = tok(hyps[i]);
    NgramCounts max_ref;
    int64_t closest = -1;
    for (const auto& stream : refs) {
      const std::vector<std::string> r = tok(stream[i]);
      const int64_t len = int64_t(r.size()), diff = std::abs(int64_t(h.size()) - len);
      if (closest < 0 || diff < std::abs(int64_t(h.size()) - closest) ||
          (diff == std::abs(int64_t(h.size()) - closest) && len < closest))
        closest = len;
      for (auto& [g, n] : ngrams(r)) max_ref[g] = std::max(max_ref[g], n);
    }
    b.sys_len += int64_t(h.size());
    b.ref_len += closest;
    for (auto& [g, n] : ngrams(h)) {
      const size_t order = g.size() - 1;
      b.total[order] += n;
      auto it = max_ref.find(g);
      if (it != max_ref.end()) b.correct[order] += std::min(n, it->second);
    }
  }
  b.bp = b.sys_len >= b.ref_len ? 1.0 : b.sys_len > 0 ? std::exp(1.0 - double(b.ref_len) / double(b.sys_len)) : 0.0;
  double smooth_mteval = 1;
  for (size_t n = 0; n < 4; ++n) {
    if (b.total[n] == 0) break;
    if (b.correct[n] > 0)
      b.precisions[n] = 100.0 * double(b.correct[n]) / double(b.total[n]);
    else if (smooth == "exp")
      smooth_mteval *= 2, b.precisions[n] = 100.0 / (smooth_mteval * double(b.total[n]));
  }
  double log_sum = 0;
  for (double p : b.precisions) log_sum += p > 0 ? std::log(p) : -9999999999.0;  // sacreBLEU's _my_log
  b.score = b.bp * std::exp(log_sum / 4.0);
  return b;
}

}  // namespace qs::text
