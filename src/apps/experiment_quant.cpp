// `qiusuo experiment quant`: FP32, BF16 (autocast) and PTQ / QAT INT8 for the CNN; FP32, BF16,
// dynamic, weight-only and static PTQ / QAT INT8 quantisation for a small LM; resident memory,
// a table, two plots and the handbook's claims beside the results.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "io/atomic_file.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/apps/experiments.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/data/idx.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/checkpoint.h"
#include "qiusuo/quant/convert.h"
#include "qiusuo/util/svg_plot.h"
#include "util/json_bounded.h"
#include "util/timing.h"

namespace qs::apps {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

double ms_per_call(const std::function<void()>& fn, int iters) { return util::seconds_per_call(fn, 1, iters) * 1e3; }

json rss_fields(const ResidentGrowth& g) { return {{"rss_peak_bytes", g.peak_bytes}, {"rss_model_bytes", g.retained_bytes}}; }

// bf16: under Autocast (weights stay f32 and are cast per op).
json cnn_latency(const std::string& ckpt, bool quick, bool bf16 = false) {
  auto m = load_fashion_cnn(ckpt);
  Generator g(1);
  Tensor x1 = randn({1, 1, 28, 28}, DType::f32, &g), x64 = randn({64, 1, 28, 28}, DType::f32, &g);
  NoGrad ng;
  Autocast ac(bf16);
  double b1 = ms_per_call([&] { (*m)(x1); }, quick ? 5 : 50), b64 = ms_per_call([&] { (*m)(x64); }, quick ? 2 : 10);
  return {{"ms_b1", b1}, {"ms_b64", b64}, {"images_per_s_b64", 64e3 / b64}};
}

// The FP32 model under bf16 autocast: accuracy on the same test images as quantize_cnn.
json cnn_bf16_row(const QuantExperimentOptions& o, const std::string& ckpt, const QuantizeCnnResult& fp32) {
  data::FashionMNIST test(false, data::FashionMNIST::kDefaultRoot, true);
  Tensor x = test.images, y = test.labels;
  if (o.quick) x = x.narrow(0, 0, 1000).contiguous(), y = y.narrow(0, 0, 1000).contiguous();
  auto m = load_fashion_cnn(ckpt);
  const double acc = evaluate_classifier(*m, x, y, 256, true).first;
  json r = {{"model", "cnn"}, {"variant", "bf16"}, {"accuracy", acc}, {"retained", acc / fp32.fp32_accuracy},
            {"weight_bytes", fp32.fp32_weight_bytes}, {"file_bytes", fp32.fp32_file_bytes}};
  r.update(cnn_latency(ckpt, o.quick, true));
  r.update(rss_fields(fp32.fp32_resident));  // the same float model
  return r;
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
  rows.back().update(rss_fields(ptq.fp32_resident));
  rows.push_back(cnn_bf16_row(o, ckpt, ptq));
  for (auto* r : {&ptq, &qat}) {
    std::string v = r == &ptq ? "ptq_int8" : "qat_int8";
    rows.push_back({{"model", "cnn"}, {"variant", v}, {"accuracy", r->int8_accuracy}, {"retained", r->retained},
                    {"weight_bytes", r->int8_weight_bytes}, {"file_bytes", r->int8_file_bytes}});
    rows.back().update(cnn_latency((fs::path(o.out_dir) / ("cnn_" + v.substr(0, 3) + ".safetensors")).string(), o.quick));
    rows.back().update(rss_fields(r->int8_resident));
  }
  return rows;
}

// One LM variant: "fp32" and "bf16" read the float model alone (lm_fp32.safetensors, no
// optimiser state), the others a quantised file written here.
json lm_row(const QuantExperimentOptions& o, const std::string& ckpt, const std::string& variant) {
  LoadedLm lm = load_lm(ckpt);
  const bool bf16 = variant == "bf16", quantised = variant != "fp32" && !bf16;
  io::Checkpoint ck = io::load_checkpoint(ckpt);
  std::string path = (fs::path(o.out_dir) / fmt::format("lm_{}.safetensors", quantised ? variant : "fp32")).string();
  if (quantised) {
    quant::quantize_linears(*lm.model, variant, o.quick ? 32 : 128);
    quant::save_quantized_checkpoint(path, *lm.model, ck.config, variant, ck.extra);
  } else if (!fs::exists(path)) {
    ck.optimizer.clear();
    io::save_checkpoint(path, ck);
  }
  text::TextCorpus c = open_corpus(lm.train_config.value("corpus", std::string("kjv")));
  text::TokenStream stream(c, text::Split::test, *lm.tokenizer);
  const int64_t seq = lm.model->config().max_seq_len;
  EvalLmResult e = evaluate_lm(*lm.model, stream, seq, 4, o.quick ? 8 : 100, bf16);
  Generator g(2);
  Tensor ids = randint(0, lm.model->config().vocab_size, {1, seq}, DType::i64, &g);
  double ms = 0;
  {
    NoGrad ng;
    Autocast ac(bf16);
    ms = ms_per_call([&] { (*lm.model)(ids); }, o.quick ? 3 : 10);
  }
  json r = {{"model", "lm"}, {"variant", variant}, {"perplexity", e.perplexity}, {"seq", seq},
            {"weight_bytes", quant::model_weight_bytes(*lm.model)}, {"file_bytes", int64_t(fs::file_size(path))},
            {"ms_fwd_b1", ms}};
  lm = {};
  r.update(rss_fields(lm_resident_growth(path)));
  return r;
}

// Static INT8 (quantize_lm: every block Linear a QuantizedLinear), "ptq_int8" or "qat_int8".
json lm_static_row(const QuantExperimentOptions& o, const std::string& ckpt, const std::string& method) {
  QuantizeLmOptions q;
  q.checkpoint = ckpt, q.method = method, q.quiet = true;
  q.calib_batches = o.quick ? 2 : 16, q.qat_steps = o.quick ? 4 : 100, q.eval_windows = o.quick ? 8 : 100;
  q.out = (fs::path(o.out_dir) / fmt::format("lm_{}.safetensors", method)).string();
  QuantizeLmResult r = quantize_lm(q);
  LoadedLm lm = load_lm(q.out);
  const int64_t seq = lm.model->config().max_seq_len;
  Generator g(2);
  Tensor ids = randint(0, lm.model->config().vocab_size, {1, seq}, DType::i64, &g);
  NoGrad ng;
  json row = {{"model", "lm"}, {"variant", method + "_int8"}, {"perplexity", r.int8_perplexity}, {"seq", seq},
              {"weight_bytes", r.int8_weight_bytes}, {"file_bytes", r.file_bytes}, {"qat_steps", r.qat_steps},
              {"ms_fwd_b1", ms_per_call([&] { (*lm.model)(ids); }, o.quick ? 3 : 10)}};
  lm = {};
  row.update(rss_fields(lm_resident_growth(q.out)));
  return row;
}

json lm_rows(const QuantExperimentOptions& o, const std::string& ckpt) {
  json rows = json::array();
  for (const char* v : {"fp32", "bf16", "dynamic", "weight-int8", "weight-int4"}) rows.push_back(lm_row(o, ckpt, v));
  for (const char* m : {"ptq", "qat"}) rows.push_back(lm_static_row(o, ckpt, m));
  const double fp32 = rows[0]["perplexity"].get<double>();
  for (auto& r : rows) r["perplexity_vs_fp32"] = r["perplexity"].get<double>() / fp32 - 1;
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

std::string kb(const json& r, const char* key) {
  int64_t b = r.value(key, int64_t(-1));
  return b < 0 ? "n/a" : fmt::format("{:+} kB", b / 1024);
}

std::string markdown(const json& doc) {
  std::string md = "# Quantisation: FP32 vs BF16, INT8 / INT4\n\nCommand: `" + doc["command"].get<std::string>() +
                   "`\n\n| model | variant | accuracy / perplexity | vs FP32 | weight bytes | file bytes | resident: peak, "
                   "held | latency |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (auto& r : doc["rows"]) {
    bool cnn = r["model"] == "cnn";
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {}, {} | {} |\n", r["model"].get<std::string>(),
                      r["variant"].get<std::string>(),
                      cnn ? fmt::format("{:.2f}%", 100 * r["accuracy"].get<double>())
                          : fmt::format("ppl {:.4f}", r["perplexity"].get<double>()),
                      cnn ? fmt::format("{:.2f}% retained", 100 * r["retained"].get<double>())
                          : fmt::format("{:+.2f}%", 100 * r["perplexity_vs_fp32"].get<double>()),
                      r["weight_bytes"].get<int64_t>(), r["file_bytes"].get<int64_t>(), kb(r, "rss_peak_bytes"),
                      kb(r, "rss_model_bytes"),
                      cnn ? fmt::format("b1 {:.2f} ms, b64 {:.2f} ms", r["ms_b1"].get<double>(), r["ms_b64"].get<double>())
                          : fmt::format("fwd {:.2f} ms", r["ms_fwd_b1"].get<double>()));
  }
  md += "\nBF16 is autocast: the weights stay f32 (cast per op) and this AVX2 CPU has no bf16 arithmetic "
        "(no AVX512_BF16 / AMX), so bf16 runs at f32 speed or slower (docs/results/bench.md); it is here for its "
        "accuracy, not its speed. Resident memory: growth of the process's resident set while loading the file and "
        "running one forward (peak) and while the model is held (qs::resident_growth; in-process, approximate).\n";
  md += "\n![quality retained against weight bytes](retained.svg)\n![speed-up over FP32](speedup.svg)\n";
  md += "\n## The handbook's claims\n\n| claim | measured |\n| --- | --- |\n";
  for (auto& c : doc["claims"])
    md += fmt::format("| {} | {} |\n", c["claim"].get<std::string>(), c["measured"].get<std::string>());
  return md;
}

