// The channel groups of a traced forward (include/qiusuo/prune/prune.h).
//
// Every value of the graph may carry channels: one of its dims, in which each channel is a
// run of `inner` consecutive indices, cut into segments that belong to groups. The walk
// goes through the nodes in order: a convolution or linear layer starts a group for its
// outputs and records the columns that read its input's groups; ops that keep channels
// where they are (activations, batch norms, pooling, reshapes that keep them whole, ...)
// pass them on; additions and products join the groups of their operands; concatenations
// place groups side by side. Any other op that reads channels, and the model's output,
// make their groups unprunable: a rule either handles an input or the walk blocks it.
#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "qiusuo/graph/graph.h"
#include "qiusuo/prune/prune.h"
#include "tensor/strided.h"

namespace qs::prune {

namespace {

using graph::Graph;
using graph::Node;
using graph::ValueKind;

struct Seg {
  int group;  // -1: channels no group owns (an input's, a constant's)
  int64_t gstart, len, pos;  // group channels [gstart, gstart + len) sit at channels [pos, pos + len)
};

struct Info {
  int dim = -1;  // -1: no channels tracked
  int64_t inner = 1;
  std::vector<Seg> segs;
  bool tracked() const { return dim >= 0; }
  int64_t channels() const {
    int64_t n = 0;
    for (const Seg& s : segs) n = std::max(n, s.pos + s.len);
    return n;
  }
};

struct GroupB {
  int parent;
  int64_t size;
  std::vector<std::string> producers;
  std::vector<Member> members;
  bool prunable = true;
  std::string why;
};

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

std::string layer_of(const std::string& param) {
  auto dot = param.rfind('.');
  return dot == std::string::npos ? param : param.substr(0, dot);
}

class Walker {
 public:
  explicit Walker(const Graph& g) : g_(g), info_(g.values.size()) {}

  Dependencies run() {
    for (size_t n = 0; n < g_.nodes.size(); ++n) visit(int(n));
    for (int id : g_.outputs) block(id, "its channels are the model's output");
    check_shared_params();
    return collect();
  }

 private:
  // ---- groups
  int find(int g) {
    while (groups_[size_t(g)].parent != g) g = groups_[size_t(g)].parent = groups_[size_t(groups_[size_t(g)].parent)].parent;
    return g;
  }
  void mark(int g, const std::string& why) {
    GroupB& r = groups_[size_t(find(g))];
    if (r.prunable) r.prunable = false, r.why = why;
  }
  int new_group(int64_t size, const std::string& producer) {
    groups_.push_back(GroupB{int(groups_.size()), size, {producer}, {}, true, ""});
    return int(groups_.size()) - 1;
  }
  void add_member(int g, const std::string& param, int dim, Role role, int64_t gstart, int64_t len, int64_t offset,
                  int64_t inner) {
    groups_[size_t(g)].members.push_back(Member{param, dim, role, gstart, len, offset, inner});
  }
  // Joins two groups whose channels meet one to one; false if they cannot be joined
  // (different sizes, or parts of groups at different places).
  bool unite(const Seg& a, const Seg& b) {
    int ra = find(a.group), rb = find(b.group);
    if (ra == rb) return a.gstart == b.gstart;
    const GroupB &A = groups_[size_t(ra)], &B = groups_[size_t(rb)];
    if (A.size != B.size || a.gstart != 0 || b.gstart != 0 || a.len != A.size || b.len != B.size) return false;
    GroupB& keep = groups_[size_t(ra)];
    GroupB& gone = groups_[size_t(rb)];
    keep.producers.insert(keep.producers.end(), gone.producers.begin(), gone.producers.end());
    keep.members.insert(keep.members.end(), gone.members.begin(), gone.members.end());
    gone.members.clear();
    if (!gone.prunable && keep.prunable) keep.prunable = false, keep.why = gone.why;
    gone.parent = ra;
    return true;
  }

  // ---- values
  const graph::Value& val(int id) const { return g_.values[size_t(id)]; }
  bool is_param(int id) const { return id >= 0 && val(id).kind == ValueKind::param; }
  bool tracked(int id) const { return id >= 0 && info_[size_t(id)].tracked(); }
  void block(int id, const std::string& why) {
    if (!tracked(id)) return;
    for (const Seg& s : info_[size_t(id)].segs)
      if (s.group >= 0) mark(s.group, why);
  }
  std::string at(int n) const {
    const Node& node = g_.nodes[size_t(n)];
    // The layer: the first parameter the node reads, if any.
    for (int id : node.inputs)
      if (is_param(id)) return fmt::format("{} (node {}, layer {})", node.op, n, layer_of(val(id).name));
    return fmt::format("{} (node {})", node.op, n);
  }
  int64_t wrap(int64_t d, int64_t rank) const { return wrap_dim(d, rank, "prune"); }

