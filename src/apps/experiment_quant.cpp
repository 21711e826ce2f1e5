// `qiusuo experiment quant`: FP32 vs PTQ / QAT INT8 for the CNN, FP32 vs dynamic and
// weight-only quantisation for a small LM, with the handbook's claims beside the results.
#include <chrono>
#include <filesystem>
#include <fstream>

#include "qiusuo/apps/cnn.h"
#include "qiusuo/apps/experiments.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/autograd.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/checkpoint.h"
#include "qiusuo/quant/convert.h"

namespace qs::apps {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

double ms_per_call(const std::function<void()>& fn, int iters) {
  fn();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3 / iters;
}

json cnn_latency(const std::string& ckpt, bool quick) {
  auto m = load_fashion_cnn(ckpt);
  Generator g(1);
  Tensor x1 = randn({1, 1, 28, 28}, DType::f32, &g), x64 = randn({64, 1, 28, 28}, DType::f32, &g);
  NoGrad ng;
  double b1 = ms_per_call([&] { (*m)(x1); }, quick ? 5 : 50), b64 = ms_per_call([&] { (*m)(x64); }, quick ? 2 : 10);
  return {{"ms_b1", b1}, {"ms_b64", b64}, {"images_per_s_b64", 64e3 / b64}};
}

json cnn_rows(const QuantExperimentOptions& o, const std::string& ckpt) {
  json rows = json::array();
  QuantizeCnnResult ptq, qat;
  for (const char* method : {"ptq", "qat"}) {
    QuantizeCnnOptions q;
    q.checkpoint = ckpt, q.method = method, q.quiet = true;
    q.calib_batches = o.quick ? 4 : 32;
    q.limit_train = o.quick ? 1024 : 20000;
    q.limit_test = o.quick ? 1000 : 0;
    q.out = (fs::path(o.out_dir) / fmt::format("cnn_{}.safetensors", method)).string();
    (std::string(method) == "ptq" ? ptq : qat) = quantize_cnn(q);
  }
  rows.push_back({{"model", "cnn"}, {"variant", "fp32"}, {"accuracy", ptq.fp32_accuracy}, {"retained", 1.0},
                  {"weight_bytes", ptq.fp32_weight_bytes}, {"file_bytes", ptq.fp32_file_bytes}});
  rows.back().update(cnn_latency(ckpt, o.quick));
  for (auto* r : {&ptq, &qat}) {
    std::string v = r == &ptq ? "ptq_int8" : "qat_int8";
    rows.push_back({{"model", "cnn"}, {"variant", v}, {"accuracy", r->int8_accuracy}, {"retained", r->retained},
                    {"weight_bytes", r->int8_weight_bytes}, {"file_bytes", r->int8_file_bytes}});
    rows.back().update(cnn_latency((fs::path(o.out_dir) / ("cnn_" + v.substr(0, 3) + ".safetensors")).string(), o.quick));
  }
  return rows;
}

json lm_rows(const QuantExperimentOptions& o, const std::string& ckpt) {
  json rows = json::array();
  const int64_t windows = o.quick ? 8 : 100;
  double fp32_ppl = 0;
  for (const char* method : {"fp32", "dynamic", "weight-int8", "weight-int4"}) {
    LoadedLm lm = load_lm(ckpt);
    std::string path = ckpt;
    if (std::string(method) != "fp32") {
      quant::quantize_linears(*lm.model, method, o.quick ? 32 : 128);
      path = (fs::path(o.out_dir) / fmt::format("lm_{}.safetensors", method)).string();
      io::Checkpoint ck = io::load_checkpoint(ckpt);
      quant::save_quantized_checkpoint(path, *lm.model, ck.config, method, ck.extra);
    }
    text::TextCorpus c = open_corpus(lm.train_config.value("corpus", std::string("kjv")));
    text::TokenStream stream(c, text::Split::test, *lm.tokenizer);
    const int64_t seq = lm.model->config().max_seq_len;
    EvalLmResult e = evaluate_lm(*lm.model, stream, seq, 4, windows);
    if (fp32_ppl == 0) fp32_ppl = e.perplexity;
    Generator g(2);
    Tensor ids = randint(0, lm.model->config().vocab_size, {1, seq}, DType::i64, &g);
    NoGrad ng;
    double ms = ms_per_call([&] { (*lm.model)(ids); }, o.quick ? 3 : 10);
    rows.push_back({{"model", "lm"}, {"variant", method}, {"perplexity", e.perplexity},
                    {"perplexity_vs_fp32", e.perplexity / fp32_ppl - 1}, {"seq", seq},
                    {"weight_bytes", quant::model_weight_bytes(*lm.model)},
                    {"file_bytes", std::string(method) == "fp32" ? 0 : int64_t(fs::file_size(path))},
                    {"ms_fwd_b1", ms}});
  }
  return rows;
}

std::string train_defaults(const QuantExperimentOptions& o, bool cnn) {
  if (cnn) {
    TrainCnnOptions t;
    t.epochs = 1, t.quiet = true, t.limit_train = o.quick ? 2048 : 0, t.limit_test = 1000;
    t.out_dir = (fs::path(o.out_dir) / "cnn_fp32").string();
    return train_fashion_cnn(t).checkpoint;
  }
  TrainLmOptions t;
  t.model.d_model = o.quick ? 32 : 128, t.model.n_layers = 2, t.model.n_heads = 4;
  t.seq = 128, t.batch = 8, t.steps = o.quick ? 20 : 300, t.eval_windows = 4, t.quiet = true;
  t.out_dir = (fs::path(o.out_dir) / "lm_fp32").string();
  return train_lm(t).checkpoint;
}

std::string markdown(const json& doc) {
  std::string md = "# Quantisation: FP32 vs INT8 / INT4\n\nCommand: `" + doc["command"].get<std::string>() +
                   "`\n\n| model | variant | accuracy / perplexity | vs FP32 | weight bytes | file bytes | latency |\n"
                   "| --- | --- | --- | --- | --- | --- | --- |\n";
  for (auto& r : doc["rows"]) {
    bool cnn = r["model"] == "cnn";
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", r["model"].get<std::string>(),
                      r["variant"].get<std::string>(),
                      cnn ? fmt::format("{:.2f}%", 100 * r["accuracy"].get<double>())
                          : fmt::format("ppl {:.4f}", r["perplexity"].get<double>()),
                      cnn ? fmt::format("{:.2f}% retained", 100 * r["retained"].get<double>())
                          : fmt::format("{:+.2f}%", 100 * r["perplexity_vs_fp32"].get<double>()),
                      r["weight_bytes"].get<int64_t>(), r["file_bytes"].get<int64_t>(),
                      cnn ? fmt::format("b1 {:.2f} ms, b64 {:.2f} ms", r["ms_b1"].get<double>(), r["ms_b64"].get<double>())
                          : fmt::format("fwd {:.2f} ms", r["ms_fwd_b1"].get<double>()));
  }
  md += "\n## The handbook's claims\n\n| claim | measured |\n| --- | --- |\n";
  for (auto& c : doc["claims"])
    md += fmt::format("| {} | {} |\n", c["claim"].get<std::string>(), c["measured"].get<std::string>());
  return md;
}

}  // namespace

