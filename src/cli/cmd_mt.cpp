// qiusuo train mt / eval mt / translate / mt-data: the translation verbs.
#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/apps/mt.h"

namespace qs::cli {

namespace {

void print_eval(const apps::EvalMtResult& e, const std::string& split) {
  std::cout << fmt::format("{} BLEU {:.2f} on {} sentences, loss {:.4f} nats/token ({} tokens)\n  {}\n", split,
                           e.bleu.score, e.sentences, e.loss, e.tokens, e.bleu.to_string());
}

apps::MtDataOptions data_from_args(Args& a) {
  apps::MtDataOptions d;
  d.src_file = a.str("src", "");
  d.tgt_file = a.str("tgt", "");
  d.data = a.str("data", d.src_file.empty() && d.tgt_file.empty() ? "synthetic" : "files");
  if (d.data != "synthetic" && d.data != "files")
    throw UsageError("--data must be synthetic or files (give --src FILE --tgt FILE), got '" + d.data + "'");
  d.synthetic.seed = uint64_t(a.integer("data-seed", int64_t(d.synthetic.seed)));
  d.synthetic.n_train = a.integer("train-pairs", d.synthetic.n_train);
  d.synthetic.n_valid = a.integer("valid-pairs", d.synthetic.n_valid);
  d.synthetic.n_test = a.integer("test-pairs", d.synthetic.n_test);
  d.synthetic.n_homographs = a.integer("homographs", d.synthetic.n_homographs);
  return d;
}

}  // namespace

std::string train_mt_usage() {
  const apps::TrainMtOptions o;
  const nn::Seq2SeqConfig& m = o.model;
  const text::SyntheticMtOptions& d = o.data.synthetic;
  return fmt::format(
      "mt: trains an encoder-decoder Transformer (teacher forcing, label smoothing, Adam + warmup + cosine) on the\n"
      "synthetic translation task (docs/translation.md) or on two aligned text files, reports validation loss and\n"
      "BLEU every --eval-every steps and the test BLEU (sacreBLEU's definition) at the end. Checkpoints as for lm\n"
      "(config, data settings and both word vocabularies inside).\n\n"
      "  --data synthetic | --src FILE --tgt FILE   ({}; real corpora: one sentence per line, words)\n"
      "  --data-seed N --train-pairs N --valid-pairs N --test-pairs N   ({}, {}, {}, {})\n"
      "  --homographs N       noun/verb homographs in the source (watch, help, run...; 0..20) ({})\n"
      "  --pe P               {} ({})\n"
      "  --layers N (or --enc-layers N --dec-layers N) --d-model N --heads N --ffn-hidden N   ({}, {}, {}, 4x)\n"
      "  --max-len N --no-tie --min-count N   ({}, tied output, {})\n"
      "  --steps N --batch N --lr X --warmup N --label-smoothing X --grad-clip X   ({}, {}, {}, min(400, steps/10), "
      "{}, {})\n"
      "  --eval-every N --eval-sentences N --test-sentences N --save-every N   ({}, {}, 0 = all, 0 = at the end)\n"
      "  --seed N --threads N --quiet --resume CKPT\n",
      o.data.data, d.seed, d.n_train, d.n_valid, d.n_test, d.n_homographs,
      fmt::join(nn::position_encoding_names(), " | "), nn::position_encoding_name(m.pos.kind),
      m.enc_layers == m.dec_layers ? fmt::format("{}", m.enc_layers) : fmt::format("{}/{}", m.enc_layers, m.dec_layers),
      m.d_model, m.n_heads, m.max_len, o.min_count, o.steps, o.batch, o.lr, o.label_smoothing, o.grad_clip,
      o.eval_every, o.eval_sentences);
}

int cmd_train_mt(Args& a) {
  apps::TrainMtOptions o;
  o.data = data_from_args(a);
  nn::Seq2SeqConfig& m = o.model;
  if (a.has("layers")) m.enc_layers = m.dec_layers = a.integer("layers", 0);
  m.enc_layers = a.integer("enc-layers", m.enc_layers);
  m.dec_layers = a.integer("dec-layers", m.dec_layers);
  m.d_model = a.integer("d-model", m.d_model);
  m.n_heads = a.integer("heads", m.n_heads);
  m.ffn_hidden = a.integer("ffn-hidden", m.ffn_hidden);
  m.max_len = a.integer("max-len", m.max_len);
  m.tie_weights = !a.flag("no-tie");
  m.pos.kind = nn::parse_position_encoding(a.str("pe", nn::position_encoding_name(m.pos.kind)));
  m.pos.shaw_max_distance = a.integer("shaw-k", m.pos.shaw_max_distance);
  o.min_count = a.integer("min-count", o.min_count);
  o.batch = a.integer("batch", o.batch);
  o.steps = a.integer("steps", o.steps);
  o.lr = a.number("lr", o.lr);
  o.warmup = a.integer("warmup", o.warmup);
  o.label_smoothing = a.number("label-smoothing", o.label_smoothing);
  o.grad_clip = a.number("grad-clip", o.grad_clip);
  o.eval_every = a.integer("eval-every", o.eval_every);
  o.eval_sentences = a.integer("eval-sentences", o.eval_sentences);
  o.test_sentences = a.integer("test-sentences", o.test_sentences);
  o.save_every = a.integer("save-every", o.save_every);
  o.stop_after = a.integer("stop-after", o.stop_after);
  o.seed = uint64_t(a.integer("seed", int64_t(o.seed)));
  o.threads = a.threads(o.threads);
  o.quiet = a.flag("quiet");
  o.resume = a.str("resume", o.resume);
  o.out_dir = a.required("out");
  a.finish();
  apps::TrainMtResult r = apps::train_mt(o);
  nlohmann::json s = {{"steps", r.steps},
                      {"seconds", r.seconds},
                      {"tokens_per_s", r.tokens_per_s},
                      {"final_train_loss", r.final_train_loss},
                      {"val_loss", r.validation.loss},
                      {"val_bleu", r.validation.bleu.score},
                      {"checkpoint", r.checkpoint}};
  if (r.test.sentences > 0) {
    print_eval(r.test, "test");
    s["test_bleu"] = r.test.bleu.score;
    s["test_loss"] = r.test.loss;
  }
  std::cout << s.dump() << std::endl;
  return kExitOk;
}

int cmd_eval_mt(Args& a) {
  if (a.positionals().size() != 2) throw UsageError("qiusuo eval mt: expected 'qiusuo eval mt CKPT'; see --help");
  const std::string ckpt = a.positionals()[1], split = a.str("split", "test");
  const int64_t beam = a.integer("beam", 1), limit = a.integer("sentences", 0), batch = a.integer("batch", 64);
  if (int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  if (split != "test" && split != "validation" && split != "train")
    throw UsageError("--split must be train, validation or test");
  apps::LoadedMt mt = apps::load_mt(ckpt);
  text::MtSplits d = apps::load_mt_data(mt.data);
  const auto& pairs = split == "test" ? d.test : split == "validation" ? d.valid : d.train;
  apps::EvalMtResult e = apps::evaluate_mt(*mt.model, mt.src_vocab, mt.tgt_vocab, pairs, beam, limit, batch);
  print_eval(e, split);
  std::cout << nlohmann::json({{"split", split}, {"bleu", e.bleu.score}, {"loss", e.loss}, {"sentences", e.sentences},
                               {"beam", beam}}).dump()
            << std::endl;
  return kExitOk;
}

int cmd_translate(Args a) {
  if (a.positionals().size() != 1) throw UsageError("qiusuo translate: expected one checkpoint; see --help");
  const std::string text = a.required("text");
  const int64_t beam = a.integer("beam", 1);
  if (int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  apps::LoadedMt mt = apps::load_mt(a.positionals()[0]);
  std::cout << apps::translate(mt, text, beam) << std::endl;
  return kExitOk;
}

int cmd_mt_data(Args a) {
  const std::string out = a.required("out"), format = a.str("format", "jsonl");
  apps::MtDataOptions d = data_from_args(a);
  a.finish();
  if (d.data != "synthetic") throw UsageError("qiusuo mt-data writes the synthetic corpus only");
  if (format != "jsonl" && format != "tsv") throw UsageError("--format must be jsonl or tsv, got '" + format + "'");
  std::filesystem::create_directories(out);
  text::MtSplits s = apps::load_mt_data(d);
  auto write = [&](const char* name, const std::vector<text::ParallelExample>& pairs) {
    const std::string path = (std::filesystem::path(out) / (std::string(name) + "." + format)).string();
    format == "jsonl" ? text::write_parallel_jsonl(path, pairs) : text::write_parallel_tsv(path, pairs);
    std::cout << fmt::format("{}: {} pairs\n", path, pairs.size());
  };
  write("train", s.train), write("valid", s.valid), write("test", s.test);
  std::ofstream readme(std::filesystem::path(out) / "README.md");
  readme << text::SyntheticMtLanguage(d.synthetic).describe();
  if (!readme) throw IOError(fmt::format("{}/README.md: write failed", out));
  return kExitOk;
}

}  // namespace qs::cli
