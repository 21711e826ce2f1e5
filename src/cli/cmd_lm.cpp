// qiusuo train lm / eval lm / generate: the language-model verbs.
#include <cmath>
#include <fmt/ranges.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/apps/lm.h"

namespace qs::cli {

namespace {

// The model flags of `train lm`; defaults from TrainLmOptions.
nn::LMConfig model_from_args(Args& a) {
  nn::LMConfig c = apps::TrainLmOptions().model;
  c.block = a.str("block", c.block);
  c.n_layers = a.integer("layers", c.n_layers);
  c.d_model = a.integer("d-model", c.d_model);
  c.n_heads = a.integer("heads", c.n_heads);
  c.n_kv_heads = a.integer("kv-heads", c.n_kv_heads);
  c.ffn_hidden = a.integer("ffn-hidden", c.ffn_hidden);
  c.tie_weights = !a.flag("no-tie");
  if (c.block == "deepseek") {
    c.bias = false;
    c.norm_eps = 1e-6;
    c.attention = a.str("attention", "mla");
    c.ffn = a.str("ffn", "moe");
    c.kv_lora_rank = a.integer("kv-lora-rank", c.d_model / 2);
    c.q_lora_rank = a.integer("q-lora-rank", 0);
    // The default derives from d_model / heads: zero heads (or d_model) must reach the
    // config's own check (validate names them) instead of dividing by zero here.
    c.qk_rope_head_dim = a.integer("rope-head-dim", c.n_heads > 0 ? std::max<int64_t>(c.d_model / c.n_heads / 2, 1) : 1);
    c.moe_n_routed = a.integer("experts", c.moe_n_routed);
    c.moe_n_shared = a.integer("shared-experts", c.moe_n_shared);
    c.moe_top_k = a.integer("top-k-experts", c.moe_top_k);
    c.moe_aux_loss_alpha = a.number("aux-loss", c.moe_aux_loss_alpha);
    c.moe_bias_update_speed = a.number("bias-update", c.moe_bias_update_speed);
  } else {
    c.attention = a.str("attention", c.attention);
  }
  c.pos.kind = nn::parse_position_encoding(a.str("pe", nn::position_encoding_name(c.pos.kind)));
  c.pos.rope_base = a.number("rope-base", c.pos.rope_base);
  c.pos.shaw_max_distance = a.integer("shaw-k", c.pos.shaw_max_distance);
  return c;
}

void print_eval(const apps::EvalLmResult& e, const std::string& split) {
  std::cout << fmt::format("{} perplexity {:.3f}, loss {:.4f} nats/token, {:.4f} bits/byte ({} windows of {} tokens)\n",
                           split, e.perplexity, e.loss, e.bits_per_byte, e.windows, e.seq);
}

}  // namespace

std::string train_lm_usage() {
  const apps::TrainLmOptions o;
  const nn::LMConfig& m = o.model;
  return fmt::format(
      "lm: trains a decoder-only Transformer on a text corpus (AdamW, warmup + cosine), reports the validation\n"
      "loss every --eval-every steps, writes DIR/step-<N>.safetensors and DIR/last.safetensors (weights, config,\n"
      "tokenizer and training state in one file: enough to eval, generate, serve or --resume exactly).\n\n"
      "  --corpus PATH        UTF-8 file or folder (default: the King James Bible, Debian bible-kjv)\n"
      "  --tokenizer T        byte | bpe (trained on the training split) | a tokenizer.json ({})\n"
      "  --bpe-vocab N        BPE vocabulary size ({})\n"
      "  --pe P               {} ({})\n"
      "  --block B            gpt (LayerNorm, GELU MLP, MHA) | deepseek (RMSNorm, MLA, MoE) ({})\n"
      "  --layers N --d-model N --heads N --kv-heads N --ffn-hidden N   ({}, {}, {}, heads, 4x or 8/3x)\n"
      "  --attention mha|mla  --ffn swiglu|moe   (deepseek: mla, moe)\n"
      "  --experts N --shared-experts N --top-k-experts N --aux-loss X --bias-update X   ({}, {}, {}, {}, {})\n"
      "  --kv-lora-rank N --q-lora-rank N --rope-head-dim N   (MLA: d/2, 0, head/2)\n"
      "  --rope-base X --shaw-k N --no-tie   ({}, {}, tied)\n"
      "  --seq N --batch N --steps N   ({}, {}, {})\n"
      "  --lr X --weight-decay X --grad-clip X --warmup N   ({}, {}, {}, min(100, steps/10))\n"
      "  --eval-every N --eval-windows N --save-every N   ({}, {}, 0 = at the end)\n"
      "  --seed N --threads N --bf16 --quiet --resume CKPT\n"
      "  --continue           resume from DIR/last.safetensors when it exists: the same command run again after an\n"
      "                       interruption carries on (a finished run is read back, nothing is trained)\n",
      o.tokenizer, o.bpe_vocab, fmt::join(nn::position_encoding_names(), " | "), nn::position_encoding_name(m.pos.kind),
      m.block, m.n_layers, m.d_model, m.n_heads, m.moe_n_routed, m.moe_n_shared, m.moe_top_k, m.moe_aux_loss_alpha,
      m.moe_bias_update_speed, m.pos.rope_base, m.pos.shaw_max_distance, o.seq, o.batch, o.steps, o.lr,
      o.weight_decay, o.grad_clip, o.eval_every, o.eval_windows);
}

int cmd_train_lm(Args& a) {
  apps::TrainLmOptions o;
  o.model = model_from_args(a);
  o.corpus = a.str("corpus", o.corpus);
  o.tokenizer = a.str("tokenizer", o.tokenizer);
  o.bpe_vocab = int32_t(a.integer("bpe-vocab", o.bpe_vocab));
  o.batch = a.integer("batch", o.batch);
  o.seq = a.integer("seq", o.seq);
  o.steps = a.integer("steps", o.steps);
  o.lr = a.number("lr", o.lr);
  o.weight_decay = a.number("weight-decay", o.weight_decay);
  o.grad_clip = a.number("grad-clip", o.grad_clip);
  o.warmup = a.integer("warmup", o.warmup);
  o.eval_every = a.integer("eval-every", o.eval_every);
  o.eval_windows = a.integer("eval-windows", o.eval_windows);
  o.save_every = a.integer("save-every", o.save_every);
  o.stop_after = a.integer("stop-after", o.stop_after);
  o.seed = uint64_t(a.integer("seed", int64_t(o.seed)));
  o.threads = a.threads(o.threads);
  o.bf16 = a.flag("bf16");
  o.quiet = a.flag("quiet");
  o.resume = a.str("resume", o.resume);
  o.continue_run = a.flag("continue");
  o.out_dir = a.required("out");
  a.finish();
  apps::TrainLmResult r = apps::train_lm(o);
  if (!r.expert_load.empty()) std::cout << r.expert_load << "\n";
  if (r.validation.windows > 0) print_eval(r.validation, "validation");  // none when --stop-after ended it early
  nlohmann::json s = {{"steps", r.steps},
                      {"seconds", r.seconds},
                      {"total_seconds", std::isfinite(r.total_seconds) ? nlohmann::json(r.total_seconds) : nlohmann::json()},
                      {"tokens_per_s", r.tokens_per_s},
                      {"final_train_loss", r.final_train_loss},
                      {"val_loss", r.validation.loss},
                      {"val_perplexity", r.validation.perplexity},
                      {"val_bits_per_byte", r.validation.bits_per_byte},
                      {"checkpoint", r.checkpoint}};
  std::cout << s.dump() << std::endl;
  return kExitOk;
}

int cmd_eval(Args a) {
  if (!a.positionals().empty() && a.positionals()[0] == "mt") return cmd_eval_mt(a);
  if (!a.positionals().empty() && a.positionals()[0] == "cnn") return cmd_eval_cnn(a);
  if (!a.positionals().empty() && a.positionals()[0] == "ct") return cmd_eval_ct(a);
  if (!a.positionals().empty() && a.positionals()[0] == "defect") return cmd_eval_defect(a);
  if (a.positionals().size() != 2 || a.positionals()[0] != "lm")
    throw UsageError("qiusuo eval: expected 'qiusuo eval lm|mt|cnn|ct|defect CKPT'; see 'qiusuo eval --help'");
  const std::string ckpt = a.positionals()[1];
  nn::PositionConfig pos;
  const bool scaled = a.has("rope-scaling");
  pos.rope_scaling = nn::parse_rope_scaling(a.str("rope-scaling", "none"));
  pos.rope_factor = a.number("rope-factor", 1.0);
  const std::string split = a.str("split", "test");
  const std::string corpus = a.str("corpus", "");
  const int64_t batch = a.integer("batch", 4), windows = a.integer("windows", 0);
  const bool extrapolate = a.flag("allow-extrapolation"), bf16 = a.flag("bf16");
  int64_t seq = a.integer("seq", 0);
  if (int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  apps::LoadedLm lm = apps::load_lm(ckpt, scaled ? &pos : nullptr);
  if (seq == 0) seq = lm.model->config().max_seq_len;
  if (!extrapolate) lm.model->config().check_length(seq);
  text::Split sp = split == "test"         ? text::Split::test
                   : split == "validation" ? text::Split::validation
                   : split == "train"      ? text::Split::train
                                           : throw UsageError("--split must be train, validation or test");
  std::string src = corpus.empty() ? lm.train_config.value("corpus", std::string("kjv")) : corpus;
  text::TextCorpus c = apps::open_corpus(src);
  text::TokenStream stream(c, sp, *lm.tokenizer);
  apps::EvalLmResult e = apps::evaluate_lm(*lm.model, stream, seq, batch, windows, bf16);
  print_eval(e, split);
  nlohmann::json s = {{"split", split},           {"seq", e.seq},       {"windows", e.windows},
                      {"perplexity", e.perplexity}, {"loss", e.loss},   {"bits_per_byte", e.bits_per_byte},
                      {"corpus", src}};
  std::cout << s.dump() << std::endl;
  return kExitOk;
}

int cmd_generate(Args a) {
  if (a.positionals().size() != 1) throw UsageError("qiusuo generate: expected one checkpoint; see --help");
  const std::string ckpt = a.positionals()[0];
  apps::GenerateOptions g;
  const std::string prompt = a.required("prompt");
  g.max_tokens = a.integer("max-tokens", g.max_tokens);
  g.temperature = a.number("temperature", g.temperature);
  g.top_k = a.integer("top-k", g.top_k);
  g.top_p = a.number("top-p", g.top_p);
  g.seed = uint64_t(a.integer("seed", 0));
  const std::string kv = a.str("kv-cache", "f32");
  if (kv != "f32" && kv != "f16") throw UsageError("qiusuo generate: --kv-cache must be f32 or f16, got '" + kv + "'");
  g.kv_cache = kv == "f16" ? DType::f16 : DType::f32;
  if (int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  apps::LoadedLm lm = apps::load_lm(ckpt);
  std::cout << prompt << apps::generate_text(lm, prompt, g) << std::endl;
  return kExitOk;
}

}  // namespace qs::cli
