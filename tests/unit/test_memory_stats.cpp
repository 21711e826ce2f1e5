// qs::memory_stats: the tensor-storage counter, and the O(n) training memory of the LM
// (the fused attention keeps no [T, T] matrices), guarded by the peak-storage ratio.
#include <gtest/gtest.h>

#include "qiusuo/memory.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"

using namespace qs;

TEST(MemoryStats, CountsLiveAndPeakStorage) {
  const MemoryStats before = memory_stats();
  reset_peak_memory();
  {
    Tensor a = zeros({1024}, DType::f32);  // 4096 bytes, a multiple of 64
    Tensor b = zeros({10}, DType::f64);    // 80 bytes, allocated as 128
    EXPECT_EQ(memory_stats().current_bytes - before.current_bytes, 4096 + 128);
    EXPECT_GE(memory_stats().allocations - before.allocations, 2);
    Tensor view = a.narrow(0, 0, 10);  // views allocate nothing
    EXPECT_EQ(memory_stats().current_bytes - before.current_bytes, 4096 + 128);
  }
  EXPECT_EQ(memory_stats().current_bytes, before.current_bytes);
  EXPECT_EQ(memory_stats().peak_bytes - before.current_bytes, 4096 + 128);
  reset_peak_memory();
  EXPECT_EQ(memory_stats().peak_bytes, memory_stats().current_bytes);
}

namespace {

// Peak live storage of the second AdamW step (the first allocates the optimiser state) of
// a one-layer GPT of the benchmark's width on b x n random tokens.
int64_t training_step_peak(int64_t b, int64_t n) {
  nn::LMConfig c;
  c.vocab_size = 256, c.d_model = 256, c.n_layers = 1, c.n_heads = 8, c.max_seq_len = n;
  c.block = "gpt", c.tie_weights = false;
  Generator g(0);
  nn::TransformerLM m(c, {}, g);
  optim::AdamW opt(m.parameters(), 3e-4);
  Tensor x = randint(0, 256, {b, n}, DType::i64, &g), y = randint(0, 256, {b, n}, DType::i64, &g);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = cross_entropy(m(x).reshape({-1, 256}), y.reshape({-1}));
    loss.backward();
    opt.step();
  };
  step();
  reset_peak_memory();
  step();
  return memory_stats().peak_bytes;
}

}  // namespace

TEST(MemoryStats, LmTrainingPeakGrowsSublinearlyInSequenceLength) {
  const int64_t short_seq = training_step_peak(4, 256), long_seq = training_step_peak(1, 1024);
  RecordProperty("peak_n256", std::to_string(short_seq));
  RecordProperty("peak_n1024", std::to_string(long_seq));
  EXPECT_LT(double(long_seq), 1.3 * double(short_seq)) << "peak storage n=256: " << short_seq << ", n=1024: " << long_seq;
}

// ---- Resident memory (/proc/self/status)

TEST(ResidentMemory, ParsesProcStatusLines) {
  const std::string status =
      "Name:\tqiusuo\nVmPeak:\t  812340 kB\nVmHWM:\t   41236 kB\nVmRSS:\t   40012 kB\nThreads:\t3\n"
      "VmBad:\t12 MB\nVmEmpty:\t kB\n";
  EXPECT_EQ(parse_proc_status_bytes(status, "VmRSS"), 40012LL * 1024);
  EXPECT_EQ(parse_proc_status_bytes(status, "VmHWM"), 41236LL * 1024);
  EXPECT_EQ(parse_proc_status_bytes(status, "VmSwap"), -1);    // absent
  EXPECT_EQ(parse_proc_status_bytes(status, "Threads"), -1);   // not "N kB"
  EXPECT_EQ(parse_proc_status_bytes(status, "VmBad"), -1);     // another unit
  EXPECT_EQ(parse_proc_status_bytes(status, "VmEmpty"), -1);   // no digits
  EXPECT_EQ(parse_proc_status_bytes(status, "Vm"), -1);        // a prefix is not a key
  EXPECT_EQ(parse_proc_status_bytes("", "VmRSS"), -1);
}

// AddressSanitizer keeps freed blocks in quarantine, so under it freed memory stays
// resident and "what is kept" has no upper bound to test.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kFreedStaysResident = true;
#else
constexpr bool kFreedStaysResident = false;
#endif

TEST(ResidentMemory, GrowthCountsPeakAndWhatIsKept) {
  const ResidentMemory now = resident_memory();
  if (now.rss_bytes < 0) GTEST_SKIP() << "no /proc/self/status";
  EXPECT_GE(now.hwm_bytes, now.rss_bytes);
  constexpr int64_t kBytes = 64LL << 20;
  Tensor kept;
  ResidentGrowth g = resident_growth([&] {
    Tensor scratch = full({kBytes / 4}, 1.0, DType::f32);  // touched, then freed
    kept = full({kBytes / 4}, 2.0, DType::f32);            // touched and kept
  });
  EXPECT_GE(g.retained_bytes, kBytes * 9 / 10);
  if (!kFreedStaysResident) EXPECT_LE(g.retained_bytes, kBytes + (16LL << 20));
  if (g.peak_bytes >= 0) EXPECT_GE(g.peak_bytes, 2 * kBytes * 9 / 10);  // -1 where clear_refs is refused
  kept = Tensor();
  ResidentGrowth freed = resident_growth([] { Tensor t = full({kBytes / 4}, 3.0, DType::f32); });
  if (!kFreedStaysResident) EXPECT_LT(freed.retained_bytes, 16LL << 20);
}