  // A group for the output channels of a producer weight (one group per weight, also
  // when a layer runs twice).
  int producer_group(int w, int dim, int64_t size, int bias) {
    const std::string& name = val(w).name;
    auto it = producer_of_.find(name);
    if (it != producer_of_.end()) return it->second;
    int g = new_group(size, layer_of(name));
    add_member(g, name, dim, Role::producer, 0, size, 0, 1);
    if (bias >= 0) {
      if (is_param(bias)) add_member(g, val(bias).name, 0, Role::bias, 0, size, 0, 1);
      else mark(g, fmt::format("the bias of {} is not a parameter", layer_of(name)));
    }
    producer_of_[name] = g;
    return g;
  }
  // Consumer columns: the channels of `x` (along dim `xdim` of x, `inner` per channel) read
  // as indices along `dim` of param w.
  void consume(int x, int w, int dim, Role role) {
    const Info& in = info_[size_t(x)];
    for (const Seg& s : in.segs)
      if (s.group >= 0) add_member(s.group, val(w).name, dim, role, s.gstart, s.len, s.pos, in.inner);
  }
  Info whole(int g, int dim, int64_t size) const { return Info{dim, 1, {Seg{g, 0, size, 0}}}; }

  void visit(int n) {
    const Node& node = g_.nodes[size_t(n)];
    const std::string& op = node.op;
    const auto& in = node.inputs;
    std::set<int> handled;  // input positions a rule dealt with
    auto out = [&](size_t k, Info i) {
      if (k < node.outputs.size()) info_[size_t(node.outputs[k])] = std::move(i);
    };
    auto pass0 = [&] {  // every output carries input 0's channels
      handled.insert(0);
      for (size_t k = 0; k < node.outputs.size(); ++k) out(k, info_[size_t(in[0])]);
    };
    const int64_t rank0 = in.empty() || in[0] < 0 ? 0 : int64_t(val(in[0]).shape.size());

    static const std::set<std::string> kUnary = {"relu", "sigmoid", "tanh", "gelu", "silu", "neg",  "exp",  "log",
                                                 "sqrt", "rsqrt",   "abs",  "sin",  "cos",  "clamp", "dropout",
                                                 "cast", "copy"};
    static const std::set<std::string> kElementwise = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                                       "where", "eq", "ne",  "lt",  "le",  "gt",      "ge"};
    if (kUnary.count(op)) {
      pass0();
    } else if (op == "convolution") {
      conv(n, handled);
    } else if (op == "linear") {
      linear(n, handled);
    } else if (op == "matmul" && is_param(in[1]) && val(in[1]).shape.size() == 2) {
      // x [..., K] @ W [K, N]: W's rows read x's channels, its columns make new ones.
      const int x = in[0], w = in[1];
      if (tracked(x)) {
        if (info_[size_t(x)].dim == rank0 - 1) consume(x, w, 0, Role::consumer), handled.insert(0);
      }
      handled.insert(1);
      const int64_t N = val(w).shape[1];
      out(0, whole(producer_group(w, 1, N, -1), int(val(node.outputs[0]).shape.size()) - 1, N));
    } else if (op == "batch_norm") {
      handled.insert({1, 2, 3, 4});
      if (tracked(in[0])) {
        const Info& x = info_[size_t(in[0])];
        if (x.dim == 1 && x.inner == 1) {
          bool ok = true;
          for (int k = 1; k <= 4; ++k) {
            if (in[size_t(k)] < 0) continue;
            if (is_param(in[size_t(k)])) consume(in[0], in[size_t(k)], 0, Role::norm);
            else ok = false;
          }
          if (ok) {
            pass0();
            out(1, Info{0, 1, x.segs});
            out(2, Info{0, 1, x.segs});
          } else {
            block(in[0], fmt::format("{} has statistics that are not parameters or buffers", at(n)));
          }
        }
      }
    } else if (op == "max_pool" || op == "avg_pool" || op == "adaptive_avg_pool") {
      if (tracked(in[0]) && info_[size_t(in[0])].dim == 1) pass0();
    } else if (kElementwise.count(op)) {
      elementwise(n, handled);
    } else if (op == "sum" || op == "mean" || op == "var" || op == "logsumexp" || op == "amax" || op == "amin" ||
               op == "max_dim" || op == "min_dim" || op == "softmax" || op == "log_softmax") {
      if (tracked(in[0])) reduction(n, handled);
    } else if (op == "view") {
      if (tracked(in[0])) view(n, handled);
    } else if (op == "permute") {
      if (tracked(in[0])) {
        const auto& dims = node.attrs.ints("dims");
        Info i = info_[size_t(in[0])];
        for (size_t j = 0; j < dims.size(); ++j)
          if (wrap(dims[j], rank0) == i.dim) {
            i.dim = int(j);
            break;
          }
        handled.insert(0);
        out(0, i);
      }
    } else if (op == "slice") {
      if (tracked(in[0]) && wrap(node.attrs.i("dim"), rank0) != info_[size_t(in[0])].dim) pass0();
    } else if (op == "expand") {
      if (tracked(in[0])) {
        Info i = info_[size_t(in[0])];
        const Shape& os = val(node.outputs[0]).shape;
        const int64_t shift = int64_t(os.size()) - rank0;
        if (os[size_t(i.dim + shift)] == val(in[0]).shape[size_t(i.dim)]) {
          i.dim += int(shift);
          handled.insert(0);
          out(0, i);
        }
      }
    } else if (op == "cat") {
      cat(n, handled);
    }
    // Whatever a rule did not take: its channels cannot be followed through this op.
    for (size_t k = 0; k < in.size(); ++k)
      if (!handled.count(int(k))) block(in[k], fmt::format("{} reads its channels", at(n)));
  }

