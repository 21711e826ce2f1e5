// Corpus BLEU as sacreBLEU defines it (Papineni et al. 2002; Post 2018): the 13a tokenizer,
// n-gram orders 1..4, clipped n-gram counts summed over the corpus, the geometric mean of
// the four precisions, and the brevity penalty exp(1 - r / c) when the hypothesis length c
// is below the (closest) reference length r. Scores are in [0, 100].
//
// Smoothing: "none" (the default here; a zero precision makes the score 0) or "exp"
// (sacreBLEU's default and mteval's: the n-th zero precision becomes 1 / (2^k total_n)).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace qs::text {

// sacreBLEU's 13a tokenizer (mteval-v13a): unescapes &quot; &amp; &lt; &gt;, splits ASCII
// punctuation off, and periods/commas except next to digits, then splits on whitespace.
// Works on bytes, which gives the same tokens as the Python original on UTF-8 text, except
// that only ASCII whitespace separates tokens (Python's str.split also splits on e.g. NBSP).
std::vector<std::string> tokenize_13a(const std::string& line);

struct BleuScore {
  double score = 0;                      // 0..100
  std::array<double, 4> precisions{};    // 0..100, after smoothing
  std::array<int64_t, 4> correct{}, total{};
  double bp = 0;                         // brevity penalty
  int64_t sys_len = 0, ref_len = 0;
  std::string to_string() const;  // "BLEU = 34.25 67.1/41.2/27.0/18.3 (BP = 1.000 ratio = 1.02 hyp_len = ... ref_len = ...)"
};

// hyps[i] against refs[r][i] for every reference stream r (each as long as hyps). Errors
// on mismatched lengths, no reference streams, or an unknown smoothing / tokenizer name.
// tokenize: "13a" or "none" (split on whitespace only).
BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs,
                      const std::string& smooth = "none", const std::string& tokenize = "13a");

}  // namespace qs::text
