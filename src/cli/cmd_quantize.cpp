// qiusuo quantize CKPT --method ptq|qat [--calib-batches N] [--qat-epochs N] --out CKPT_Q   (FashionCNN)
// qiusuo quantize CKPT --method dynamic|weight-int8|weight-int4 [--group 128] [--activations q8|f32] --out CKPT_Q (LM)
// qiusuo quantize CKPT --method ptq|qat [--calib-batches 16] [--qat-steps 100] [--qat-lr 1e-4] [--windows 50] --out CKPT_Q (LM)
// qiusuo eval cnn CKPT [--limit-test N]   (float or quantised FashionCNN)
#include <filesystem>
#include <fmt/ranges.h>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/data/idx.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/quant/checkpoint.h"
#include "qiusuo/quant/convert.h"

namespace qs::cli {

namespace {

// What static quantisation (PTQ / QAT) of the CNN and of the LM read alike: the same flags
// into fields of the same names of apps::QuantizeCnnOptions and apps::QuantizeLmOptions.
template <class O> void read_static_options(Args& a, const std::string& ckpt, const std::string& method, O& o) {
  o.checkpoint = ckpt;
  o.method = method;
  o.calib_batches = a.integer("calib-batches", o.calib_batches);
  o.batch = a.integer("batch", o.batch);
  o.qat_lr = a.number("qat-lr", o.qat_lr);
  o.seed = uint64_t(a.integer("seed", 0));
  o.out = a.required("out");
  o.quiet = a.flag("quiet");
}

int quantize_cnn(Args& a, const std::string& ckpt, const std::string& method) {
  apps::QuantizeCnnOptions o;
  read_static_options(a, ckpt, method, o);
  o.qat_epochs = int(a.integer("qat-epochs", o.qat_epochs));
  o.limit_train = a.integer("limit-train", 0);
  o.limit_test = a.integer("limit-test", 0);
  o.data_root = a.str("data", o.data_root);
  a.finish();
  apps::QuantizeCnnResult r = apps::quantize_cnn(o);
  std::cout << fmt::format(
      "FP32 test accuracy {:.2f}%, INT8 ({}) {:.2f}% = {:.2f}% retained (fake-quantised model {:.2f}%)\n"
      "weights {} bytes FP32 -> {} bytes INT8 ({:.1f}%); file {} -> {} bytes\n"
      "resident memory of loading the file + one forward of 1 image: FP32 peak +{} kB, model +{} kB; INT8 peak +{} "
      "kB, model +{} kB\n",
      100 * r.fp32_accuracy, method, 100 * r.int8_accuracy, 100 * r.retained, 100 * r.fake_quant_accuracy,
      r.fp32_weight_bytes, r.int8_weight_bytes, 100.0 * double(r.int8_weight_bytes) / double(r.fp32_weight_bytes),
      r.fp32_file_bytes, r.int8_file_bytes, r.fp32_resident.peak_bytes / 1024, r.fp32_resident.retained_bytes / 1024,
      r.int8_resident.peak_bytes / 1024, r.int8_resident.retained_bytes / 1024);
  nlohmann::json s = {{"method", method},
                      {"fp32_accuracy", r.fp32_accuracy},
                      {"int8_accuracy", r.int8_accuracy},
                      {"retained", r.retained},
                      {"fake_quant_accuracy", r.fake_quant_accuracy},
                      {"fp32_weight_bytes", r.fp32_weight_bytes},
                      {"int8_weight_bytes", r.int8_weight_bytes},
                      {"fp32_file_bytes", r.fp32_file_bytes},
                      {"int8_file_bytes", r.int8_file_bytes},
                      {"fp32_rss_peak_bytes", r.fp32_resident.peak_bytes},
                      {"fp32_rss_model_bytes", r.fp32_resident.retained_bytes},
                      {"int8_rss_peak_bytes", r.int8_resident.peak_bytes},
                      {"int8_rss_model_bytes", r.int8_resident.retained_bytes},
                      {"qat_steps", r.qat_steps},
                      {"seconds", r.seconds},
                      {"out", o.out}};
  std::cout << s.dump() << std::endl;
  return kExitOk;
}

}  // namespace

// The float model alone (no optimiser state) beside `out`: its file size and resident growth
// (measured after one unmeasured load, so one-off process costs are not charged to it).
std::pair<int64_t, ResidentGrowth> float_lm_footprint(io::Checkpoint ck, const std::string& out) {
  ck.optimizer.clear();
  const std::string tmp = out + ".fp32-size.tmp";
  io::save_checkpoint(tmp, ck);
  apps::lm_resident_growth(tmp);  // warm-up, not counted: code pages, the OpenMP pool, oneDNN, allocator arenas
  std::pair<int64_t, ResidentGrowth> r{int64_t(std::filesystem::file_size(tmp)), apps::lm_resident_growth(tmp)};
  std::filesystem::remove(tmp);
  return r;
}

int cmd_quantize_lm(Args& a, const std::string& ckpt, const std::string& method) {
  const int64_t group = a.integer("group", 128);
  const std::string activations = a.str("activations", "q8");
  const std::string out = a.required("out");
  a.finish();
  if (activations != "q8" && activations != "f32")
    throw UsageError("qiusuo quantize: --activations must be q8 or f32, got '" + activations + "'");
  if (activations != "q8" && method == "dynamic")
    throw UsageError("qiusuo quantize: --activations is for weight-int8 and weight-int4 (dynamic quantises its own)");
  io::Checkpoint ck = io::load_checkpoint(ckpt);
  if (quant::is_quantized_checkpoint(ck))
    throw UsageError("qiusuo quantize: " + ckpt + " is already quantised; quantise the float checkpoint");
  apps::LoadedLm lm = apps::load_lm(ckpt);
  const int64_t fp32 = quant::model_weight_bytes(*lm.model);
  const int64_t n = quant::quantize_linears(*lm.model, method, group, {"blocks."}, activations);
  const int64_t q = quant::model_weight_bytes(*lm.model);
  quant::save_quantized_checkpoint(out, *lm.model, ck.config, method, ck.extra);
  lm = {};
  const auto [fp32_size, fp32_rss] = float_lm_footprint(ck, out);
  const auto out_size = int64_t(std::filesystem::file_size(out));
  const ResidentGrowth q_rss = apps::lm_resident_growth(out);
  std::cout << fmt::format("{}: {} Linear layers of the blocks quantised; weights {} -> {} bytes ({:.1f}%), model-only "
                           "file {} -> {} bytes\nresident memory of loading the file + one forward: FP32 peak +{} kB, "
                           "model +{} kB; {} peak +{} kB, model +{} kB\n",
                           method, n, fp32, q, 100.0 * double(q) / double(fp32), fp32_size, out_size,
                           fp32_rss.peak_bytes / 1024, fp32_rss.retained_bytes / 1024, method, q_rss.peak_bytes / 1024,
                           q_rss.retained_bytes / 1024);
  nlohmann::json s = {{"method", method},          {"layers", n},
                      {"group", method == "weight-int4" ? group : 0},
                      {"activations", method == "dynamic" ? "u8 per token" : activations},
                      {"fp32_weight_bytes", fp32}, {"weight_bytes", q},
                      {"fp32_file_bytes", fp32_size}, {"file_bytes", out_size},
                      {"fp32_rss_peak_bytes", fp32_rss.peak_bytes}, {"fp32_rss_model_bytes", fp32_rss.retained_bytes},
                      {"rss_peak_bytes", q_rss.peak_bytes}, {"rss_model_bytes", q_rss.retained_bytes},
                      {"out", out}};
  std::cout << s.dump() << std::endl;
  return kExitOk;
}

int quantize_lm_static(Args& a, const std::string& ckpt, const std::string& method) {
  apps::QuantizeLmOptions o;
  read_static_options(a, ckpt, method, o);
  o.qat_steps = a.integer("qat-steps", o.qat_steps);
  o.eval_windows = a.integer("windows", o.eval_windows);
  a.finish();
  apps::QuantizeLmResult r = apps::quantize_lm(o);
  std::cout << fmt::format(
      "{}: {} Linear layers of the blocks INT8 (static u8 activations); test perplexity FP32 {:.4f}, INT8 {:.4f} "
      "({:+.2f}%; fake-quantised {:.4f}); weights {} -> {} bytes ({:.1f}%), file {} bytes; left f32: {}\n",
      method, r.layers, r.fp32_perplexity, r.int8_perplexity, 100 * (r.int8_perplexity / r.fp32_perplexity - 1),
      r.fake_quant_perplexity, r.fp32_weight_bytes, r.int8_weight_bytes,
      100.0 * double(r.int8_weight_bytes) / double(r.fp32_weight_bytes), r.file_bytes,
      r.kept_f32.empty() ? "none" : fmt::format("{}", fmt::join(r.kept_f32, ", ")));
  nlohmann::json s = {{"method", method}, {"layers", r.layers}, {"kept_f32", r.kept_f32},
                      {"fp32_perplexity", r.fp32_perplexity}, {"int8_perplexity", r.int8_perplexity},
                      {"fake_quant_perplexity", r.fake_quant_perplexity}, {"fp32_weight_bytes", r.fp32_weight_bytes},
                      {"weight_bytes", r.int8_weight_bytes}, {"file_bytes", r.file_bytes}, {"qat_steps", r.qat_steps},
                      {"seconds", r.seconds}, {"out", o.out}};
  std::cout << s.dump() << std::endl;
  return kExitOk;
}

int cmd_quantize(Args a) {
  if (a.positionals().size() != 1) throw UsageError("qiusuo quantize: expected one checkpoint; see --help");
  const std::string ckpt = a.positionals()[0];
  const std::string method = a.required("method");
  if (int t = a.threads(); t > 0) set_num_threads(t);
  io::Checkpoint ck = io::load_checkpoint(ckpt);
  std::string model = ck.config.is_object() ? ck.config.value("model", nlohmann::json()).dump() : "null";
  if (model == "\"FashionCNN\"") {
    if (method != "ptq" && method != "qat")
      throw UsageError("qiusuo quantize: the FashionCNN takes --method ptq or qat, not '" + method + "'");
    return quantize_cnn(a, ckpt, method);
  }
  if (method == "dynamic" || method == "weight-int8" || method == "weight-int4") return cmd_quantize_lm(a, ckpt, method);
  if (method == "ptq" || method == "qat") return quantize_lm_static(a, ckpt, method);
  throw UsageError("qiusuo quantize: --method must be ptq|qat (FashionCNN or language model) or "
                   "dynamic|weight-int8|weight-int4 (language model), got '" + method + "'");
}

int cmd_eval_cnn(Args& a) {
  if (a.positionals().size() != 2) throw UsageError("qiusuo eval cnn: expected one checkpoint; see --help");
  const std::string ckpt = a.positionals()[1];
  const int64_t limit = a.integer("limit-test", 0);
  const std::string root = a.str("data", data::FashionMNIST::kDefaultRoot);
  if (int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  std::string method;
  auto model = apps::load_fashion_cnn(ckpt, &method);
  data::FashionMNIST test(false, root, true);
  Tensor x = test.images, y = test.labels;
  if (limit > 0 && limit < x.size(0)) x = x.narrow(0, 0, limit).contiguous(), y = y.narrow(0, 0, limit).contiguous();
  auto [acc, loss] = apps::evaluate_classifier(*model, x, y);
  std::cout << fmt::format("test accuracy: {:.2f}%  (test loss {:.4f}, {} images, {})\n", 100 * acc, loss, x.size(0),
                           method);
  nlohmann::json s = {{"test_accuracy", acc}, {"test_loss", loss}, {"images", x.size(0)}, {"method", method},
                      {"weight_bytes", quant::model_weight_bytes(*model)}};
  std::cout << s.dump() << std::endl;
  return kExitOk;
}

}  // namespace qs::cli
