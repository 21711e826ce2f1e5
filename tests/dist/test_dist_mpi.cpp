// DistributedDataParallel and the collectives, run by ctest under `mpirun -np 2` (test
// dist.mpi): every test runs on both ranks at once and compares what DDP produced with what
// one process computes on the whole global batch. A rank that fails an assertion and
// skips a collective leaves the other to QS_DIST_TIMEOUT (set short by the test), so a
// failure ends the job instead of hanging it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "qiusuo/autograd.h"
#include "qiusuo/dist/dist.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/norm.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/nn/activation.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"

namespace qs {
namespace {

// A two-layer MLP whose parameters can be copied into a reference twin.
struct Mlp {
  std::shared_ptr<nn::Linear> a, b;
  explicit Mlp(uint64_t seed) {
    Generator g(seed);
    a = std::make_shared<nn::Linear>(6, 16, true, g);
    b = std::make_shared<nn::Linear>(16, 3, true, g);
  }
  Tensor forward(const Tensor& x) { return b->forward(tanh(a->forward(x))); }
  nn::NamedTensors named_parameters() const {
    nn::NamedTensors p;
    for (auto& [n, t] : a->named_parameters()) p.emplace_back("a." + n, t);
    for (auto& [n, t] : b->named_parameters()) p.emplace_back("b." + n, t);
    return p;
  }
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> v;
    for (auto& [n, t] : named_parameters()) v.push_back(t);
    return v;
  }
};

// The same global batch on every rank (drawn from one seed); rank r uses rows [r*B, (r+1)*B).
Tensor global_x(int64_t rows) {
  Generator g(99);
  return randn({rows, 6}, DType::f32, &g);
}
Tensor global_y(int64_t rows) {
  Generator g(7);
  return randn({rows, 3}, DType::f32, &g);
}

Tensor mse(const Tensor& p, const Tensor& y) { return mean(mul(sub(p, y), sub(p, y))); }

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<double> g = got.to_vector(), w = want.to_vector();
  for (size_t i = 0; i < g.size(); ++i) ASSERT_NEAR(g[i], w[i], tol) << what << " element " << i;
}