  void conv(int n, std::set<int>& handled) {
    const Node& node = g_.nodes[size_t(n)];
    const int x = node.inputs[0], w = node.inputs[1], b = node.inputs.size() > 2 ? node.inputs[2] : -1;
    if (!is_param(w)) return;
    const Shape& ws = val(w).shape;
    const int64_t O = ws[0], groups = node.attrs.i("groups", 1), C = val(x).shape[1];
    handled.insert({1, 2});
    if (groups == 1) {
      if (tracked(x) && info_[size_t(x)].dim == 1 && info_[size_t(x)].inner == 1) {
        consume(x, w, 1, Role::consumer);
        handled.insert(0);
      }
      info_[size_t(node.outputs[0])] = whole(producer_group(w, 0, O, b), 1, O);
    } else if (groups == C && O == C) {
      // Depthwise: output channel c is input channel c's; its weight row and bias follow it.
      if (tracked(x) && info_[size_t(x)].dim == 1 && info_[size_t(x)].inner == 1) {
        consume(x, w, 0, Role::scale);
        if (b >= 0) {
          if (is_param(b)) consume(x, b, 0, Role::bias);
          else block(x, fmt::format("the bias of {} is not a parameter", at(n)));
        }
        handled.insert(0);
        info_[size_t(node.outputs[0])] = info_[size_t(x)];
      }
    } else {
      block(x, fmt::format("{} is a grouped convolution ({} groups)", at(n), groups));
      handled.insert(0);
    }
  }

  void linear(int n, std::set<int>& handled) {
    const Node& node = g_.nodes[size_t(n)];
    const int x = node.inputs[0], w = node.inputs[1], b = node.inputs[2];
    if (!is_param(w)) return;
    handled.insert({1, 2});
    const int64_t rank = int64_t(val(x).shape.size());
    if (tracked(x) && info_[size_t(x)].dim == rank - 1) {
      consume(x, w, 1, Role::consumer);
      handled.insert(0);
    }
    const int64_t N = val(w).shape[0];
    info_[size_t(node.outputs[0])] = whole(producer_group(w, 0, N, b), int(rank) - 1, N);
  }