json run_quant_experiment(const QuantExperimentOptions& o) {
  QS_CHECK(!o.out_dir.empty(), "experiment quant: --out is required");
  if (o.threads > 0) set_num_threads(o.threads);
  fs::create_directories(o.out_dir);
  std::string cnn = o.cnn.empty() ? train_defaults(o, true) : o.cnn, lm = o.lm.empty() ? train_defaults(o, false) : o.lm;
  json doc;
  doc["command"] = fmt::format("qiusuo experiment quant{} --out {}{}{}", o.quick ? " --quick" : "", o.out_dir,
                               o.cnn.empty() ? "" : " --cnn " + o.cnn, o.lm.empty() ? "" : " --lm " + o.lm);
  doc["threads"] = get_num_threads();
  doc["rows"] = cnn_rows(o, cnn);
  for (auto& r : lm_rows(o, lm)) doc["rows"].push_back(r);
  auto& rows = doc["rows"];
  doc["claims"] = json::array(
      {{{"claim", "INT8 keeps 98.7% of the accuracy"},
        {"measured", fmt::format("PTQ {:.2f}%, QAT {:.2f}%", 100 * rows[1]["retained"].get<double>(),
                                 100 * rows[2]["retained"].get<double>())}},
       {{"claim", "75% less memory"},
        {"measured", fmt::format("INT8 weights {:.1f}% of FP32 ({:.1f}% less)",
                                 100.0 * rows[1]["weight_bytes"].get<double>() / rows[0]["weight_bytes"].get<double>(),
                                 100.0 - 100.0 * rows[1]["weight_bytes"].get<double>() /
                                             rows[0]["weight_bytes"].get<double>())}},
       {{"claim", "latency 120 ms -> 38 ms (3.2x)"},
        {"measured", fmt::format("CNN batch 64: {:.2f} -> {:.2f} ms ({:.2f}x); LM forward dynamic INT8: {:.2f}x",
                                 rows[0]["ms_b64"].get<double>(), rows[1]["ms_b64"].get<double>(),
                                 rows[0]["ms_b64"].get<double>() / rows[1]["ms_b64"].get<double>(),
                                 rows[3]["ms_fwd_b1"].get<double>() / rows[4]["ms_fwd_b1"].get<double>())}}});
  std::ofstream(fs::path(o.out_dir) / "results.json") << doc.dump(2) << "\n";
  std::ofstream(fs::path(o.out_dir) / "results.md") << markdown(doc);
  return doc;
}

}  // namespace qs::apps
