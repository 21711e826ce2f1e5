// ONNX export of a static graph (graph.h): each op-table row becomes one ONNX operator or a
// few (opset 17), params and constants become initializers, a dynamic batch becomes the
// symbolic dimension "N".
//
//   graph::Graph g = graph::trace(model, x);
//   graph::optimize(g);
//   graph::save_onnx(g, "cnn.onnx");     // atomic
//   graph::check_onnx("cnn.onnx");       // ONNX's checker and strict shape inference
//
// Rows with no standard ONNX operator are written as the operators that compute them:
// gelu as Erf (or Tanh) arithmetic, linear as MatMul/Gemm + Add, rope as Slice/Mul/Concat,
// the fused attention as MatMul, Softmax and an additive causal mask (key and value heads
// repeated for grouped-query attention). INT8 graphs are written in the QDQ form:
// QuantizeLinear / DequantizeLinear around the float Conv, Gemm or MatMul, weights per
// channel, the bias as int32 in units of x_scale * w_scale (what ONNX Runtime fuses into
// its integer kernels), 7-bit ranges as a Clip before quantising. What has no ONNX form is
// refused by name (the node, its op, and why): bf16 graphs (ONNX Runtime's CPU kernels are
// float32), dynamic and weight-only quantised linears, attention with padding masks, ALiBi
// or relative-position terms, and extra outputs (max_pool's indices, batch_norm's
// statistics, attention's log-sum-exp) that a later node reads.
#pragma once
#include <map>
#include <string>

#include "qiusuo/graph/graph.h"

namespace qs::graph {

struct OnnxOptions {
  std::string doc;  // the model's doc_string (e.g. the checkpoint it came from)
};

struct OnnxReport {
  int opset = 0;
  int64_t nodes = 0;                   // ONNX nodes written
  int64_t initializers = 0;
  int64_t bytes = 0;                   // size of the file
  std::map<std::string, int> op_types;  // ONNX operator -> count
};

inline constexpr int kOnnxOpset = 17;

// Writes g as an ONNX model (ir_version 8, opset kOnnxOpset) to `path`, atomically.
// Errors (Error): a node with no ONNX form, as above; a write failure (IOError).
OnnxReport save_onnx(const Graph& g, const std::string& path, const OnnxOptions& opts = {});

// Loads an ONNX file and runs ONNX's checker (full check) and its shape inference in
// strict mode, which also checks every declared intermediate shape against the
// operators' rules. Errors (Error) carry the checker's message and the file name.
void check_onnx(const std::string& path);

}  // namespace qs::graph
