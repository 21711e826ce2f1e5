#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "io/atomic_file.h"
#include "test_util.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/io/out_dir.h"

using namespace qs;
using namespace qs::testing;
namespace fs = std::filesystem;

namespace {

std::string dir() {
  static std::string d = temp_dir("checkpoint");
  return d;
}

io::Checkpoint make_ckpt(uint64_t seed, int64_t step) {
  Generator g(seed);
  io::Checkpoint c;
  c.model = {{"fc1.weight", randn({7, 3}, DType::f32, &g)},
             {"fc1.bias", randn({7}, DType::f32, &g)},
             {"emb", randn({5, 4}, DType::f32, &g).to(DType::bf16)}};
  c.optimizer = {{"fc1.weight.exp_avg", randn({7, 3}, DType::f32, &g)},
                 {"step_count", full({1}, double(step), DType::i64)}};
  c.step = step;
  c.rng_state = g.state();
  c.config = {{"lr", 3e-4}, {"layers", {64, 32}}, {"name", "mlp"}};
  c.extra = {{"best_acc", 0.875}};
  return c;
}

void expect_equal(const io::Checkpoint& a, const io::Checkpoint& b) {
  auto same = [](const io::NamedTensors& x, const io::NamedTensors& y) {
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(x[i].first, y[i].first);
      ASSERT_EQ(x[i].second.dtype(), y[i].second.dtype());
      ASSERT_EQ(x[i].second.shape(), y[i].second.shape());
      EXPECT_EQ(0, std::memcmp(x[i].second.raw_data(), y[i].second.raw_data(),
                               size_t(x[i].second.numel()) * x[i].second.element_size()));
    }
  };
  same(a.model, b.model);
  same(a.optimizer, b.optimizer);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.rng_state, b.rng_state);
  EXPECT_EQ(a.config, b.config);
  EXPECT_EQ(a.extra, b.extra);
}

int count_temp_files(const std::string& d) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(d))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
  return n;
}

}  // namespace

TEST(Checkpoint, RoundTrip) {
  std::string p = dir() + "/rt.ckpt";
  io::Checkpoint c = make_ckpt(1, 1234);
  c.rng_state.push_back(~uint64_t(0));  // the full u64 range survives JSON
  io::save_checkpoint(p, c);
  expect_equal(io::load_checkpoint(p), c);
  // It is a valid safetensors file with prefixed names.
  auto f = io::load_safetensors(p);
  EXPECT_EQ(f.tensors[0].first, "model.fc1.weight");
  EXPECT_EQ(f.tensors[3].first, "optim.fc1.weight.exp_avg");
  EXPECT_EQ(f.metadata.at("format"), "qiusuo-checkpoint-v1");
}

TEST(Checkpoint, RestoresGeneratorExactly) {
  Generator g(99);
  for (int i = 0; i < 5; ++i) g.next_normal();
  io::Checkpoint c;
  c.rng_state = g.state();
  std::string p = dir() + "/rng.ckpt";
  io::save_checkpoint(p, c);
  Generator h(0);
  h.set_state(io::load_checkpoint(p).rng_state);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(g.next_normal(), h.next_normal());
}

TEST(Checkpoint, InterruptedSaveLeavesPreviousIntact) {
  std::string p = dir() + "/interrupt.ckpt";
  io::Checkpoint old_ckpt = make_ckpt(2, 100);
  io::save_checkpoint(p, old_ckpt);
  std::string old_bytes = read_bytes(p);
  io::Checkpoint next = make_ckpt(3, 200);
  // Fail after k bytes for k across the whole file: length field, header, data, last byte.
  std::vector<int64_t> ks = {0, 1, 7, 8, 9, 64, 300};
  int64_t total = int64_t(old_bytes.size());
  for (int64_t k = 400; k < total; k += 97) ks.push_back(k);
  ks.push_back(total - 1);
  for (int64_t k : ks) {
    io::detail::set_fail_after_bytes_for_testing(k);
    EXPECT_THROW(io::save_checkpoint(p, next), IOError) << "k=" << k;
    io::detail::set_fail_after_bytes_for_testing(-1);
    EXPECT_EQ(read_bytes(p), old_bytes) << "k=" << k;
    EXPECT_EQ(count_temp_files(dir()), 0) << "k=" << k;
  }
  expect_equal(io::load_checkpoint(p), old_ckpt);
  io::save_checkpoint(p, next);  // and a save that completes replaces it
  expect_equal(io::load_checkpoint(p), next);
  EXPECT_EQ(count_temp_files(dir()), 0);
}

TEST(Checkpoint, PlainSafetensorsIsRejectedWithHint) {
  std::string p = dir() + "/plain.safetensors";
  io::save_safetensors(p, {{"w", ones({2})}});
  try {
    io::load_checkpoint(p);
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("qiusuo-checkpoint-v1"), std::string::npos) << m;
    EXPECT_NE(m.find("hint"), std::string::npos) << m;
  }
}

