// prepare / prepare_qat: fusion of conv-bn(-relu), conv-relu and linear-relu groups,
// then the swap of every quantisable layer for its prepared form (include/qiusuo/quant/qat.h).
#include <set>

#include "qiusuo/autograd.h"
#include "qiusuo/nn/activation.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/quant/qat.h"
#include "quant/module_util.h"

namespace qs::quant {

namespace {

enum class Role { conv, bn, relu, linear, other };

Role role_of(const nn::Module& m) {
  if (dynamic_cast<const nn::ConvNd*>(&m)) return Role::conv;
  if (dynamic_cast<const nn::BatchNorm*>(&m)) return Role::bn;
  if (dynamic_cast<const nn::ReLU*>(&m)) return Role::relu;
  if (dynamic_cast<const nn::Linear*>(&m)) return Role::linear;
  return Role::other;
}

std::string parent_of(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? "" : path.substr(0, dot);
}

std::shared_ptr<nn::Module> find_module(const nn::Module& root, const std::string& path) {
  for (auto& [n, m] : root.named_modules())
    if (n == path) return m;
  return nullptr;
}

bool is_pattern(const std::vector<Role>& r) {
  using R = Role;
  return r == std::vector<R>{R::conv, R::bn} || r == std::vector<R>{R::conv, R::bn, R::relu} ||
         r == std::vector<R>{R::conv, R::relu} || r == std::vector<R>{R::linear, R::relu};
}

// Builds the prepared layer for one group (a single conv or linear, or a fusion).
std::shared_ptr<PreparedLayer> make_layer(const std::vector<std::shared_ptr<nn::Module>>& mods, const LayerQConfig& cfg,
                                          bool qat) {
  bool relu = role_of(*mods.back()) == Role::relu;
  if (auto* lin = dynamic_cast<const nn::Linear*>(mods[0].get())) return std::make_shared<QatLinear>(*lin, cfg, relu);
  auto& conv = dynamic_cast<const nn::ConvNd&>(*mods[0]);
  if (mods.size() >= 2 && role_of(*mods[1]) == Role::bn) {
    auto bn = std::dynamic_pointer_cast<nn::BatchNorm>(mods[1]);
    if (qat) return std::make_shared<QatConvBn>(conv, bn, cfg, relu);
    return std::make_shared<QatConv>(*fold_conv_bn(conv, *bn), cfg, relu);
  }
  return std::make_shared<QatConv>(conv, cfg, relu);
}

// Fuses and swaps one group of sibling modules (dotted paths); false if skipped.
bool prepare_group(nn::Module& root, const std::vector<std::string>& paths, const QConfig& q, bool qat) {
  QS_CHECK(!paths.empty(), "prepare: an empty fuse group");
  std::vector<std::shared_ptr<nn::Module>> mods;
  std::vector<Role> roles;
  for (auto& p : paths) {
    auto m = find_module(root, p);
    QS_CHECK(m != nullptr, "prepare: fuse group names '{}', which is not a module of {}", p, root.type_name());
    QS_CHECK(parent_of(p) == parent_of(paths[0]), "prepare: fuse group {{{}, ...}}: '{}' is not a sibling of '{}'",
             paths[0], p, paths[0]);
    mods.push_back(m);
    roles.push_back(role_of(*m));
  }
  QS_CHECK(paths.size() == 1 ? (roles[0] == Role::conv || roles[0] == Role::linear) : is_pattern(roles),
           "prepare: cannot fuse {} ({}...): supported groups are conv-bn, conv-bn-relu, conv-relu and linear-relu",
           paths[0], mods[0]->type_name());
  auto cfg = q.for_module(paths[0], mods[0]->type_name());
  if (!cfg) return false;
  // Held by the parent's child list and by `mods` only: otherwise the parent (or someone)
  // keeps its own pointer and would go on calling the float module after the swap. A parent
  // known to call its layers through child(name) while keeping one typed member pointer to
  // each (MultiheadAttention, GeluMLP, SwiGLU; Sequential keeps none) accounts for one more.
  auto parent = parent_of(paths[0]).empty() ? nullptr : find_module(root, parent_of(paths[0]));
  const std::string ptype = parent ? parent->type_name() : root.type_name();
  const long allowed = 2 + (detail::forwards_through_child(ptype) && ptype != "Sequential" ? 1 : 0);
  for (size_t i = 0; i < mods.size(); ++i)
    QS_CHECK(mods[i].use_count() <= allowed, "prepare: module '{}' ({}) is also held outside its parent's child list (a "
             "typed member pointer?), so replacing it would not change the model's forward(); hint: reach layers "
             "through child(name) in forward(), or add '{}' to qconfig.skip_names", paths[i], mods[i]->type_name(),
             paths[i]);
  root.replace_child(paths[0], make_layer(mods, *cfg, qat));
  for (size_t i = 1; i < paths.size(); ++i) root.replace_child(paths[i], std::make_shared<nn::Identity>());
  return true;
}

// conv-bn(-relu), conv-relu and linear-relu runs among the children of every Sequential.
std::vector<std::vector<std::string>> sequential_groups(const nn::Module& root) {
  std::vector<std::pair<std::string, const nn::Module*>> seqs;
  if (dynamic_cast<const nn::Sequential*>(&root)) seqs.emplace_back("", &root);
  for (auto& [n, m] : root.named_modules())
    if (dynamic_cast<const nn::Sequential*>(m.get())) seqs.emplace_back(n + ".", m.get());
  std::vector<std::vector<std::string>> groups;
  for (auto& [prefix, seq] : seqs) {
    auto& ch = seq->named_children();
    for (size_t i = 0; i < ch.size(); ++i) {
      Role r0 = role_of(*ch[i].second);
      if (r0 != Role::conv && r0 != Role::linear) continue;
      std::vector<std::string> g = {prefix + ch[i].first};
      std::vector<Role> roles = {r0};
      for (size_t j = i + 1; j < ch.size() && j < i + 3; ++j) {
        roles.push_back(role_of(*ch[j].second));
        if (!is_pattern(roles)) break;
        g.push_back(prefix + ch[j].first);
      }
      if (g.size() > 1) {
        groups.push_back(g);
        i += g.size() - 1;
      }
    }
  }
  return groups;
}

bool inside(const std::string& name, const std::set<std::string>& roots) {
  for (std::string p = parent_of(name); !p.empty(); p = parent_of(p))
    if (roots.count(p)) return true;
  return false;
}

void prepare_impl(nn::Module& model, const QConfig& q, const PrepareOptions& opt, bool qat) {
  for (auto& s : q.skip_names) {
    bool found = false;
    for (auto& [n, m] : model.named_modules()) found = found || n == s || (s.back() == '.' && n.rfind(s, 0) == 0);
    QS_CHECK(found, "prepare: qconfig.skip_names has '{}', which names no module of {}", s, model.type_name());
  }
  auto groups = opt.fuse;
  if (opt.auto_fuse_sequential)
    for (auto& g : sequential_groups(model)) groups.push_back(g);
  std::set<std::string> prepared, kept;  // kept: skipped by the qconfig, stays float
  for (auto& g : groups)
    if (!prepare_group(model, g, q, qat)) kept.insert(g.begin(), g.end());
  // Single layers, and a check that nothing with parameters is left unquantised by accident.
  for (auto& [n, m] : model.named_modules())
    if (dynamic_cast<PreparedLayer*>(m.get())) prepared.insert(n);
  std::vector<std::string> names;  // by name only: a held pointer would count as an outside holder
  for (auto& [n, m] : model.named_modules()) names.push_back(n);
  for (auto& n : names) {
    if (prepared.count(n) || kept.count(n) || inside(n, prepared) || inside(n, kept)) continue;
    auto m = find_module(model, n);
    if (!m) continue;
    Role r = role_of(*m);
    bool own_params = !m->named_parameters(false).empty();
    std::string type = m->type_name();
    m.reset();
    if (r == Role::conv || r == Role::linear) {
      if (prepare_group(model, {n}, q, qat)) prepared.insert(n);
      else kept.insert(n);
      continue;
    }
    if (!own_params || !q.for_module(n, type)) continue;
    QS_CHECK(q.skip_unsupported, "prepare: module '{}' ({}) has parameters but cannot be quantised{}; hint: add '{}' "
             "to qconfig.skip_names (or set skip_unsupported) to keep it in float", n, type,
             r == Role::bn ? " (a batch norm is quantised only fused after a convolution)" : "", n);
  }
  if (!qat) enable_fake_quant(model, false);
}

}  // namespace

void prepare_qat(nn::Module& model, const QConfig& qconfig, const PrepareOptions& opt) {
  prepare_impl(model, qconfig, opt, true);
  model.train();
}

void prepare(nn::Module& model, const QConfig& qconfig, const PrepareOptions& opt) {
  prepare_impl(model, qconfig, opt, false);
  model.eval();
}

void calibrate(nn::Module& model, const std::vector<Tensor>& batches) {
  QS_CHECK(!batches.empty(), "calibrate: the calibration set is empty; hint: pass at least one batch");
  model.eval();
  NoGrad ng;
  for (auto& b : batches) model.forward(b);
}

std::vector<std::pair<std::string, std::shared_ptr<PreparedLayer>>> prepared_layers(const nn::Module& model) {
  std::vector<std::pair<std::string, std::shared_ptr<PreparedLayer>>> out;
  for (auto& [n, m] : model.named_modules())
    if (auto p = std::dynamic_pointer_cast<PreparedLayer>(m)) out.emplace_back(n, p);
  return out;
}

void enable_observer(nn::Module& model, bool on) {
  for (auto& [n, m] : model.named_modules())
    if (auto* f = dynamic_cast<FakeQuantize*>(m.get())) f->enable_observer(on);
}

void enable_fake_quant(nn::Module& model, bool on) {
  for (auto& [n, m] : model.named_modules())
    if (auto* f = dynamic_cast<FakeQuantize*>(m.get())) f->enable_fake_quant(on);
}

void freeze_bn_stats(nn::Module& model) {
  for (auto& [n, m] : model.named_modules())
    if (auto* c = dynamic_cast<QatConvBn*>(m.get())) c->freeze_bn(true);
}

}  // namespace qs::quant