  // Broadcasting ops: the channels of every tracked operand must sit at one output dim and
  // meet one to one (their groups join); an untracked operand must be broadcast along that
  // dim, or be a parameter indexed by the channels.
  void elementwise(int n, std::set<int>& handled) {
    const Node& node = g_.nodes[size_t(n)];
    const auto& in = node.inputs;
    const int64_t R = int64_t(val(node.outputs[0]).shape.size());
    int out_dim = -1;
    int64_t inner = 1;
    std::vector<int> tracked_ins;
    for (int id : in)
      if (tracked(id)) {
        const Info& i = info_[size_t(id)];
        const int d = i.dim + int(R - int64_t(val(id).shape.size()));
        if (out_dim >= 0 && (d != out_dim || i.inner != inner)) return;  // channels at different places
        out_dim = d, inner = i.inner;
        tracked_ins.push_back(id);
      }
    if (tracked_ins.empty()) return;
    const Info& first = info_[size_t(tracked_ins[0])];
    const int64_t extent = val(tracked_ins[0]).shape[size_t(first.dim)];
    // Untracked operands.
    std::vector<int> members;  // parameters indexed by the channels
    for (int id : in) {
      if (id < 0 || tracked(id)) continue;
      const Shape& s = val(id).shape;
      const int64_t d = out_dim - (R - int64_t(s.size()));
      if (d < 0 || s[size_t(d)] == 1) continue;
      if (is_param(id) && s[size_t(d)] == extent) {
        members.push_back(id);
        continue;
      }
      return;  // a value of fixed channels: blocked by visit()
    }
    // Join the tracked operands' groups, segment by segment.
    for (size_t k = 1; k < tracked_ins.size(); ++k) {
      const Info& o = info_[size_t(tracked_ins[k])];
      if (o.segs.size() != first.segs.size()) return;
      for (size_t s = 0; s < o.segs.size(); ++s) {
        const Seg &a = first.segs[s], &b = o.segs[s];
        if (a.pos != b.pos || a.len != b.len) return;
        if (a.group < 0 || b.group < 0) {
          if (a.group != b.group) return;
          continue;
        }
        if (!unite(a, b)) {
          mark(a.group, fmt::format("{} joins it with {}, which differs in size", at(n), groups_[size_t(find(b.group))].producers[0]));
          mark(b.group, groups_[size_t(find(a.group))].why);
        }
      }
    }
    for (int p : members) {
      const Shape& s = val(p).shape;
      const int d = out_dim - int(R - int64_t(s.size()));
      for (const Seg& sg : first.segs)
        if (sg.group >= 0) add_member(sg.group, val(p).name, d, Role::scale, sg.gstart, sg.len, sg.pos, first.inner);
    }
    for (size_t k = 0; k < in.size(); ++k)
      if (in[k] >= 0) handled.insert(int(k));
    Info o = first;
    o.dim = out_dim;
    for (size_t k = 0; k < node.outputs.size(); ++k) info_[size_t(node.outputs[k])] = o;
  }

  void reduction(int n, std::set<int>& handled) {
    const Node& node = g_.nodes[size_t(n)];
    const int x = node.inputs[0];
    const int64_t rank = int64_t(val(x).shape.size());
    Info i = info_[size_t(x)];
    std::vector<int64_t> dims;
    bool keepdim = node.attrs.b("keepdim", false);
    if (node.attrs.has("dims")) dims = node.attrs.ints("dims");
    else if (node.attrs.has("dim")) dims = {node.attrs.i("dim")};
    if (node.op == "softmax" || node.op == "log_softmax") keepdim = true;
    if (dims.empty()) return;  // over everything
    int below = 0;
    for (int64_t d : dims) {
      const int64_t w = wrap(d, rank);
      if (w == i.dim) return;  // over the channels: removing one changes the others' results
      below += w < i.dim;
    }
    if (!keepdim) i.dim -= below;
    handled.insert(0);
    for (size_t k = 0; k < node.outputs.size(); ++k) info_[size_t(node.outputs[k])] = i;
  }

  // A reshape keeps the channels if they stay the outermost part of one output dim.
  void view(int n, std::set<int>& handled) {
    const Node& node = g_.nodes[size_t(n)];
    const int x = node.inputs[0];
    const Shape& s = val(x).shape;
    const Shape& t = val(node.outputs[0]).shape;
    Info i = info_[size_t(x)];
    const size_t c = size_t(i.dim);
    const int64_t P = prod(s, 0, c), block_size = i.inner * prod(s, c + 1, s.size());
    const int64_t C = s[c] / i.inner;
    for (size_t d = 0; d < t.size(); ++d) {
      if (prod(t, 0, d) != P) continue;
      const int64_t Q = prod(t, d + 1, t.size());
      if (Q == 0 || block_size % Q != 0 || t[d] * Q != C * block_size) continue;
      i.dim = int(d);
      i.inner = block_size / Q;
      handled.insert(0);
      info_[size_t(node.outputs[0])] = i;
      return;
    }
  }