const json& row(const json& rows, const std::string& model, const std::string& variant) {
  for (auto& r : rows)
    if (r["model"] == model && r["variant"] == variant) return r;
  throw Error(fmt::format("experiment quant: no row {} {}", model, variant));
}

json claims(const json& rows) {
  const json &fp = row(rows, "cnn", "fp32"), &ptq = row(rows, "cnn", "ptq_int8"), &qat = row(rows, "cnn", "qat_int8");
  const double w = 100.0 * ptq["weight_bytes"].get<double>() / fp["weight_bytes"].get<double>();
  const double b64 = fp["ms_b64"].get<double>(), q64 = ptq["ms_b64"].get<double>();
  const double lm_fp32 = row(rows, "lm", "fp32")["ms_fwd_b1"].get<double>();
  const double lm = lm_fp32 / row(rows, "lm", "dynamic")["ms_fwd_b1"].get<double>();
  const double lm_static = lm_fp32 / row(rows, "lm", "ptq_int8")["ms_fwd_b1"].get<double>();
  return json::array(
      {{{"claim", "INT8 keeps 98.7% of the accuracy"},
        {"measured", fmt::format("PTQ {:.2f}%, QAT {:.2f}%", 100 * ptq["retained"].get<double>(),
                                 100 * qat["retained"].get<double>())}},
       {{"claim", "75% less memory"}, {"measured", fmt::format("INT8 weights {:.1f}% of FP32 ({:.1f}% less)", w, 100 - w)}},
       {{"claim", "latency 120 ms -> 38 ms (3.2x)"},
        {"measured", fmt::format("CNN batch 64: {:.2f} -> {:.2f} ms ({:.2f}x); LM forward dynamic INT8: {:.2f}x, "
                                 "static INT8: {:.2f}x", b64, q64, b64 / q64, lm, lm_static)}}});
}

