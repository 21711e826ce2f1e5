// The curriculum's experiments: each trains and measures, then writes results.json, a
// Markdown table (results.md) and an SVG figure into its output folder.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qs::apps {

// `qiusuo experiment pe`: one language model per positional encoding (same size, data,
// seed, steps and tokens seen), trained at one length and evaluated at 0.5x, 1x, 2x and
// 4x that length on the same held-out tokens. Beyond the trained length RoPE is measured
// as it is (extrapolating) and with NTK-aware and YaRN scaling (factor = length / trained
// length, same weights); the learned table cannot go beyond it (reported as absent).
struct PeExperimentOptions {
  bool quick = false;            // CI size: tiny models, 128 tokens, a minute or two in all
  std::string out_dir;
  std::string corpus;            // empty: the King James Bible
  std::vector<std::string> encodings;  // empty: none sinusoidal learned shaw t5 rope alibi
  int64_t train_len = 0;         // 0: 1024 (quick: 128)
  int64_t steps = 0;             // 0: the size's default
  int64_t eval_tokens = 0;       // tokens evaluated per length (0: the size's default)
  int threads = 0;
  uint64_t seed = 0;
};

// Returns the results.json document (also written to out_dir).
nlohmann::json run_pe_experiment(const PeExperimentOptions& opt);

}  // namespace qs::apps
