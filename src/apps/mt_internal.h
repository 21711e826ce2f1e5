// Pieces the translation jobs share (src/apps/mt_*.cpp): checkpoint identity, batches of
// padded sentence pairs, and the JSON of the synthetic-data options.
#pragma once
#include <string>
#include <vector>

#include "qiusuo/apps/mt.h"
#include "qiusuo/io/checkpoint.h"

namespace qs::apps {

inline constexpr const char* kMtCheckpointKind = "qiusuo-mt";

// Errors naming the file when `ck` is not a translation checkpoint (saying what it is).
void check_mt_checkpoint(const io::Checkpoint& ck, const std::string& path);

// One sentence pair as ids: the source with <eos> appended, the target without specials.
struct MtIds {
  std::vector<int64_t> src, tgt;
};
std::vector<MtIds> encode_pairs(const std::vector<text::ParallelExample>& pairs, const WordVocab& src,
                                const WordVocab& tgt);

// A padded batch: src [B, S]; tgt_in [B, T] = <bos> y_1 .. y_n; tgt_out [B, T] = y_1 .. y_n
// <eos> (pad elsewhere, which the loss ignores).
struct MtBatch {
  Tensor src, tgt_in, tgt_out;
  int64_t tokens = 0;  // non-pad target tokens
};
MtBatch make_batch(const std::vector<MtIds>& data, const std::vector<size_t>& rows);

nlohmann::json synthetic_options_json(const text::SyntheticMtOptions& o);
text::SyntheticMtOptions synthetic_options_from_json(const nlohmann::json& j);

}  // namespace qs::apps