// retained.svg: the change in quality against FP32 in percentage points (CNN: test accuracy
// retained; LM: FP32 perplexity over the variant's), one bar per variant, labelled with its
// share of the FP32 weight bytes; speedup.svg: FP32 latency over the variant's (CNN batch 64
// and 1; LM forward at batch 1), with the 1x line.
void write_plots(const json& rows, const fs::path& dir) {
  std::vector<util::BarGroup> quality, speed;
  for (const char* model : {"cnn", "lm"}) {
    const json& fp = row(rows, model, "fp32");
    const bool cnn = model == std::string("cnn");
    for (auto& r : rows) {
      if (r["model"] != model || r["variant"] == "fp32") continue;
      const std::string name = fmt::format("{} {}", cnn ? "CNN" : "LM", r["variant"].get<std::string>());
      const double bytes = 100 * r["weight_bytes"].get<double>() / fp["weight_bytes"].get<double>();
      const double q = cnn ? r["retained"].get<double>() : 1 / (1 + r["perplexity_vs_fp32"].get<double>());
      quality.push_back({fmt::format("{} ({:.0f}% bytes)", name, bytes), {100 * (q - 1)}});
      const char* key = cnn ? "ms_b64" : "ms_fwd_b1";
      speed.push_back({name, {fp[key].get<double>() / r[key].get<double>(),
                              cnn ? fp["ms_b1"].get<double>() / r["ms_b1"].get<double>() : std::nan("")}});
    }
  }
  util::PlotOptions po;
  po.title = "Quality against FP32 (BF16, INT8, INT4)";
  po.x_label = "percentage points (CNN: test accuracy retained - 100; LM: FP32 ppl / ppl - 100)";
  io::write_file_atomic((dir / "retained.svg").string(), util::svg_bar_chart({"quality"}, quality, po));
  po.title = "Speed-up over FP32", po.x_label = "FP32 latency / latency (dashed: 1x)";
  io::write_file_atomic((dir / "speedup.svg").string(),
                        util::svg_bar_chart({"CNN b64, LM b1", "CNN b1"}, speed, po, 1.0));
}

}  // namespace

