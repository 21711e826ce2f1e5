// Structured pruning that removes what it prunes (docs/prune.md).
//
//   prune::Dependencies dep = prune::analyse(model, example);   // from a traced forward
//   prune::Plan plan = prune::plan_channels(dep, model, {.criterion = prune::Criterion::l1, .ratio = 0.5});
//   nn::StateDict small = prune::shrink(dep, plan, model.state_dict());  // new, smaller shapes
//   prune::apply_masks(dep, plan, model);   // or: zero the same channels in place
//
// A channel group is a set of channels that must go together: the output channels of a
// convolution or linear layer, joined with every other producer whose outputs they are
// added to or multiplied with (residual additions, SwiGLU's gate and up). Its members are
// the slices of parameters indexed by those channels: the producers' weight rows and
// biases, the batch norms' weights, biases and running statistics, the consumers' weight
// columns (a flatten before a linear layer makes each channel a run of columns), and
// concatenations place a group at an offset of their output. The groups and members come
// from the graph of a traced forward (graph::trace), not from per-model code: what the
// forward did is what is pruned.
//
// A group whose channels reach an op that cannot lose channels (a layer norm or softmax
// over them, a reshape that splits them, a reduction over them, an attention, a constant
// of their size) or the model's output is kept whole; `why` says which op of which layer.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "qiusuo/nn/module.h"
#include "qiusuo/tensor.h"

