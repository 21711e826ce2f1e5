// Shared by the LM and encoder-decoder attention captures (src/apps/attention_view*.cpp).
#pragma once
#include <vector>

#include "qiusuo/apps/attention_view.h"
#include "qiusuo/nn/transformer.h"

namespace qs::apps {

// Every record of `cap` as a map of batch item 0: its name, kind ("cross" when the name
// says so, "self" for encoder layers, else "causal"), layer index and f32 weights [H, Tq, Tk].
std::vector<AttentionMap> attention_maps(const nn::AttentionCapture& cap);

}  // namespace qs::apps
