// prune::rebuild: a model's layers replaced by ones of the pruned shapes (include/qiusuo/prune/prune.h).
#include <map>
#include <set>

#include "qiusuo/graph/graph.h"
#include "qiusuo/nn/conv.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/prune/prune.h"

namespace qs::prune {

namespace {

std::shared_ptr<nn::Module> conv_like(const nn::ConvNd& c, const Shape& w, Generator& gen) {
  nn::ConvOptions opt = c.options();
  const int64_t out = w[0], depthwise = opt.groups > 1 && opt.groups == c.in_channels();
  if (depthwise) opt.groups = out;
  const int64_t in = w[1] * opt.groups;
  const std::vector<int64_t> k(w.begin() + 2, w.end());
  switch (k.size()) {
    case 1: return std::make_shared<nn::Conv1d>(in, out, k, opt, gen);
    case 2: return std::make_shared<nn::Conv2d>(in, out, k, opt, gen);
    default: return std::make_shared<nn::Conv3d>(in, out, k, opt, gen);
  }
}

std::shared_ptr<nn::Module> norm_like(const nn::BatchNorm& b, int64_t c) {
  const bool affine = b.weight().defined();
  switch (b.spatial_dims()) {
    case 1: return std::make_shared<nn::BatchNorm1d>(c, b.eps(), b.momentum(), affine);
    case 2: return std::make_shared<nn::BatchNorm2d>(c, b.eps(), b.momentum(), affine);
    default: return std::make_shared<nn::BatchNorm3d>(c, b.eps(), b.momentum(), affine);
  }
}

}  // namespace

void rebuild(nn::Module& model, const nn::StateDict& small, const Tensor& example) {
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : small) shapes[name] = t.shape();
  auto changed = [&](const std::string& name, const Tensor& now) {
    auto it = shapes.find(name);
    return it != shapes.end() && now.defined() && it->second != now.shape();
  };
  Generator gen(0);
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> swaps;
  std::set<std::string> swapped_params;
  for (const auto& [name, mod] : model.named_modules()) {
    std::shared_ptr<nn::Module> fresh;
    if (auto* c = dynamic_cast<nn::ConvNd*>(mod.get()); c && changed(name + ".weight", c->weight())) {
      fresh = conv_like(*c, shapes[name + ".weight"], gen);
    } else if (auto* l = dynamic_cast<nn::Linear*>(mod.get()); l && changed(name + ".weight", l->weight())) {
      const Shape& w = shapes[name + ".weight"];
      fresh = std::make_shared<nn::Linear>(w[1], w[0], l->bias().defined(), gen);
    } else if (auto* b = dynamic_cast<nn::BatchNorm*>(mod.get());
               b && (changed(name + ".running_mean", b->running_mean()))) {
      fresh = norm_like(*b, shapes[name + ".running_mean"][0]);
    }
    if (!fresh) continue;
    for (const auto& [p, t] : fresh->named_parameters()) swapped_params.insert(name + "." + p);
    swaps.push_back({name, fresh});
  }
  // Anything else whose shape changed has no layer here to rebuild it.
  std::set<std::string> covered;
  for (const auto& [name, fresh] : swaps) {
    for (const auto& [p, t] : fresh->named_parameters()) covered.insert(name + "." + p);
    for (const auto& [p, t] : fresh->named_buffers()) covered.insert(name + "." + p);
  }
  for (const auto& [name, t] : model.state_dict())
    QS_CHECK(!changed(name, t) || covered.count(name),
             "prune: {} changes shape ({} -> {}) but its layer is not a Conv, Linear or BatchNorm that rebuild knows",
             name, shape_str(t.shape()), shape_str(shapes[name]));
  for (auto& [name, fresh] : swaps) model.replace_child(name, fresh);
  model.load_state_dict(small);
  // The forward must reach the new layers: their weights are parameters of the traced graph.
  const graph::Graph g = graph::trace(model, example);
  std::set<std::string> used;
  for (const graph::Value& v : g.values)
    if (v.kind == graph::ValueKind::param) used.insert(v.name);
  for (const std::string& p : swapped_params)
    QS_CHECK(used.count(p),
             "prune: the forward does not read {} after its layer was rebuilt: a parent calls the old layer through "
             "its own pointer; build the pruned model from its new sizes instead",
             p);
}

}  // namespace qs::prune
