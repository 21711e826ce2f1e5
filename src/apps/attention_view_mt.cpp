// The attention snapshot of an encoder-decoder model: encoder self-attention, decoder
// causal self-attention and cross-attention of one teacher-forced sentence pair.
#include "qiusuo/apps/attention_view.h"
#include "apps/attention_view_internal.h"
#include "qiusuo/apps/mt.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/seq2seq.h"
#include "qiusuo/ops.h"

namespace qs::apps {

namespace {
Tensor ids_tensor(const std::vector<int32_t>& ids) {
  return from_vector(std::vector<double>(ids.begin(), ids.end()), {1, int64_t(ids.size())}, DType::i64);
}
}  // namespace

AttentionSnapshot capture_attention(nn::Seq2SeqTransformer& model, const std::vector<int32_t>& source_ids,
                                    const std::vector<std::string>& source_tokens,
                                    const std::vector<int32_t>& target_ids,
                                    const std::vector<std::string>& target_tokens, int32_t bos_id) {
  QS_CHECK(!source_ids.empty(), "attention: the source sentence is empty");
  QS_CHECK(source_tokens.size() == source_ids.size() && target_tokens.size() == target_ids.size(),
           "attention: {} source labels for {} ids, {} target labels for {} ids; expected one label per id",
           source_tokens.size(), source_ids.size(), target_tokens.size(), target_ids.size());
  const int64_t limit = model.config().max_len;
  QS_CHECK(int64_t(source_ids.size()) <= limit && int64_t(target_ids.size()) + 1 <= limit,
           "attention: the source ({} tokens) or the target ({} tokens with <bos>) exceeds the model's max_len {}",
           source_ids.size(), target_ids.size() + 1, limit);
  AttentionSnapshot s;
  s.source_ids = source_ids;
  s.source_tokens = source_tokens;
  s.ids = {bos_id};
  s.ids.insert(s.ids.end(), target_ids.begin(), target_ids.end());
  s.tokens = {"<bos>"};
  s.tokens.insert(s.tokens.end(), target_tokens.begin(), target_tokens.end());
  nn::EvalScope eval_mode(model);
  NoGrad ng;
  nn::AttentionCapture cap;
  model.forward(ids_tensor(s.source_ids), ids_tensor(s.ids));
  s.maps = attention_maps(cap);
  return s;
}

AttentionSnapshot capture_attention(LoadedMt& mt, const std::vector<std::string>& source,
                                    const std::vector<std::string>& target) {
  QS_CHECK(!source.empty(), "attention: the source sentence is empty");
  const std::vector<std::string> tgt = target.empty() ? translate(mt, source) : target;
  std::vector<int32_t> sid, tid;
  for (const auto& w : source) sid.push_back(int32_t(mt.src_vocab.id(w)));
  sid.push_back(int32_t(WordVocab::kEos));
  for (const auto& w : tgt) tid.push_back(int32_t(mt.tgt_vocab.id(w)));
  std::vector<std::string> slab = source;
  slab.push_back("<eos>");
  return capture_attention(*mt.model, sid, slab, tid, tgt, int32_t(WordVocab::kBos));
}

}  // namespace qs::apps
