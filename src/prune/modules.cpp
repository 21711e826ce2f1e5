// prune::head_groups and prune::swiglu_groups: channel groups built from the modules' shapes
// where a trace cannot follow them (include/qiusuo/prune/prune.h).
#include <set>

#include "qiusuo/error.h"
#include "qiusuo/nn/moe.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/prune/prune.h"

namespace qs::prune {

Dependencies head_groups(const nn::Module& model) {
  Dependencies d;
  std::set<std::string> params;
  for (auto& [n, t] : model.named_parameters()) params.insert(n);
  auto need = [&](const std::string& p) {
    QS_CHECK(params.count(p), "prune: attention layer parameter {} is not a float parameter of the model (quantised?)",
             p);
    return p;
  };
  for (auto& [name, mod] : model.named_modules()) {
    Group grp;
    grp.name = name;
    grp.producers = {name};
    if (auto* a = dynamic_cast<nn::MultiheadAttention*>(mod.get())) {
      const int64_t h = a->n_heads(), g = a->n_kv_heads(), dh = a->head_dim(), rep = h / g;
      grp.size = g;
      const std::string w = need(name + ".in_proj.weight"), b = name + ".in_proj.bias";
      for (const auto& [param, role] : {std::pair{w, Role::producer}, std::pair{b, Role::bias}}) {
        if (!params.count(param)) continue;
        grp.members.push_back({param, 0, role, 0, g, 0, rep * dh});  // query heads, rep per group
        grp.members.push_back({param, 0, role, 0, g, h, dh});        // keys: rows h dh + j dh
        grp.members.push_back({param, 0, role, 0, g, h + g, dh});    // values
      }
      grp.members.push_back({need(name + ".out_proj.weight"), 1, Role::consumer, 0, g, 0, rep * dh});
      if (params.count(name + ".relative_attention_bias"))
        grp.members.push_back({name + ".relative_attention_bias", 0, Role::scale, 0, g, 0, rep});
    } else if (auto* l = dynamic_cast<nn::MultiheadLatentAttention*>(mod.get())) {
      const nn::MlaConfig& c = l->config();
      const int64_t h = c.n_heads;
      grp.size = h;
      const std::string q = c.q_lora_rank > 0 ? name + ".q_b_proj.weight" : name + ".q_proj.weight";
      grp.members.push_back({need(q), 0, Role::producer, 0, h, 0, c.qk_nope_head_dim + c.qk_rope_head_dim});
      grp.members.push_back(
          {need(name + ".kv_b_proj.weight"), 0, Role::producer, 0, h, 0, c.qk_nope_head_dim + c.v_head_dim});
      grp.members.push_back({need(name + ".o_proj.weight"), 1, Role::consumer, 0, h, 0, c.v_head_dim});
      if (params.count(name + ".relative_attention_bias"))
        grp.members.push_back({name + ".relative_attention_bias", 0, Role::scale, 0, h, 0, 1});
    } else {
      continue;
    }
    d.groups.push_back(std::move(grp));
  }
  return d;
}

Dependencies swiglu_groups(const nn::Module& model) {
  Dependencies d;
  for (auto& [name, mod] : model.named_modules()) {
    auto* f = dynamic_cast<nn::SwiGLU*>(mod.get());
    if (!f) continue;
    Group grp;
    const std::string gate = name + ".gate_proj", up = name + ".up_proj";
    grp.name = gate + "+" + up;
    grp.producers = {gate, up};
    grp.size = f->gate_proj()->weight().size(0);
    for (const auto& [p, lin] : {std::pair{gate, f->gate_proj()}, std::pair{up, f->up_proj()}}) {
      grp.members.push_back({p + ".weight", 0, Role::producer, 0, grp.size, 0, 1});
      if (lin->bias().defined()) grp.members.push_back({p + ".bias", 0, Role::bias, 0, grp.size, 0, 1});
    }
    grp.members.push_back({name + ".down_proj.weight", 1, Role::consumer, 0, grp.size, 0, 1});
    d.groups.push_back(std::move(grp));
  }
  return d;
}

}  // namespace qs::prune
