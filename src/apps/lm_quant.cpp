// Quantised language models: static INT8 (PTQ / QAT) of a trained LM's block Linears, and the
// resident-memory measurement of a (quantised) LM checkpoint.
#include <chrono>
#include <filesystem>
#include <map>

#include "apps/lm_internal.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/quant/checkpoint.h"
#include "qiusuo/quant/convert.h"
#include "quant/module_util.h"
#include "util/progress.h"

namespace qs::apps {

namespace {

// Linear layers that stay float: outside the blocks (the LM head), or inside a parent whose
// forward calls a typed member pointer (the swap would not take effect).
std::vector<std::string> float_linears(const nn::Module& model) {
  std::map<std::string, std::string> types;
  for (auto& [n, m] : model.named_modules()) types[n] = m->type_name();
  std::vector<std::string> keep;
  for (auto& [n, m] : model.named_modules()) {
    if (!dynamic_cast<const nn::Linear*>(m.get())) continue;
    size_t dot = n.rfind('.');
    const std::string parent = dot == std::string::npos ? "" : n.substr(0, dot);
    if (n.rfind("blocks.", 0) != 0 || !quant::detail::forwards_through_child(types[parent])) keep.push_back(n);
  }
  return keep;
}

quant::QConfig lm_qconfig(const std::string& method, const std::vector<std::string>& keep) {
  quant::QConfig q = method == "qat" ? quant::QConfig::default_qat() : quant::QConfig::default_ptq();
  q.skip_unsupported = true;  // embeddings and norms stay f32
  q.skip_names = keep;
  return q;
}

int64_t train_qat(nn::TransformerLM& model, const text::TokenStream& train, const QuantizeLmOptions& o) {
  QS_CHECK(o.qat_steps >= 1, "quantize lm: --qat-steps must be at least 1, got {}", o.qat_steps);
  optim::AdamW opt(model.parameters(), o.qat_lr, {0.9, 0.95}, 1e-8, 0.0);
  Generator g(o.seed);
  const int64_t seq = model.config().max_seq_len, vocab = model.config().vocab_size;
  const auto obs_step = int64_t(0.75 * double(o.qat_steps));
  util::Progress progress("qat", o.qat_steps, "tok", 20);
  model.train();
  for (int64_t step = 0; step < o.qat_steps; ++step) {
    if (step == obs_step) quant::enable_observer(model, false);
    data::Batch b = train.sample(o.batch, seq, g);
    opt.zero_grad();
    Tensor loss = cross_entropy(model(b.x).reshape({-1, vocab}), b.y.reshape({-1}));
    add_aux_losses(model, loss).backward();
    opt.step();
    if (!o.quiet) progress.update(step + 1, loss.item(), b.x.numel());
  }
  quant::enable_observer(model, false);
  model.eval();
  return o.qat_steps;
}

}  // namespace

QuantizeLmResult quantize_lm(const QuantizeLmOptions& o) {
  QS_CHECK(o.method == "ptq" || o.method == "qat", "quantize lm: unknown method '{}' (expected ptq or qat)", o.method);
  QS_CHECK(o.calib_batches >= 1, "quantize lm: --calib-batches must be at least 1, got {}", o.calib_batches);
  auto t0 = std::chrono::steady_clock::now();
  io::Checkpoint ck = io::load_checkpoint(o.checkpoint);
  QS_CHECK(!quant::is_quantized_checkpoint(ck), "{}: is already quantised; quantise the float checkpoint", o.checkpoint);
  LoadedLm lm = load_lm(o.checkpoint);
  nn::TransformerLM& m = *lm.model;
  text::TextCorpus corpus = open_corpus(lm.train_config.value("corpus", std::string("kjv")));
  text::TokenStream train(corpus, text::Split::train, *lm.tokenizer), test(corpus, text::Split::test, *lm.tokenizer);
  const int64_t seq = m.config().max_seq_len;
  QuantizeLmResult r;
  r.fp32_perplexity = evaluate_lm(m, test, seq, 4, o.eval_windows).perplexity;
  r.fp32_weight_bytes = quant::model_weight_bytes(m);
  r.kept_f32 = float_linears(m);
  const quant::QConfig q = lm_qconfig(o.method, r.kept_f32);
  if (o.method == "ptq") {
    quant::prepare(m, q);
    Generator g(o.seed);
    std::vector<Tensor> batches;
    for (int64_t i = 0; i < o.calib_batches; ++i) batches.push_back(train.sample(o.batch, seq, g).x);
    quant::calibrate(m, batches);
  } else {
    m.train();
    quant::prepare_qat(m, q);
    r.qat_steps = train_qat(m, train, o);
  }
  quant::enable_observer(m, false);
  quant::enable_fake_quant(m, true);
  r.fake_quant_perplexity = evaluate_lm(m, test, seq, 4, o.eval_windows).perplexity;
  r.layers = quant::convert(m);
  r.int8_perplexity = evaluate_lm(m, test, seq, 4, o.eval_windows).perplexity;
  r.int8_weight_bytes = quant::model_weight_bytes(m);
  if (!o.out.empty()) {
    nlohmann::json extra = ck.extra.is_object() ? ck.extra : nlohmann::json::object();
    extra["quantize"] = {{"fp32_perplexity", r.fp32_perplexity}, {"int8_perplexity", r.int8_perplexity},
                         {"calib_batches", o.calib_batches}, {"qat_steps", r.qat_steps}};
    quant::save_quantized_checkpoint(o.out, m, ck.config, o.method, extra);
    r.file_bytes = int64_t(std::filesystem::file_size(o.out));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

ResidentGrowth lm_resident_growth(const std::string& path) {
  LoadedLm lm;
  return resident_growth([&] {
    lm = load_lm(path);
    const nn::LMConfig& c = lm.model->config();
    NoGrad ng;
    (*lm.model)(zeros({1, c.max_seq_len}, DType::i64));
  });
}

}  // namespace qs::apps
