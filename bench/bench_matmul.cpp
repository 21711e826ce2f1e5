// matmul_1024: a 1024^3 f32 product through qiusuo's matmul op (dispatch, autograd
// bookkeeping off, primitive cache) against the same oneDNN primitive called directly.
#include <oneapi/dnnl/dnnl.hpp>

#include "bench/bench.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::bench {

namespace {

std::vector<nlohmann::json> matmul_1024(const Options& o) {
  const int64_t n = 1024;
  const int iters = o.iters ? o.iters : 20;
  Tensor a = randn({n, n}), b = randn({n, n});
  double flop = 2.0 * double(n) * double(n) * double(n);
  NoGrad ng;
  double ours = time_per_call([&] { matmul(a, b); }, 3, iters);

  using namespace dnnl;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  memory::desc md({n, n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(md, md, md), eng);
  dnnl::matmul prim(pd);
  Tensor c = empty({n, n});
  memory am(md, eng, a.raw_data()), bm(md, eng, b.raw_data()), cm(md, eng, c.raw_data());
  double direct = time_per_call(
      [&] {
        prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
        s.wait();
      },
      3, iters);
  return {{{"workload", "matmul_1024"},
           {"gflops", flop / ours / 1e9},
           {"onednn_direct_gflops", flop / direct / 1e9},
           {"ratio_to_direct", direct / ours},
           {"ms", ours * 1e3},
           {"impl", pd.impl_info_str()}}};
}

}  // namespace

std::vector<Workload> matmul_workloads() {
  return {{"matmul_1024", "1024^3 f32 matmul through the op vs oneDNN direct (GFLOP/s)", matmul_1024}};
}

}  // namespace qs::bench
