// Using a trained LM: loading a checkpoint (model, tokenizer, corpus), perplexity and bits
// per byte over held-out windows, and text generation.
#include <cmath>

#include "apps/lm_internal.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/nn/sampling.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/checkpoint.h"

namespace qs::apps {

void check_lm_checkpoint(const io::Checkpoint& ck, const std::string& path) {
  if (ck.config.is_object() && ck.config.value("kind", "") == kLmCheckpointKind && ck.config.contains("model") &&
      ck.config.contains("train") && ck.extra.is_object() && ck.extra.contains("tokenizer"))
    return;
  std::string what = ck.config.is_object() && ck.config.contains("model") && ck.config["model"].is_string()
                         ? "a " + ck.config["model"].get<std::string>() + " checkpoint"
                         : "not a language-model checkpoint";
  throw Error(fmt::format("{}: {} (config: {}); hint: use a checkpoint written by 'qiusuo train lm'", path, what,
                          ck.config.dump().substr(0, 200)));
}

std::unique_ptr<text::Tokenizer> tokenizer_of(const io::Checkpoint& ck, const std::string& path) {
  check_lm_checkpoint(ck, path);
  try {
    return text::load_tokenizer(ck.extra["tokenizer"].dump());
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: the stored tokenizer is invalid: {}", path, e.what()));
  }
}

text::TextCorpus open_corpus(const std::string& corpus, const std::string& cache_dir) {
  if (corpus.empty() || corpus == "kjv")
    return cache_dir.empty() ? text::TextCorpus::kjv() : text::TextCorpus::kjv(cache_dir);
  return text::TextCorpus::from_path(corpus);
}

LoadedLm load_lm(const std::string& path, const nn::PositionConfig* override_pos) {
  io::Checkpoint ck = io::load_checkpoint(path);
  LoadedLm lm;
  lm.tokenizer = tokenizer_of(ck, path);
  nn::LMConfig cfg;
  try {
    cfg = nn::LMConfig::from_json(ck.config["model"]);
    if (override_pos) {
      cfg.pos.rope_scaling = override_pos->rope_scaling;
      cfg.pos.rope_factor = override_pos->rope_factor;
    }
    cfg.validate();
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: the model config cannot be used: {}", path, e.what()));
  }
  // At least the f32 embedding and two norm vectors per block (quantised checkpoints keep both in f32).
  io::check_config_fits(path, ck, 4.0 * double(cfg.d_model) * (double(cfg.vocab_size) + 2.0 * double(cfg.n_layers)));
  QS_CHECK(cfg.vocab_size == lm.tokenizer->vocab_size(),
           "{}: the model has {} tokens but its tokenizer {}; the checkpoint is inconsistent", path, cfg.vocab_size,
           lm.tokenizer->vocab_size());
  Generator gen(0);
  lm.model = std::make_unique<nn::TransformerLM>(cfg, nn::FfnFactory{}, gen);
  if (quant::is_quantized_checkpoint(ck)) {
    quant::load_quantized_checkpoint(path, ck, *lm.model);  // `qiusuo quantize`: rebuilds the quantised layers
  } else {
    try {
      lm.model->load_state_dict(ck.model);
    } catch (const std::exception& e) {
      throw Error(fmt::format("{}: the weights do not fit the model config: {}", path, e.what()));
    }
  }
  lm.model->eval();
  lm.train_config = ck.config["train"];
  lm.step = ck.step;
  return lm;
}

EvalLmResult evaluate_lm(nn::TransformerLM& model, const text::TokenStream& stream, int64_t seq, int64_t batch,
                         int64_t max_windows, bool bf16) {
  QS_CHECK(seq >= 1 && batch >= 1, "evaluate: --seq and --batch must be positive");
  NoGrad ng;
  nn::EvalScope eval_mode(model);
  int64_t windows = stream.num_windows(seq);
  if (max_windows > 0) windows = std::min(windows, max_windows);
  double nll = 0;
  for (int64_t w = 0; w < windows; w += batch) {
    data::Batch b = stream.windows(seq, w, std::min(batch, windows - w));
    Tensor logits;
    {
      Autocast ac(bf16);
      logits = model.forward(b.x);
    }
    nll += cross_entropy(logits.reshape({-1, logits.size(-1)}), b.y.reshape({-1}), -100, 0.0, "sum").item();
  }
  EvalLmResult r;
  r.windows = windows;
  r.seq = seq;
  r.tokens = windows * seq;
  r.loss = nll / double(r.tokens);
  r.perplexity = std::exp(r.loss);
  r.bits_per_byte = r.loss / (std::log(2.0) * stream.bytes_per_token());
  return r;
}

std::string generate_text(LoadedLm& lm, const std::string& prompt, const GenerateOptions& opt) {
  QS_CHECK(!prompt.empty(), "generate: the prompt is empty; hint: --prompt \"In the beginning\"");
  std::vector<int32_t> ids = lm.tokenizer->encode(prompt);
  std::vector<int64_t> p(ids.begin(), ids.end());
  const int64_t limit = lm.model->config().max_supported_length(), n = int64_t(p.size());
  QS_CHECK(opt.max_tokens >= 0, "generate: --max-tokens must not be negative, got {}", opt.max_tokens);
  QS_CHECK(opt.max_tokens <= limit - n,  // not n + max_tokens: that overflows for a huge --max-tokens
           "generate: the prompt ({} tokens) plus --max-tokens {} exceeds the {} tokens this model supports ({} position "
           "encoding, trained at {}); hint: --max-tokens {}{}",
           n, opt.max_tokens, limit, nn::position_encoding_name(lm.model->config().pos.kind),
           lm.model->config().max_seq_len, std::max<int64_t>(0, limit - n), n >= limit ? " with a shorter prompt" : "");
  nn::SamplingOptions so;
  so.temperature = opt.temperature;
  so.top_k = opt.top_k;
  so.top_p = opt.top_p;
  std::vector<int64_t> out = lm.model->generate(p, opt.max_tokens, nn::make_sampler(so), opt.seed, -1, opt.kv_cache);
  return lm.tokenizer->decode(std::vector<int32_t>(out.begin() + int64_t(p.size()), out.end()));
}

}  // namespace qs::apps