TEST(Checkpoint, MalformedMetadataIsRejected) {
  auto base = std::map<std::string, std::string>{{"format", "qiusuo-checkpoint-v1"}, {"step", "5"},
                                                 {"rng_state", "[1,2]"}, {"config", "{}"}, {"extra", "null"}};
  std::string p = dir() + "/bad.ckpt";
  io::save_safetensors(p, {{"model.w", ones({2})}}, base);
  EXPECT_EQ(io::load_checkpoint(p).step, 5);
  auto expect_bad = [&](const std::string& key, const std::string& val, const std::string& needle) {
    auto m = base;
    if (val.empty()) m.erase(key); else m[key] = val;
    io::save_safetensors(p, {{"model.w", ones({2})}}, m);
    try {
      io::load_checkpoint(p);
      ADD_FAILURE() << key << "=" << val << ": expected IOError";
    } catch (const IOError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_bad("step", "five", "'step'");
  expect_bad("step", "1.5", "step: expected an integer");
  expect_bad("rng_state", "[-1]", "rng_state");
  expect_bad("rng_state", "{}", "rng_state");
  expect_bad("config", "{oops", "'config'");
  expect_bad("extra", "", "'extra'");
  expect_bad("format", "qiusuo-checkpoint-v0", "found 'qiusuo-checkpoint-v0'");
  // A config nested 200,000 deep is refused while parsing (a copy or dump of it would
  // overflow the stack), and the message quotes only the start of it.
  expect_bad("config", "{\"x\":" + std::string(200000, '[') + std::string(200000, ']') + "}", "nested deeper than 128");
  try {
    auto m = base;
    m["config"] = "{\"x\":" + std::string(200000, '[') + std::string(200000, ']') + "}";
    io::save_safetensors(p, {{"model.w", ones({2})}}, m);
    io::load_checkpoint(p);
  } catch (const IOError& e) {
    EXPECT_LT(std::string(e.what()).size(), 1000u);
  }
  io::save_safetensors(p, {{"weights.w", ones({2})}}, base);
  EXPECT_THROW(io::load_checkpoint(p), IOError);
}

TEST(Checkpoint, SaveAndLastWritesBothAndRefreshesLast) {
  const std::string d = dir() + "/and_last";
  io::Checkpoint a = make_ckpt(3, 10), b = make_ckpt(4, 20);
  EXPECT_EQ(io::save_checkpoint_and_last(d, "step-10.safetensors", a), d + "/step-10.safetensors");
  expect_equal(io::load_checkpoint(d + "/last.safetensors"), a);
  io::save_checkpoint_and_last(d, "step-20.safetensors", b);
  expect_equal(io::load_checkpoint(d + "/step-10.safetensors"), a);  // the older one stays
  expect_equal(io::load_checkpoint(d + "/last.safetensors"), b);
  EXPECT_FALSE(fs::exists(d + "/last.safetensors.tmp"));
}

TEST(Checkpoint, SaveAndLastNamesTheFolderItCannotMake) {
  const std::string file = dir() + "/a_file";
  { std::ofstream(file) << "x"; }
  try {
    io::save_checkpoint_and_last(file + "/sub", "step-1.safetensors", make_ckpt(5, 1));
    FAIL() << "expected an IOError";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find(file + "/sub"), std::string::npos) << e.what();
  }
}

// An output folder's claim: one holder at a time (a second fails naming the first's pid,
// released when the first ends), and the temporary files interrupted saves leave are removed
// when the folder is claimed, nothing else.
TEST(OutDirLock, OneHolderAndStaleTemporaryFilesRemoved) {
  namespace fs = std::filesystem;
  const std::string dir = qs::testing::temp_dir("out_dir_lock") + "/run";
  {
    io::OutDirLock first(dir, "train test");
    EXPECT_TRUE(fs::exists(dir + "/.qiusuo.lock"));
    std::string msg;
    try {
      io::OutDirLock second(dir, "train test");
    } catch (const IOError& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("is in use by another run (pid " + std::to_string(::getpid())), std::string::npos) << msg;
    EXPECT_NE(msg.find("train test"), std::string::npos) << msg;
  }
  auto touch = [&](const std::string& name) { std::ofstream(dir + "/" + name) << "x"; };
  for (const char* f : {"last.safetensors.tmp", "step-3.safetensors.tmp.12345", "report.json.tmp.7", "keep.safetensors",
                        "notes.tmp.x", ".tmp", "a.tmp.", "tmp"})
    touch(f);
  fs::create_directories(dir + "/figures");
  touch("figures/roc.svg.tmp.9");
  io::OutDirLock again(dir, "train test");  // the first holder has gone
  std::vector<std::string> removed = again.removed();
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{"last.safetensors.tmp", "report.json.tmp.7",
                                               "step-3.safetensors.tmp.12345"}));
  for (const char* f : {"keep.safetensors", "notes.tmp.x", ".tmp", "a.tmp.", "tmp", "figures/roc.svg.tmp.9"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
}
