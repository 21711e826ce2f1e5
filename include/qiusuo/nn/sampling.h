// Next-token sampling from logits (the decoding loop of a language model), as Hugging
// Face's generate() applies its warpers: temperature, then top-k, then top-p (nucleus).
#pragma once
#include <cstdint>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::nn {

struct SamplingOptions {
  double temperature = 1.0;  // >= 0; 0 = greedy (argmax, ties to the lowest id)
  int64_t top_k = 0;         // >= 0; keep the k most likely tokens (0 = all)
  double top_p = 1.0;        // in (0, 1]; keep the smallest set of the most likely tokens whose
                             // probability reaches top_p (always at least one token)
};

// One token id from logits [V] (f32 or f64; -inf marks a forbidden token). Probabilities
// are softmax(logits / temperature) over the kept tokens, renormalised; equal logits rank
// by the lower id. Sampling draws exactly one gen.next_double() per call (greedy draws
// none), so a seeded generator reproduces a sequence.
// Errors: logits not 1-d floating or empty, NaN or +inf logits, all logits -inf,
// temperature < 0 or not finite, top_k < 0, top_p outside (0, 1].
int64_t sample_token(const Tensor& logits, const SamplingOptions& opts, Generator& gen);
// One token per row of logits [b, V], rows in order, all drawing from gen.
std::vector<int64_t> sample_tokens(const Tensor& logits, const SamplingOptions& opts, Generator& gen);

}  // namespace qs::nn