json run_quant_experiment(const QuantExperimentOptions& o) {
  QS_CHECK(!o.out_dir.empty(), "experiment quant: --out is required");
  const auto started = std::chrono::steady_clock::now();
  if (o.threads > 0) set_num_threads(o.threads);
  fs::create_directories(o.out_dir);
  std::string cnn = o.cnn.empty() ? train_defaults(o, true) : o.cnn, lm = o.lm.empty() ? train_defaults(o, false) : o.lm;
  json doc;
  doc["command"] = fmt::format("qiusuo experiment quant{} --out {}{}{}", o.quick ? " --quick" : "", o.out_dir,
                               o.cnn.empty() ? "" : " --cnn " + o.cnn, o.lm.empty() ? "" : " --lm " + o.lm);
  doc["threads"] = get_num_threads();
  doc["rows"] = cnn_rows(o, cnn);
  for (auto& r : lm_rows(o, lm)) doc["rows"].push_back(r);
  doc["claims"] = claims(doc["rows"]);
  stamp_run(doc, started);
  io::write_file_atomic((fs::path(o.out_dir) / "results.json").string(), doc.dump(2) + "\n");
  io::write_file_atomic((fs::path(o.out_dir) / "results.md").string(), markdown(doc));
  write_plots(doc["rows"], o.out_dir);
  return doc;
}

void write_quant_plots(const std::string& dir) {
  const fs::path file = fs::path(dir) / "results.json";
  std::ifstream in(file);
  QS_CHECK(in.good(), "experiment quant --replot: cannot read {}", file.string());
  json doc;
  try {
    std::stringstream text;
    text << in.rdbuf();
    doc = util::parse_json_bounded(text.str());
    write_plots(doc.at("rows"), dir);
  } catch (const json::exception& e) {
    QS_FAIL("experiment quant --replot: {} is not a results file of this experiment: {}", file.string(), e.what());
  }
}

}  // namespace qs::apps
