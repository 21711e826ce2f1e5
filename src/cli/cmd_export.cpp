// qiusuo export CKPT --out FILE [--format qsg|onnx] [--batch N] [--seq N] [--bf16] [--dynamic-batch]
// [--dynamic-seq [--max-seq L]] [--no-optimize] [--example FILE]: a checkpoint's inference forward traced into a static graph
// (include/qiusuo/graph/graph.h), optimised by the passes of graph/passes.h and saved as
// qiusuo's graph or as ONNX (graph/onnx.h; the format follows a ".onnx" name by default).
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/autocast.h"
#include "qiusuo/autograd.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/graph/onnx.h"
#include "qiusuo/graph/passes.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/io/safetensors.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"

namespace qs::cli {

int cmd_export(Args a) {
  if (a.positionals().size() != 1) throw UsageError("qiusuo export: expected one checkpoint; see --help");
  const std::string ckpt = a.positionals()[0];
  const std::string out = a.required("out");
  const bool onnx_name = out.size() > 5 && out.compare(out.size() - 5, 5, ".onnx") == 0;
  const std::string format = a.str("format", onnx_name ? "onnx" : "qsg");
  if (format != "qsg" && format != "onnx")
    throw UsageError("qiusuo export: unknown --format '" + format + "' (available: qsg, onnx)");
  const std::string example_out = a.str("example", "");
  const int64_t batch = a.integer("batch", 1);
  const bool bf16 = a.flag("bf16");
  const bool optimise = !a.flag("no-optimize");
  graph::TraceOptions trace_opts;
  trace_opts.dynamic_batch = a.flag("dynamic-batch");
  trace_opts.dynamic_seq = a.flag("dynamic-seq");
  // The check against the model runs another batch size when the batch is dynamic.
  const int64_t probe_batch = trace_opts.dynamic_batch ? batch + 2 : batch;
  if (batch < 1) throw UsageError("qiusuo export: --batch must be positive");
  io::Checkpoint ck = io::load_checkpoint(ckpt);
  // The CNN's config names its model ("FashionCNN"); a language model's holds its whole config.
  const bool is_cnn = ck.config.is_object() && ck.config.contains("model") && ck.config["model"] == "FashionCNN";

  Generator gen(1);
  std::shared_ptr<nn::Module> holder;
  nn::Module* m = nullptr;
  Tensor example, probe;
  std::string kind;
  apps::LoadedLm lm;
  std::string probe_note = trace_opts.dynamic_batch ? fmt::format(" (batch {})", probe_batch) : "";
  if (is_cnn) {
    if (trace_opts.dynamic_seq) throw UsageError("qiusuo export: --dynamic-seq is for language models; a CNN has no sequence");
    a.finish();
    std::string method;
    auto cnn = apps::load_fashion_cnn(ckpt, &method);
    kind = "FashionCNN (" + method + ")";
    holder = cnn;
    m = cnn.get();
    example = randn({batch, 1, 28, 28}, DType::f32, &gen);
    probe = randn({probe_batch, 1, 28, 28}, DType::f32, &gen);
  } else {
    lm = apps::load_lm(ckpt);  // errors name what the checkpoint is when it is not an LM
    const int64_t trained = lm.model->config().max_seq_len;
    // A dynamic length is traced below max_seq (the example, and one more): half of it by default.
    const int64_t seq = a.integer("seq", trace_opts.dynamic_seq ? std::max<int64_t>(1, trained / 2) : trained);
    trace_opts.max_seq = a.integer("max-seq", trained);
    a.finish();
    lm.model->config().check_length(seq);
    int64_t probe_seq = seq;
    if (trace_opts.dynamic_seq) {
      lm.model->config().check_length(trace_opts.max_seq);
      if (seq >= trace_opts.max_seq)
        throw UsageError(fmt::format("qiusuo export: with --dynamic-seq, --seq ({}) must be below --max-seq ({})", seq,
                                     trace_opts.max_seq));
      probe_seq = seq + 2 <= trace_opts.max_seq ? seq + 2 : std::max<int64_t>(1, seq - 1);
      probe_note = fmt::format(" (batch {}, sequence {})", probe_batch, probe_seq);
    }
    kind = "TransformerLM";
    m = lm.model.get();
    const int64_t V = lm.model->config().vocab_size;
    example = randint(0, V, {batch, seq}, DType::i64, &gen);
    probe = randint(0, V, {probe_batch, probe_seq}, DType::i64, &gen);
  }

  auto t0 = std::chrono::steady_clock::now();
  graph::Graph g;
  {
    Autocast ac(bf16);
    g = graph::trace(*m, example, trace_opts);
  }
  const double trace_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  graph::PassReport passes;
  if (optimise) {
    passes = graph::optimize(g);
    std::cout << "optimised: " << passes.to_string() << "\n";
  }
  Tensor eager;
  {
    NoGrad ng;
    nn::EvalScope ev(*m);
    Autocast ac(bf16);
    eager = m->forward(probe);
  }
  // Another input and the model's answer, for checking the file in another runtime.
  if (!example_out.empty()) {
    std::map<std::string, std::string> meta = {{"format", "qiusuo-example"}, {"graph", out}};
    // A quantised model's output is a dequantised code: one code is its resolution.
    const graph::Value& y = g.values[size_t(g.outputs[0])];
    if (y.producer >= 0 && g.nodes[size_t(y.producer)].op == "dequantize") {
      const Tensor& scale = g.data[size_t(g.nodes[size_t(y.producer)].inputs[1])];
      if (scale.defined() && scale.numel() == 1) meta["output_quantum"] = fmt::format("{}", scale.item());
    }
    io::save_safetensors(example_out, {{"input", probe}, {"output", eager.to(DType::f32)}}, meta);
  }
  double diff = 0;
  graph::OnnxReport onnx;
  if (format == "onnx") {
    graph::OnnxOptions oo;
    oo.doc = fmt::format("{} exported by qiusuo from {}", kind, ckpt);
    onnx = graph::save_onnx(g, out, oo);
    graph::check_onnx(out);
    std::string ops;
    for (auto& [t, k] : onnx.op_types) ops += fmt::format("{}{} x{}", ops.empty() ? "" : ", ", t, k);
    std::cout << fmt::format("wrote {} (ONNX opset {}, {} nodes: {}; {} initializers, {:.1f} kB); ONNX's checker and "
                             "strict shape inference accept it\n",
                             out, onnx.opset, onnx.nodes, ops, onnx.initializers, double(onnx.bytes) / 1024);
  } else {
    graph::save(g, out);
    // The saved graph, loaded back, against the eager model on another input.
    graph::Graph back = graph::load(out);
    diff = amax(abs(graph::run(back, {probe})[0] - eager)).item();
  }
  int64_t n_params = 0, n_consts = 0;
  for (auto& v : g.values) {
    n_params += v.kind == graph::ValueKind::param;
    n_consts += v.kind == graph::ValueKind::constant;
  }
  std::cout << fmt::format("{}: {} traced into {} nodes ({} params, {} constants, {:.1f} kB of data) in {:.0f} ms\n",
                           ckpt, kind, g.nodes.size(), n_params, n_consts, double(g.param_bytes()) / 1024, trace_ms);
  if (format == "qsg")
    std::cout << fmt::format("wrote {} and {}.safetensors; the loaded graph matches the model on another input{} to {:.3g}\n",
                             out, out, probe_note, diff);
  nlohmann::json s = {{"model", kind}, {"nodes", g.nodes.size()}, {"params", n_params}, {"constants", n_consts},
                      {"data_bytes", g.param_bytes()}, {"peak_intermediate_bytes", graph::peak_intermediate_bytes(g)},
                      {"max_abs_diff", diff}, {"out", out}, {"bf16", bf16}, {"optimised", optimise},
                      {"dynamic_batch", trace_opts.dynamic_batch}, {"dynamic_seq", trace_opts.dynamic_seq},
                      {"batch_norms_folded", passes.batch_norms_folded}, {"constants_folded", passes.constants_folded},
                      {"linears_fused", passes.linears_fused}, {"activations_fused", passes.activations_fused},
                      {"attentions_fused", passes.attentions_fused},
                      {"subexpressions_merged", passes.subexpressions_merged}, {"dead_nodes_removed", passes.nodes_removed},
                      {"format", format}};
  if (format == "onnx") {
    s["onnx_opset"] = onnx.opset;
    s["onnx_nodes"] = onnx.nodes;
    s["onnx_bytes"] = onnx.bytes;
    s.erase("max_abs_diff");  // checked in ONNX Runtime from --example (tests/onnx), not here
  }
  if (!example_out.empty()) s["example"] = example_out;
  std::cout << s.dump() << std::endl;
  return kExitOk;
}

}  // namespace qs::cli
