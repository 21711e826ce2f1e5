// The compass LM workloads, shaped exactly as shared/peers/torch_lm.py: a GPT with V=256,
// d=256, L=4, h=8, f=1024, LayerNorm, fused qkv with bias, RoPE (rotate-half, base 10000),
// causal softmax attention, GELU MLP, untied lm_head without bias; AdamW lr 3e-4.
//   lm_train_b8_n256, lm_train_b2_n1024   one AdamW step (tokens_per_s, step_ms)
//   lm_fwd_b1_n256_fp32, _bf16            NoGrad forward of 256 tokens (ms)
//   lm_fwd_b1_n256_int8dyn                the same with dynamic INT8 linears
//   lm_gen_b1_p256_g128                   greedy KV-cache decoding after a 256-token prompt (--weights int8|int4)
// The forward and generation workloads take --model CKPT[_Q] (a trained LM, float or quantised).
//   lm_train_mem_n1024, _n4096            peak memory of one step with 8192 tokens
#include <chrono>
#include <memory>
#include <string>

#include "bench/bench.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/memory.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/quant/checkpoint.h"
#include "qiusuo/quant/convert.h"

namespace qs::bench {

namespace {

constexpr int64_t kVocab = 256;

// The peer's GPT; max_seq_len is the longest sequence the workload runs (RoPE refuses more).
std::shared_ptr<nn::TransformerLM> peer_gpt(int64_t max_seq_len, Generator& g) {
  nn::LMConfig c;
  c.vocab_size = kVocab;
  c.d_model = 256;
  c.n_layers = 4;
  c.n_heads = 8;
  c.ffn_hidden = 1024;
  c.max_seq_len = max_seq_len;
  c.block = "gpt";
  c.bias = true;
  c.tie_weights = false;
  c.pos.kind = nn::PositionEncoding::rope;
  c.pos.rope_base = 10000.0;
  return std::make_shared<nn::TransformerLM>(c, nn::FfnFactory{}, g);
}

void train_step(nn::TransformerLM& m, optim::AdamW& opt, const Tensor& x, const Tensor& y) {
  opt.zero_grad();
  Tensor logits = m(x);
  Tensor loss = cross_entropy(logits.reshape({-1, kVocab}), y.reshape({-1}));
  loss.backward();
  opt.step();
}

std::vector<nlohmann::json> lm_train(const Options& o, int64_t b, int64_t n) {
  Generator g(0);
  auto mp = peer_gpt(n, g);
  nn::TransformerLM& m = *mp;
  m.train();
  optim::AdamW opt(m.parameters(), 3e-4);
  Tensor x = randint(0, kVocab, {b, n}, DType::i64, &g), y = randint(0, kVocab, {b, n}, DType::i64, &g);
  double s = time_per_call([&] { train_step(m, opt, x, y); }, 2, o.iters ? o.iters : 5);
  std::string name = "lm_train_b" + std::to_string(b) + "_n" + std::to_string(n);
  return {{{"workload", name}, {"tokens_per_s", double(b * n) / s}, {"step_ms", s * 1e3}}};
}

// --model CKPT: a trained LM (apps::load_lm, float or quantised) instead of the peer's random
// GPT. `quantize` ("" / "dynamic" / "weight-int8" / "weight-int4") is what the workload applies to
// a float model; a quantised file must already be quantised that way ("" accepts any method).
struct BenchLm {
  std::shared_ptr<nn::TransformerLM> model;
  std::string method = "fp32";  // the file's method, or the one applied here
  nlohmann::json fields = nlohmann::json::object();  // {"model": path, "method": ...} for the result row
};

BenchLm checkpoint_lm(const Options& o, const std::string& workload, const std::string& quantize, bool any_quantised) {
  io::Checkpoint ck = io::load_checkpoint(o.model);
  BenchLm r;
  r.model = std::shared_ptr<nn::TransformerLM>(apps::load_lm(o.model).model.release());
  if (quant::is_quantized_checkpoint(ck)) {
    r.method = ck.config["quantized"].value("method", "?");
    QS_CHECK(any_quantised || r.method == quantize,
             "bench {}: {} is quantised with method '{}'; this workload needs {}", workload, o.model, r.method,
             quantize.empty() ? "a float checkpoint" : "a float checkpoint or method '" + quantize + "'");
  } else if (!quantize.empty()) {
    quant::quantize_linears(*r.model, quantize, 128);
    r.method = quantize;
    r.fields["quantized_at_load"] = true;
  }
  r.fields["model"] = o.model;
  r.fields["method"] = r.method;
  return r;
}

BenchLm bench_lm(const Options& o, const std::string& workload, int64_t max_seq_len, const std::string& quantize,
                 bool any_quantised, Generator& g) {
  if (!o.model.empty()) return checkpoint_lm(o, workload, quantize, any_quantised);
  BenchLm r;
  r.model = peer_gpt(max_seq_len, g);
  if (!quantize.empty()) quant::quantize_linears(*r.model, quantize, 128), r.method = quantize;
  return r;
}

// int8dyn: every Linear of the blocks a DynamicQuantizedLinear (the LM head stays f32).
// With --model the forward covers min(256, the model's trained length) tokens ("tokens").
std::vector<nlohmann::json> lm_fwd(const Options& o, bool bf16, bool int8dyn = false) {
  const char* name = int8dyn ? "lm_fwd_b1_n256_int8dyn" : bf16 ? "lm_fwd_b1_n256_bf16" : "lm_fwd_b1_n256_fp32";
  Generator g(0);
  BenchLm lm = bench_lm(o, name, 256, int8dyn ? "dynamic" : "", false, g);
  nn::TransformerLM& m = *lm.model;
  m.eval();
  const int64_t n = std::min<int64_t>(256, m.config().max_seq_len);
  Tensor x = randint(0, m.config().vocab_size, {1, n}, DType::i64, &g);
  NoGrad ng;
  Autocast ac(bf16);  // nested in cmd_bench's scope: on for the _bf16 workload either way
  double s = time_per_call([&] { m(x); }, 2, o.iters ? o.iters : 10);
  nlohmann::json r = {{"workload", name}, {"ms", s * 1e3}, {"tokens", n}};
  r.update(lm.fields);
  return {r};
}

// One round: a fresh cache (--kv-cache: f16, llama.cpp's default, or f32), the prompt (prefill),
// then kNew greedy steps of one token each, as TransformerLM::generate does. Decode = the steps'
// time / kNew (llama-bench's t(pg) - t(pp) over the new tokens). Medians over the rounds;
// --profile covers the decoding steps only.
// --weights int8|int4: every Linear of the blocks weight-only quantised (int4 in groups of 128,
// q8 activations). --model: a float checkpoint (quantised here by --weights) or a quantised one
// (any method, no --weights); a model trained shorter than 384 tokens decodes min(128, L/2)
// tokens after a prompt of min(256, L - new) ("prompt", "new_tokens").
std::vector<nlohmann::json> lm_gen(const Options& o) {
  Generator g(0);
  const std::string quantize = o.weights.empty() ? "" : "weight-" + o.weights;
  BenchLm lm = bench_lm(o, "lm_gen_b1_p256_g128", 256 + 128, quantize, quantize.empty(), g);
  nn::TransformerLM& m = *lm.model;
  m.eval();
  const int64_t limit = m.config().max_supported_length();
  const int64_t kNew = std::min<int64_t>(128, limit / 2), kPrompt = std::min<int64_t>(256, limit - kNew);
  Tensor p = randint(0, m.config().vocab_size, {1, kPrompt}, DType::i64, &g);
  NoGrad ng;
  const int rounds = o.iters ? o.iters : 3;
  const DType kv = o.kv_cache == "f32" ? DType::f32 : DType::f16;
  std::vector<double> prefill, decode;
  for (int round = -1; round < rounds; ++round) {  // round -1 warms up
    nn::KVCacheSet cache = m.make_cache(kv);
    auto t0 = std::chrono::steady_clock::now();
    Tensor logits = m.forward_cached(p, cache);
    auto t1 = std::chrono::steady_clock::now();
    if (round >= 0 && profile_timed_calls()) profiler::start({}, /*keep=*/true);
    for (int64_t t = 0; t < kNew; ++t) {
      const int64_t next = int64_t(argmax(logits.select(0, 0).select(0, logits.size(1) - 1)).item());
      logits = m.forward_cached(full({1, 1}, double(next), DType::i64), cache);
    }
    if (round >= 0 && profile_timed_calls()) profiler::stop();
    auto t2 = std::chrono::steady_clock::now();
    if (round < 0) continue;
    prefill.push_back(std::chrono::duration<double>(t1 - t0).count());
    decode.push_back(std::chrono::duration<double>(t2 - t1).count() / double(kNew));
  }
  const double per_token = util::median(decode), pre = util::median(prefill);
  const std::string weights = lm.method == "fp32" ? "f32" : lm.method.rfind("weight-", 0) == 0 ? lm.method.substr(7)
                                                                                                : lm.method;
  // bytes one decoding step reads at least: every parameter (quantised ones as stored) and the
  // cache of the prompt and half the new tokens (on average), in the cache's dtype
  const int64_t weight_bytes = quant::model_weight_bytes(m);
  int64_t kv_per_token = 0;  // make_cache's dtypes: f16 only in MultiheadAttention layers
  for (auto& b : m.blocks())
    kv_per_token += b->attention().cache_bytes_per_token(
        dynamic_cast<const nn::MultiheadAttention*>(&b->attention()) ? kv : DType::f32);
  const double step_bytes = double(weight_bytes) + double(kv_per_token) * double(kPrompt + kNew / 2);
  nlohmann::json r = {{"workload", "lm_gen_b1_p256_g128"}, {"tokens_per_s", 1.0 / per_token},
                      {"weight_bytes", weight_bytes}, {"kv_bytes_per_token", kv_per_token},
                      {"step_gb_per_s", step_bytes / per_token / 1e9},
                      {"ms_per_token", per_token * 1e3},   {"prefill_ms", pre * 1e3},
                      {"prefill_tokens_per_s", double(kPrompt) / pre},
                      {"weights", weights},                {"prompt", kPrompt},
                      {"new_tokens", kNew},                {"rounds", rounds},
                      {"kv_cache", o.kv_cache}};
  r.update(lm.fields);
  return {r};
}

// peak_rss_delta_bytes: VmHWM - VmRSS over the first step (it allocates the AdamW state
// and grows the heap; later steps reuse freed heap and barely move the RSS). glibc keeps
// freed memory, so it is meaningful only for the first large workload of a process: run
// each memory workload alone (`qiusuo bench lm_train_mem_n4096`).
// peak_bytes: the live tensor-storage peak of the second (steady-state) step, including
// parameters, gradients and optimiser state; step_peak_bytes is the growth above the
// storage live before it.
std::vector<nlohmann::json> lm_train_mem(const Options&, int64_t b, int64_t n) {
  Generator g(0);
  auto mp = peer_gpt(n, g);
  nn::TransformerLM& m = *mp;
  m.train();
  optim::AdamW opt(m.parameters(), 3e-4);
  Tensor x = randint(0, kVocab, {b, n}, DType::i64, &g), y = randint(0, kVocab, {b, n}, DType::i64, &g);
  int64_t rss0 = resident_memory().rss_bytes;
  bool rss_ok = reset_resident_peak() && rss0 >= 0;
  train_step(m, opt, x, y);
  int64_t rss_delta = rss_ok ? resident_memory().hwm_bytes - rss0 : -1;
  int64_t live0 = memory_stats().current_bytes;
  reset_peak_memory();
  train_step(m, opt, x, y);
  int64_t peak = memory_stats().peak_bytes;
  return {{{"workload", "lm_train_mem_n" + std::to_string(n)},
           {"peak_bytes", peak},
           {"step_peak_bytes", peak - live0},
           {"peak_rss_delta_bytes", rss_delta}}};
}

}  // namespace

std::vector<Workload> lm_workloads() {
  return {{"lm_train_b8_n256", "GPT LM (d256 L4), one AdamW step on 8x256 tokens",
           [](const Options& o) { return lm_train(o, 8, 256); }},
          {"lm_train_b2_n1024", "GPT LM (d256 L4), one AdamW step on 2x1024 tokens",
           [](const Options& o) { return lm_train(o, 2, 1024); }},
          {"lm_fwd_b1_n256_fp32", "GPT LM forward, 256 tokens, f32 (--model: a float LM checkpoint)",
           [](const Options& o) { return lm_fwd(o, false); }, true},
          {"lm_fwd_b1_n256_bf16", "GPT LM forward, 256 tokens, bf16 autocast (--model: a float LM checkpoint)",
           [](const Options& o) { return lm_fwd(o, true); }, true},
          {"lm_fwd_b1_n256_int8dyn", "GPT LM forward, 256 tokens, dynamic INT8 linears in the blocks (--model: CKPT_Q)",
           [](const Options& o) { return lm_fwd(o, false, true); }, true},
          {"lm_gen_b1_p256_g128", "GPT LM greedy decoding with KV cache: 128 tokens after 256 (--model: CKPT[_Q])",
           lm_gen, true},
          {"lm_train_mem_n1024", "GPT LM training-step peak memory, 8x1024 tokens",
           [](const Options& o) { return lm_train_mem(o, 8, 1024); }},
          {"lm_train_mem_n4096", "GPT LM training-step peak memory, 2x4096 tokens",
           [](const Options& o) { return lm_train_mem(o, 2, 4096); }}};
}

}  // namespace qs::bench
