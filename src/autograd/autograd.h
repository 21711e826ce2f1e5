// Autograd internals: graph nodes, per-tensor metadata and the backward engine.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ops/op.h"
#include "qiusuo/autograd.h"

namespace qs::autograd {

using ops::TensorSpec;
using Hook = std::function<Tensor(const Tensor&)>;

struct Edge {
  std::shared_ptr<Node> node;  // null: that input needs no gradient
  int input_nr = 0;            // which output slot of `node` this edge feeds
};

// One recorded op (or a leaf's gradient accumulator).
struct Node {
  std::string name;             // op name, "AccumulateGrad", ...
  ops::OpKind op{};
  ops::GradCtx ctx;             // saved tensors and attributes
  std::vector<Edge> next;       // one per op input
  std::vector<TensorSpec> out_spec;      // shape/dtype of each output (for zero grads)
  std::vector<std::vector<Hook>> hooks;  // per output: tensor hooks
  bool released = false;        // saved tensors freed by a backward without retain_graph
  // Leaf accumulator: the tensor whose .grad receives the gradient.
  std::weak_ptr<TensorImpl> leaf;
  bool is_accumulator = false;
  bool not_differentiable = false;  // reaching it is an error
  // The module whose forward recorded it (kept only in anomaly mode, for its errors).
  std::shared_ptr<const std::string> scope;
};
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;       // for non-leaves
  int output_nr = 0;
  std::weak_ptr<Node> grad_accumulator;  // for leaves (created on demand)
  std::vector<Hook> leaf_hooks;        // hooks registered on a leaf
  std::vector<std::function<void(Tensor&)>> post_accumulate_hooks;  // after .grad is written
};

AutogradMeta& meta(const Tensor& t);  // creates on demand
std::shared_ptr<Node> gradient_edge_node(const Tensor& t, int& input_nr);  // grad_fn or accumulator

// Records `call` in the graph (called by dispatch when grad mode is on and an input
// requires grad).
void record(const ops::OpDef& def, ops::OpCall& call);

// Runs backward from roots with their gradients. If `inputs` is non-empty, returns
// gradients for them instead of accumulating into leaves.
std::vector<Tensor> run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                                 bool retain_graph, const std::vector<Tensor>& inputs);

}  // namespace qs::autograd
