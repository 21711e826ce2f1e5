// Static graphs: a forward traced through the one dispatch point into a list of
// primitives (rows of the op table), checked by a verifier and run again without the
// model's code.
//
//   graph::Graph g = graph::trace(model, {x});      // eval mode, no autograd
//   g.verify();                                     // throws, naming the node, if broken
//   std::vector<Tensor> y = graph::run(g, {x2});    // same primitives, same kernels
//   std::cout << g.to_text();
//
// Tracing records what ran, not the code that chose it: a branch on tensor values or on
// shapes is frozen at the path the example took, tensors the forward makes itself
// (masks, position tables) become constants of the example's size, and a graph replays
// only inputs of the example's shapes and dtypes (run() checks them), except for a
// dynamic batch dimension or sequence length (TraceOptions).

#pragma once
#include <functional>
#include <string>
#include <vector>

#include "qiusuo/attrs.h"
#include "qiusuo/tensor.h"

namespace qs::nn {
class Module;
}

namespace qs::graph {

// Symbolic sizes: a dimension or an integer attribute equal to the batch size (kBatch,
// written "N") or to the sequence length (kSeq, "S") in a graph traced with a dynamic
// batch or sequence length, bound by run() from its inputs.
constexpr int64_t kBatch = -(int64_t(1) << 62);
constexpr int64_t kSeq = kBatch + 1;
inline bool is_symbol(int64_t d) { return d == kBatch || d == kSeq; }
// The values bound to the symbols (-1: not bound).
struct Sizes {
  int64_t batch = -1, seq = -1;
  int64_t operator()(int64_t d) const { return d == kBatch ? batch : d == kSeq ? seq : d; }
};
bool has_symbols(const Shape& s);
Shape with_sizes(Shape s, const Sizes& z);  // symbols replaced by their sizes
Attrs with_sizes(const Attrs& a, const Sizes& z);

enum class ValueKind {
  input,     // a graph input, given to run()
  param,     // a named parameter or buffer of the model, stored in the graph
  constant,  // any other tensor the forward read (captured at trace time)
  node,      // an output of a node
};
const char* value_kind_name(ValueKind k);

struct Value {
  std::string name;  // inputs "x0", ...; params their state-dict name; constants "const0", ...; nodes "v0", ...
  ValueKind kind = ValueKind::node;
  Shape shape;
  DType dtype = DType::f32;
  int producer = -1;  // node index (kind node), else -1
};

struct Node {
  std::string op;           // the op-table row's name ("convolution", "relu", ...)
  std::vector<int> inputs;  // value ids, -1 for an absent optional input
  Attrs attrs;
  std::vector<int> outputs;  // value ids
};

class Graph {
 public:
  std::vector<Value> values;
  std::vector<Node> nodes;     // in execution order
  std::vector<int> inputs;     // value ids of the graph inputs, in run()'s order
  std::vector<int> outputs;    // value ids of the results
  std::vector<Tensor> data;    // per value: the tensor of a param or constant (else undefined)
  // With a dynamic sequence length: the longest S the graph's data serves (position tables
  // are constants of that length, sliced to S); 0 without one.
  int64_t max_seq = 0;
  // Where the traced forward chose its path by tensor values (an MoE layer's routing: which
  // experts ran on which tokens). The graph holds the example's choice and would replay it
  // for every input, so save(), save_onnx() and run() refuse it (check_replayable); what
  // only reads its structure (flops(), pruning's analysis) may use it.
  std::vector<std::string> value_dependent;

  // An Error naming value_dependent's entries when there are any.
  void check_replayable() const;

  // Checks the graph and throws an Error naming the node (index and op) or value at
  // fault: unknown op names, wrong input or output counts, ids out of range, a value used
  // before it is produced (a cycle) or produced twice, a node output not marked as
  // produced by it, params and constants without data or with data of another shape or
  // dtype, outputs that are not values, and node outputs whose shapes or dtypes differ
  // from what the op's shape rule gives for the node's inputs.
  void verify() const;