  void cat(int n, std::set<int>& handled) {
    const Node& node = g_.nodes[size_t(n)];
    const auto& in = node.inputs;
    const int64_t rank = int64_t(val(node.outputs[0]).shape.size());
    const int64_t dim = wrap(node.attrs.i("dim"), rank);
    int64_t inner = 0;
    bool along = false, across = false;
    for (int id : in)
      if (tracked(id)) {
        const Info& i = info_[size_t(id)];
        (i.dim == dim ? along : across) = true;
        if (inner && i.inner != inner) return;
        inner = i.inner;
      }
    if (!along || across) return;  // nothing tracked, or joined along another dim (not followed)
    Info o{int(dim), inner, {}};
    int64_t pos = 0;
    for (int id : in) {
      const int64_t size = val(id).shape[size_t(dim)];
      if (size % inner != 0) return;
      if (tracked(id)) {
        for (Seg sg : info_[size_t(id)].segs) sg.pos += pos, o.segs.push_back(sg);
      } else {
        o.segs.push_back(Seg{-1, 0, size / inner, pos});
      }
      pos += size / inner;
    }
    for (size_t k = 0; k < in.size(); ++k) handled.insert(int(k));
    info_[size_t(node.outputs[0])] = o;
  }

  // A parameter dim indexed by two groups at the same place (a layer that reads different
  // groups on different calls) cannot lose channels for one of them only.
  void check_shared_params() {
    std::map<std::pair<std::string, int>, std::vector<std::pair<int, const Member*>>> uses;
    for (size_t g = 0; g < groups_.size(); ++g)
      if (find(int(g)) == int(g))
        for (const Member& m : groups_[g].members) uses[{m.param, m.dim}].push_back({int(g), &m});
    for (auto& [key, list] : uses)
      for (size_t a = 0; a < list.size(); ++a)
        for (size_t b = a + 1; b < list.size(); ++b) {
          const Member &ma = *list[a].second, &mb = *list[b].second;
          if (list[a].first == list[b].first) continue;
          const bool overlap = ma.offset * ma.inner < (mb.offset + mb.length) * mb.inner &&
                               mb.offset * mb.inner < (ma.offset + ma.length) * ma.inner;
          if (!overlap) continue;
          const std::string why = fmt::format("parameter {} (dim {}) is indexed by two groups", key.first, key.second);
          mark(list[a].first, why);
          mark(list[b].first, why);
        }
  }

  Dependencies collect() {
    Dependencies d;
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (find(int(g)) != int(g)) continue;
      GroupB& b = groups_[g];
      Group out;
      out.producers = b.producers;
      for (const auto& p : b.producers) out.name += (out.name.empty() ? "" : "+") + p;
      out.size = b.size;
      // The same slice recorded twice (a layer run twice on the same group) counts once.
      for (const Member& m : b.members) {
        bool dup = false;
        for (const Member& o : out.members)
          dup = dup || (o.param == m.param && o.dim == m.dim && o.group_start == m.group_start && o.length == m.length &&
                        o.offset == m.offset && o.inner == m.inner);
        if (!dup) out.members.push_back(m);
      }
      out.prunable = b.prunable;
      out.why = b.why;
      d.groups.push_back(std::move(out));
    }
    return d;
  }

  const Graph& g_;
  std::vector<Info> info_;
  std::vector<GroupB> groups_;
  std::map<std::string, int> producer_of_;
};

}  // namespace

const char* role_name(Role r) {
  switch (r) {
    case Role::producer: return "producer";
    case Role::bias: return "bias";
    case Role::norm: return "norm";
    case Role::consumer: return "consumer";
    case Role::scale: return "scale";
  }
  return "?";
}

const Group* Dependencies::find(const std::string& layer) const {
  for (const Group& g : groups)
    if (g.name == layer || std::find(g.producers.begin(), g.producers.end(), layer) != g.producers.end()) return &g;
  return nullptr;
}

std::string Dependencies::to_text() const {
  std::ostringstream os;
  for (const Group& g : groups) {
    os << g.name << ": " << g.size << " channels, " << (g.prunable ? "prunable" : "kept whole: " + g.why) << "\n";
    for (const Member& m : g.members) {
      os << "  " << role_name(m.role) << " " << m.param << " dim " << m.dim;
      if (m.offset || m.length != g.size || m.group_start) os << " [" << m.offset << ", " << m.offset + m.length << ")";
      if (m.inner != 1) os << " x" << m.inner;
      os << "\n";
    }
  }
  return os.str();
}

Dependencies analyse(nn::Module& model, const Tensor& example) {
  graph::Graph g = graph::trace(model, example);
  QS_CHECK(g.value_dependent.empty(),
           "prune: the forward chose its path by tensor values ({}), so a trace shows only the example's path; for "
           "MoE feed-forwards use prune::swiglu_groups",
           g.value_dependent[0]);
  return Walker(g).run();
}

}  // namespace qs::prune