uint64_t hash_of(const std::vector<Tensor>& ts) {
  uint64_t h = 1469598103934665603ull;
  for (auto& t : ts) {
    const auto* p = static_cast<const unsigned char*>(t.raw_data());
    for (size_t i = 0; i < size_t(t.numel()) * t.element_size(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

TEST(DistMpi, RunsOnTwoRanks) {
  dist::init();
  ASSERT_EQ(dist::world_size(), 2) << "run this test under mpirun -np 2";
  EXPECT_TRUE(dist::active());
  EXPECT_FALSE(dist::mpi_library().empty());
  EXPECT_DOUBLE_EQ(dist::all_reduce_sum(double(dist::rank() + 1)), 3.0);
  std::vector<int64_t> m{dist::rank(), 10 - dist::rank()};
  dist::all_reduce_max(m);
  EXPECT_EQ(m, (std::vector<int64_t>{1, 10}));
  std::vector<uint64_t> all = dist::all_gather(uint64_t(100 + dist::rank()));
  EXPECT_EQ(all, (std::vector<uint64_t>{100, 101}));
  Tensor t = full({3}, float(dist::rank() + 5));
  dist::broadcast({t}, 1);
  EXPECT_EQ(t.to_vector(), (std::vector<double>{6, 6, 6}));
}

TEST(DistMpi, CheckSameNamesTheRankThatDiffers) {
  dist::check_same("a setting", "same");
  try {
    dist::check_same("the learning rate", dist::rank() == 0 ? "lr=1" : "lr=2");
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("rank(s) 1 of 2 were started with the learning rate different"),
              std::string::npos)
        << e.what();
  }
}

// Each rank's gradient after finish() equals the gradient one process computes over the
// global batch; with tiny buckets, so that several all-reduces run, some during backward.
TEST(DistMpi, GradientsEqualTheGlobalBatchGradient) {
  for (int64_t bucket : {int64_t(64), int64_t(1) << 20}) {
    Mlp model(1), ref(2);
    dist::DistributedDataParallel ddp(model.named_parameters(), {}, dist::DdpOptions{bucket});
    // Construction broadcast rank 0's weights; the reference copies them.
    {
      NoGrad ng;
      auto mp = model.parameters(), rp = ref.parameters();
      for (size_t i = 0; i < mp.size(); ++i) rp[i].copy_(mp[i]);
    }
    const int64_t B = 5;
    Tensor X = global_x(2 * B), Y = global_y(2 * B);
    Tensor x = X.narrow(0, dist::rank() * B, B), y = Y.narrow(0, dist::rank() * B, B);
    mse(model.forward(x), y).backward();
    ddp.finish();
    mse(ref.forward(X), Y).backward();
    auto mp = model.parameters(), rp = ref.parameters();
    for (size_t i = 0; i < mp.size(); ++i)
      expect_close(mp[i].grad(), rp[i].grad(), 1e-6, fmt::format("bucket {} parameter {}", bucket, i));
    const dist::StepTrace& tr = ddp.last_trace();
    if (bucket == 64) {
      EXPECT_GE(ddp.num_buckets(), 3);
      ASSERT_EQ(int(tr.buckets.size()), ddp.num_buckets());
      // The first buckets were handed to the communication thread before backward ended.
      EXPECT_LT(tr.buckets[0].launched_ms, tr.backward_end_ms);
      for (auto& b : tr.buckets) EXPECT_LE(b.started_ms, b.done_ms);
    } else {
      EXPECT_EQ(ddp.num_buckets(), 1);
    }
  }
}

// Rank 0 has 2 samples, rank 1 has 6: each rank's loss scaled by its share, the mean over all 8.
TEST(DistMpi, UnevenSharesAreWeighted) {
  Mlp model(3), ref(4);
  dist::DistributedDataParallel ddp(model.named_parameters());
  {
    NoGrad ng;
    auto mp = model.parameters(), rp = ref.parameters();
    for (size_t i = 0; i < mp.size(); ++i) rp[i].copy_(mp[i]);
  }
  Tensor X = global_x(8), Y = global_y(8);
  const int64_t first = dist::rank() == 0 ? 0 : 2, n = dist::rank() == 0 ? 2 : 6;
  const Tensor loss = mse(model.forward(X.narrow(0, first, n)), Y.narrow(0, first, n));
  mul(loss, scalar_tensor(double(n) * 2 / 8)).backward();  // this rank's share
  ddp.finish();
  mse(ref.forward(X), Y).backward();
  auto mp = model.parameters(), rp = ref.parameters();
  for (size_t i = 0; i < mp.size(); ++i) expect_close(mp[i].grad(), rp[i].grad(), 1e-6, fmt::format("parameter {}", i));
}

// Sync batch norm on two ranks (2 and 4 samples) against the fused batch norm over all 6:
// outputs, every input gradient, the sum of the ranks' weight gradients and the running
// statistics agree. The loss is a sum, so the ranks' losses add up to the global one.
TEST(DistMpi, SyncBatchNormEqualsBatchNormOverTheGlobalBatch) {
  Generator g(21);
  const Tensor X = randn({6, 3, 4, 5}, DType::f32, &g), G = randn({6, 3, 4, 5}, DType::f32, &g);
  const Tensor w = randn({3}, DType::f32, &g), b = randn({3}, DType::f32, &g);
  for (bool relu : {false, true}) {
    nn::BatchNorm2d bn(3), ref(3);
    {
      NoGrad ng;
      for (Tensor t : {bn.weight(), ref.weight()}) t.copy_(w);
      for (Tensor t : {bn.bias(), ref.bias()}) t.copy_(b);
    }
    bn.set_sync(true);
    EXPECT_EQ(nn::set_sync_batch_norm(ref, false), 1);
    const int64_t first = dist::rank() == 0 ? 0 : 2, n = dist::rank() == 0 ? 2 : 4;
    Tensor x = X.narrow(0, first, n).contiguous().detach().requires_grad_(true);
    Tensor xr = X.detach().clone().requires_grad_(true);
    Tensor y = relu ? bn.forward_relu(x) : bn.forward(x);
    Tensor yr = relu ? ref.forward_relu(xr) : ref.forward(xr);
    expect_close(y, yr.narrow(0, first, n).contiguous(), 2e-5, "output");
    sum(mul(y, G.narrow(0, first, n))).backward();
    sum(mul(yr, G)).backward();
    expect_close(x.grad(), xr.grad().narrow(0, first, n).contiguous(), 2e-5, "input gradient");
    expect_close(dist::all_reduce(bn.weight().grad()), ref.weight().grad(), 2e-4, "weight gradient");
    expect_close(dist::all_reduce(bn.bias().grad()), ref.bias().grad(), 2e-4, "bias gradient");
    expect_close(bn.running_mean(), ref.running_mean(), 1e-6, "running mean");
    expect_close(bn.running_var(), ref.running_var(), 1e-5, "running variance");
  }
}

// A parameter only rank 0 uses gets half rank 0's gradient; one no rank uses stays
// undefined. Buckets are rebuilt after the first step; the second step must still agree.
TEST(DistMpi, UnusedParametersAndRebuiltBuckets) {
  Generator g(5);
  Tensor w1 = randn({4}, DType::f32, &g).requires_grad_(true), w2 = randn({4}, DType::f32, &g).requires_grad_(true),
         w3 = randn({4}, DType::f32, &g).requires_grad_(true);
  dist::DistributedDataParallel ddp({{"w1", w1}, {"w2", w2}, {"w3", w3}}, {}, dist::DdpOptions{16});
  for (int step = 0; step < 2; ++step) {
    w1.zero_grad();
    w2.zero_grad();
    w3.zero_grad();
    Tensor loss = sum(mul(w1, w1));
    if (dist::rank() == 0) loss = add(loss, sum(w2));
    loss.backward();
    ddp.finish();
    expect_close(w1.grad(), mul(w1, scalar_tensor(2.0f)).detach(), 1e-6, "w1");
    expect_close(w2.grad(), full({4}, 0.5f), 1e-7, "w2");
    EXPECT_FALSE(w3.grad().defined());
  }
}

// no_sync: two local backwards, then one synchronised: the mean of the ranks' sums.
TEST(DistMpi, NoSyncAccumulatesLocally) {
  Tensor w = ones({3}).requires_grad_(true);
  dist::DistributedDataParallel ddp({{"w", w}});
  const float k = float(dist::rank() + 1);  // rank 0: 1, rank 1: 2
  {
    dist::DistributedDataParallel::NoSync ns(ddp);
    sum(mul(w, scalar_tensor(k))).backward();
    sum(mul(w, scalar_tensor(k))).backward();
    expect_close(w.grad(), full({3}, 2 * k), 0, "local sum under no_sync");
  }
  sum(mul(w, scalar_tensor(k))).backward();
  ddp.finish();
  expect_close(w.grad(), full({3}, (3 * 1 + 3 * 2) / 2.0f), 1e-6, "synchronised");
}

TEST(DistMpi, SecondBackwardWithoutNoSyncIsAnError) {
  Tensor w = ones({2}).requires_grad_(true);
  dist::DistributedDataParallel ddp({{"w", w}});
  sum(w).backward();
  EXPECT_THROW(sum(w).backward(), Error);
}

// After training steps every rank holds the same parameters and buffers, although each
// saw other samples; buffers follow rank 0.
TEST(DistMpi, RanksStayIdentical) {
  Mlp model(10 + uint64_t(dist::rank()));  // different on purpose: DDP broadcasts rank 0's
  Tensor buf = full({2}, float(dist::rank()));
  dist::DistributedDataParallel ddp(model.named_parameters(), {buf});
  optim::SGD sgd(model.parameters(), 0.1, 0.9);
  Tensor X = global_x(8), Y = global_y(8);
  for (int step = 0; step < 3; ++step) {
    sgd.zero_grad();
    mse(model.forward(X.narrow(0, dist::rank() * 4, 4)), Y.narrow(0, dist::rank() * 4, 4)).backward();
    {
      NoGrad ng;
      buf.copy_(add(buf, full({2}, double(dist::rank() + 1))));  // each rank moves its own copy
    }
    ddp.finish();
    sgd.step();
    std::vector<uint64_t> h = dist::all_gather(hash_of(model.parameters()));
    EXPECT_EQ(h[0], h[1]) << "parameters differ after step " << step;
    EXPECT_EQ(buf.to_vector(), (std::vector<double>{double(step + 1), double(step + 1)}));
  }
}

}  // namespace
}  // namespace qs

// gtest's main, with MPI_Finalize once every test has run on both ranks.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  qs::dist::init();
  int rc = RUN_ALL_TESTS();
  // A rank that failed must not leave the other one waiting in MPI_Finalize.
  std::vector<int64_t> failed{rc};
  qs::dist::all_reduce_max(failed);
  qs::dist::finalize();
  return int(failed[0]);
}