  // One line per value declaration and per node, e.g.
  //   v3: f32[8, 32, 28, 28] = convolution(x0, c1.weight, c1.bias) {stride=[1, 1], ...}
  std::string to_text() const;

  int64_t param_bytes() const;  // bytes of the params' and constants' data
  // Operations of the convolution and linear nodes (float and quantised) and matmuls, 2 per
  // multiply-add (a dynamic size counts 1): the FLOPs pruning reports.
  int64_t flops() const;
};

// ---- files: `path` holds the text form (to_text()), `path + ".safetensors"` the data of
// every param and constant under its value name. The first line is "qsgraph <version>";
// this build writes version kFormatVersion and reads every version up to it.
// Version 2 added the dynamic batch dimension ("N"), version 3 the dynamic sequence length
// ("S", and the line "max_seq L"); older files still load.
constexpr int kFormatVersion = 3;

// Atomic (both files). Errors (IOError): value names that the text form cannot carry
// (empty, or holding whitespace, ',', ':', '(', ')', '=', '{', '}', '[', ']', '"'), any
// write failure; and the graph is verified first.
void save(const Graph& g, const std::string& path);

// Reads and verifies a graph. Errors (IOError) name the file and line: a missing or
// truncated file, a version from the future, an unknown line, op or dtype, a malformed
// shape or attribute, a name declared twice or used undeclared, a weights file that lacks
// a param or constant, holds another shape or dtype, or holds tensors the graph does not
// declare; and every error of verify().
Graph load(const std::string& path);

// Runs fn(inputs) under NoGrad and records every primitive it dispatches at top level
// (ops that kernels dispatch inside others are not part of the graph). `named` gives
// names to tensors the forward reads that are not inputs (parameters and buffers); any
// other tensor it reads becomes a constant. Errors: fn returns a tensor that no recorded
// op produced and that is not an input, a param or a constant; an input appears twice.
struct TraceOptions {
  // Dim 0 of every input is a batch dimension: after one untraced warm-up forward (so that
  // caches filled on a first call do not change the path), the forward is traced at the
  // example's batch and again at batch + 1 (the first row repeated), and every size and
  // integer attribute that
  // follows the batch becomes kBatch. Errors name what cannot follow it: a constant whose
  // shape depends on the batch (a tensor the forward makes from the batch size), a size or
  // attribute that changes otherwise (batch * 2), a graph that changes shape.
  bool dynamic_batch = false;
  // Dim `seq_dim` of every input is a sequence length: the untraced warm-up forward runs at
  // `max_seq` (the example's tokens repeated), so that tables the model caches by length
  // (RoPE's) are built for the longest sequence the graph will take, and the forward is
  // traced again at the example's length + 1; sizes that follow the sequence become kSeq,
  // and Graph::max_seq = max_seq. Errors as for the batch; the example must be shorter than
  // max_seq.
  bool dynamic_seq = false;
  int64_t seq_dim = 1, max_seq = 0;
};
Graph trace(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
            const std::vector<Tensor>& example_inputs,
            const std::vector<std::pair<std::string, Tensor>>& named = {}, const TraceOptions& opts = {});

// A module's single-tensor forward, in eval mode (restored afterwards), its parameters and
// buffers named as in its state dict.
Graph trace(nn::Module& model, const Tensor& example_input, const TraceOptions& opts = {});

// For each value, the index of the last node that reads it (nodes.size() for a graph
// output, -1 for a value nothing reads): where run() releases it.
std::vector<int> last_readers(const Graph& g);

// Runs the graph's nodes in order through the dispatch point (optimised kernels where
// they apply, as eagerly) and returns its outputs. A dynamic batch or sequence length is
// read from the inputs. Errors: a wrong number of inputs, an input whose shape or dtype
// differs from the traced one, inputs that disagree on the batch size or the sequence
// length, a sequence longer than max_seq.
std::vector<Tensor> run(const Graph& g, const std::vector<Tensor>& inputs);
// The symbols' sizes given by inputs, with run()'s checks of the inputs.
Sizes bind_inputs(const Graph& g, const std::vector<Tensor>& inputs);

}  // namespace qs::graph
