// Attention of a trained model on one text, ready to draw: the tokens as readable
// labels and every captured attention map, in layer order. The common input of the
// heatmaps (`qiusuo attention`), the dynamic views, the viewer (`qiusuo serve`) and the
// head analysis (`qiusuo heads`).
//
//   apps::LoadedLm lm = apps::load_lm("run/final.safetensors");
//   apps::AttentionSnapshot s = apps::capture_attention(*lm.model, *lm.tokenizer, "In the beginning");
//   s.maps[0].weights;   // f32 [H, T, T] of layer 0, rows sum to 1 (causal: upper triangle 0)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::nn {
class TransformerLM;
class Seq2SeqTransformer;
}
namespace qs::text {
class Tokenizer;
}

namespace qs::apps {

struct AttentionMap {
  std::string name;  // the capture name: "blocks.3.attn" (LM); encoder-decoder models use
                     // "encoder.blocks.<i>.self_attn", "decoder.blocks.<i>.self_attn",
                     // "decoder.blocks.<i>.cross_attn"
  std::string kind;  // "causal" (decoder self-attention), "self" (encoder), "cross"
  int64_t layer = 0;
  Tensor weights;    // f32 [H, Tq, Tk], contiguous. Rows: queries; columns: keys.
                     // causal/self: keys are the queries' tokens; cross: the source tokens
};

struct AttentionSnapshot {
  std::vector<int32_t> ids;                 // the (target/LM) token ids
  std::vector<std::string> tokens;          // one display label per id (token_labels)
  std::vector<int32_t> source_ids;          // encoder-decoder: source ids; empty for an LM
  std::vector<std::string> source_tokens;   // labels of source_ids
  std::vector<AttentionMap> maps;           // in forward order (layer 0 first)
};

// A readable label per token: its bytes as UTF-8 where they form whole characters;
// bytes of a character split across tokens (and any invalid byte) as "\xNN"; a space as
// "␣", a newline as "⏎", a tab as "⇥", other control bytes as "\xNN". Never empty.
std::vector<std::string> token_labels(const text::Tokenizer& tok, const std::vector<int32_t>& ids);

// Runs the LM once on `text` (encoded with `tok`) under an nn::AttentionCapture, in eval
// mode and NoGrad, and returns every layer's weights (batch 1). `max_tokens` > 0 keeps
// only the first max_tokens tokens. Errors: empty text, more tokens than the model
// supports (it says how many and the limit).
AttentionSnapshot capture_attention(nn::TransformerLM& model, const text::Tokenizer& tok, const std::string& text,
                                    int64_t max_tokens = 0);
// The same for token ids given directly (e.g. a prompt and its generated continuation,
// which re-encoding the decoded text need not reproduce). Errors: no ids, more than the
// model supports.
AttentionSnapshot capture_attention_ids(nn::TransformerLM& model, const text::Tokenizer& tok,
                                        std::vector<int32_t> ids);

// Encoder-decoder models (src/apps/attention_view_mt.cpp): runs the model once with teacher
// forcing on a source and a target sentence, under an nn::AttentionCapture in eval mode and
// NoGrad. The source side (source_ids / source_tokens) is the encoder's input as given (for
// models of `qiusuo train mt`: the words' ids and <eos>); the target side (ids / tokens) is
// the decoder's input: <bos> (bos_id, label "<bos>") followed by target_ids, so query row i
// is the step that reads token i and predicts token i + 1 (target word j is predicted at
// row j; the last row predicts <eos>). Maps, in forward order: "self" (encoder, [H, S, S]),
// then per decoder layer "causal" ([H, T, T]) and "cross" ([H, T, S]); layer = block index.
// Errors: empty source, labels whose count differs from the ids, more tokens than max_len.
AttentionSnapshot capture_attention(nn::Seq2SeqTransformer& model, const std::vector<int32_t>& source_ids,
                                    const std::vector<std::string>& source_tokens,
                                    const std::vector<int32_t>& target_ids,
                                    const std::vector<std::string>& target_tokens, int32_t bos_id);

}  // namespace qs::apps
