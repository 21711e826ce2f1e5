// Sequential: children named "0", "1", ... applied in order (torch.nn.Sequential).
// Every child must have a single-tensor forward.
#pragma once
#include <initializer_list>

#include "qiusuo/nn/module.h"

namespace qs::nn {

class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  void push_back(std::shared_ptr<Module> m);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return named_children().size(); }
  std::shared_ptr<Module> operator[](size_t i) const;  // error if i >= size()
};

}  // namespace qs::nn