namespace qs::prune {

// Which part of a parameter a member is.
enum class Role {
  producer,  // weight rows of a convolution or linear layer that makes the channels (dim 0)
  bias,      // its bias
  norm,      // a batch norm's weight, bias, running mean or running variance
  consumer,  // weight columns of a layer that reads the channels (dim 1, or the columns of a flattened input)
  scale,     // a parameter multiplied or added elementwise along the channels
};
const char* role_name(Role r);

// Channels [group_start, group_start + length) of a group are the slices
// [(offset + c - group_start) * inner, ... + inner) of `param` along `dim`.
struct Member {
  std::string param;  // state-dict name
  int dim = 0;
  Role role = Role::producer;
  int64_t group_start = 0, length = 0, offset = 0, inner = 1;
};

struct Group {
  std::string name;                    // the producers' layer names joined by '+': "c1", "b1.c+b2.c"
  std::vector<std::string> producers;  // layers (parameter names without ".weight")
  int64_t size = 0;                    // channels
  std::vector<Member> members;
  bool prunable = true;
  std::string why;  // why not prunable
};

struct Dependencies {
  std::vector<Group> groups;  // in the order the forward made them
  // The group named `layer` (its name or any of its producers); nullptr if none.
  const Group* find(const std::string& layer) const;
  // A table: one line per group (name, size, prunable or why not, members).
  std::string to_text() const;
};

// Traces model(example) in eval mode and derives the channel groups. Errors: a forward
// that cannot be traced (graph::trace's errors), one that chose its path by tensor values
// (Graph::value_dependent: an MoE layer's routing; swiglu_groups serves it).
Dependencies analyse(nn::Module& model, const Tensor& example);

enum class Criterion {
  l1,        // sum of |w| over each producer row (Li et al. 2017), summed over a group's producers
  l2,        // square root of the sum of w^2 over the producers' rows
  bn_scale,  // |gamma| of the group's batch norms (network slimming, Liu et al. 2017)
};
Criterion parse_criterion(const std::string& method);  // "l1-channel" | "l2-channel" | "bn-scale"
const char* criterion_name(Criterion c);

// One importance per channel of group `g` under `c`, from the model's current parameters.
// `per_entry`: divided by what each score sums over (l1: the mean |w| of the channel's
// producer entries; l2: their root mean square; bn-scale: the mean |gamma| over the group's
// batch norms), so that channels of different layers compare (a global ranking).
// Errors: bn-scale for a group without a batch norm (naming it).
std::vector<double> channel_scores(const Group& g, const nn::Module& model, Criterion c, bool per_entry = false);

struct PruneOptions {
  Criterion criterion = Criterion::l1;
  double ratio = 0;                        // fraction of each prunable group's channels removed, in [0, 1)
  std::map<std::string, double> per_layer;  // overrides by group or layer name (a group not named gets ratio)
  // Rank the channels of all prunable groups together (per-entry scores) and remove the
  // floor(ratio * total) lowest, leaving every group at least one channel: the layers lose
  // different shares (network slimming's global threshold). Excludes per_layer.
  bool global = false;
  // Round each group's kept channels up to a multiple of this (1: no rounding; at most the
  // group's size): oneDNN's blocked layouts work on 8 (AVX2) or 16 (AVX-512) channels, so a
  // width just under a multiple runs as fast as the multiple (docs/prune.md measures it).
  // Not with global.
  int64_t round_to = 1;
};

// Groups a trace cannot follow (a reshape into heads; an MoE layer runs only the experts its
// example routes to), built from the modules' shapes instead, one per layer in module order:
//   head_groups:   one per attention layer. nn::MultiheadAttention: a channel per key/value
//                  head with its n_heads / n_kv_heads query heads: their rows of in_proj (and
//                  its bias: queries, keys, values) and columns of out_proj. MLA: a channel
//                  per head: its q_proj (or q_b_proj) rows [d_nope + d_rope], its kv_b_proj rows
//                  (W_UK and W_UV, [d_nope + d_v]) and its o_proj columns [d_v]; the shared
//                  latent and RoPE key belong to no head. T5's per-head bias rows follow in both.
//   swiglu_groups: one per nn::SwiGLU (dense, each routed expert, the shared experts): its
//                  hidden neurons, rows of gate_proj and up_proj (and biases) and columns of
//                  down_proj, the group analyse() derives for a dense SwiGLU.
// Errors: a float projection missing (a quantised model).
Dependencies head_groups(const nn::Module& model);
Dependencies swiglu_groups(const nn::Module& model);

// Which channels of each group go: the floor(ratio * size) lowest-scoring ones (ties: the
// later channel goes), or with `global` the lowest over all groups. Errors, each naming the
// layer: a ratio outside [0, 1), a per-layer entry that names no group or a group that
// cannot be pruned (with why), a group that would keep no channel, global with per-layer
// ratios.
struct Plan {
  std::vector<std::vector<int64_t>> removed;  // per group of Dependencies::groups, ascending
  int64_t channels_removed() const;
};
Plan plan_channels(const Dependencies& dep, const nn::Module& model, const PruneOptions& opt);

// The n channels with the lowest scores, ascending (ties: the later channel goes), as
// plan_channels picks them in a group. Errors: n outside [0, scores.size()].
std::vector<int64_t> lowest(const std::vector<double>& scores, int64_t n);

// The state dict with every removed channel's slices taken out of its members: the
// parameters of a smaller dense model (the same names, smaller shapes). Entries that no
// group touches are the same tensors. Errors: a member's parameter missing from `state`
// or of another size than the analysis saw.
nn::StateDict shrink(const Dependencies& dep, const Plan& plan, const nn::StateDict& state);

// Makes `model` the smaller dense model of `small` (a shrink() result) in place: every
// Conv1d/2d/3d, Linear and BatchNorm1d/2d/3d whose parameters have new shapes in `small` is
// replaced (Module::replace_child) by a layer of those shapes with the same options (a
// depthwise convolution keeps groups == channels), then `small` is loaded. A traced forward
// of `example` then checks that the forward runs the new layers. A parent whose forward
// calls a child through its own typed pointer would still run the old one, so that is an
// error naming the layer (Sequential and FashionCNN reach their children through child()).
// Other layers whose parameters changed shape are errors too.
void rebuild(nn::Module& model, const nn::StateDict& small, const Tensor& example);

// Zeroes the removed channels' slices of the model's parameters and buffers in place: the
// masked model, whose outputs the shrunken one reproduces: a removed channel is zero from
// its producer on (a batch norm's zeroed weight and bias give 0 whatever its statistics) and
// its consumers' zeroed columns add nothing.
void apply_masks(const Dependencies& dep, const Plan& plan, nn::Module& model);

}  // namespace qs::prune
