// libFuzzer: graph::load on arbitrary graph text beside a fixed, valid weights file (the
// one the seed corpus's graph declares), then run() when it loads: the parser, the
// verifier's shape rules and the interpreter on whatever passes.
#include "fuzz_common.h"
#include "qiusuo/graph/graph.h"
#include "qiusuo/io/safetensors.h"
#include "qiusuo/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool weights = [] {
    // fuzz/corpus/graph/*.qsg declare w: f32[3, 4] and b: f32[3] (scripts/fuzz.sh writes them).
    qs::io::save_safetensors(qs::fuzz::as_file(nullptr, 0, "g.qsg") + ".safetensors",
                             {{"w", qs::ones({3, 4})}, {"b", qs::zeros({3})}});
    return true;
  }();
  (void)weights;
  const std::string path = qs::fuzz::as_file(data, size, "g.qsg");
  qs::fuzz::refusals_ok([&] {
    qs::graph::Graph g = qs::graph::load(path);
    std::vector<qs::Tensor> in;
    for (int id : g.inputs) {
      const auto& v = g.values[size_t(id)];
      qs::Shape s = qs::graph::with_sizes(v.shape, {2, 3});
      if (qs::shape_numel(s) > (1 << 20)) return;
      in.push_back(qs::zeros(s, v.dtype));
    }
    qs::graph::run(g, in);
  });
  return 0;
}
