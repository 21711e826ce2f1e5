// The process group (MPI through the plugin of mpi_api.h, on one communication thread) and
// DistributedDataParallel's reducer. See include/qiusuo/dist/dist.h.
#include "qiusuo/dist/dist.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>
#include <thread>

#include "dist/mpi_api.h"
#include "qiusuo/error.h"
#include <nlohmann/json.hpp>
#include "util/verbose.h"

#ifndef QS_MPI_PLUGIN_DIR
#define QS_MPI_PLUGIN_DIR ""
#endif

namespace qs::dist {

namespace {

using Clock = std::chrono::steady_clock;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  QS_CHECK(end && *end == 0 && x >= 0 && x < (1L << 30), "{}={} is not a count", name, v);
  return int(x);
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// A collective queued for the communication thread.
struct Job {
  std::string what;                      // for messages: "all-reduce of bucket 3 (1.2 MB)"
  std::function<int(const qs_mpi_api&)> run;  // returns an MPI error code
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int rc = 0;
  Clock::time_point started, finished;  // on the communication thread
};

class Group {
 public:
  static Group& get() {
    static Group g;
    return g;
  }

  void init() {
    std::lock_guard<std::mutex> lk(init_mu_);
    if (initialized_) return;
    timeout_ = timeout_from_env();
    if (!launch_.by_launcher) {
      initialized_ = true;
      return;
    }
    load_plugin();
    // Busy-polling MPI progress would take the cores from the compute threads when the
    // ranks share a machine; yield (Open MPI reads this before MPI_Init) unless told otherwise.
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
    comm_ = std::thread([this] { comm_loop(); });
    char what[256] = {0};
    run_blocking("MPI initialisation", [&](const qs_mpi_api& api) { return api.init(what, int(sizeof what)); });
    library_ = what;
    int r = -1, n = -1;
    run_blocking("MPI rank", [&](const qs_mpi_api& api) { return api.rank(&r); });
    run_blocking("MPI size", [&](const qs_mpi_api& api) { return api.size(&n); });
    QS_CHECK(r == launch_.rank && n == launch_.size,
             "MPI says rank {} of {}, the launcher ({}) said rank {} of {}: the MPI library ({}) is not the one "
             "the launcher belongs to; hint: run qiusuo with the mpirun of Debian's openmpi-bin",
             r, n, launch_.source, launch_.rank, launch_.size, library_);
    mpi_up_ = true;
    initialized_ = true;
    if (util::verbose("dist"))
      std::fprintf(stderr, "[dist] rank %d of %d (%d on this machine), %s, timeout %.0f s\n", r, n,
                   launch_.local_size, library_.c_str(), timeout_);
  }

  void finalize() {
    std::lock_guard<std::mutex> lk(init_mu_);
    if (!mpi_up_) return;
    run_blocking("MPI finalisation", [](const qs_mpi_api& api) { return api.finalize(); });
    mpi_up_ = false;
    stop_comm();
  }

  [[noreturn]] void abort_job(int code) {
    std::fflush(stdout);
    std::fflush(stderr);
    if (mpi_up_ && api_) api_->abort(code);  // from this thread: MPI_Abort is allowed at any time
    std::_Exit(code);
  }

  // Queues `run`; the communication thread executes jobs in the order they were queued.
  std::shared_ptr<Job> submit(std::string what, std::function<int(const qs_mpi_api&)> run) {
    auto job = std::make_shared<Job>();
    job->what = std::move(what);
    job->run = std::move(run);
    {
      std::lock_guard<std::mutex> lk(q_mu_);
      queue_.push_back(job);
    }
    q_cv_.notify_one();
    return job;
  }

  // Waits for `job` until the deadline; on expiry or an MPI error, ends the whole job.
  void wait(Job& job) {
    std::unique_lock<std::mutex> lk(job.mu);
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_);
    while (!job.done)
      if (job.cv.wait_until(lk, deadline) == std::cv_status::timeout && !job.done) {
        std::fprintf(stderr,
                     "qiusuo: error: rank %d of %d: waited %.0f s for %s: another rank stopped answering or died; "
                     "ending the job (hint: QS_DIST_TIMEOUT sets the limit in seconds)\n",
                     launch_.rank, launch_.size, timeout_, job.what.c_str());
        abort_job(kTimeoutExit);
      }
    if (job.rc != 0) {
      char msg[512] = {0};
      api_->error_string(job.rc, msg, int(sizeof msg));
      std::fprintf(stderr, "qiusuo: error: rank %d of %d: %s failed: %s\n", launch_.rank, launch_.size,
                   job.what.c_str(), msg);
      abort_job(kMpiErrorExit);
    }
  }

  void run_blocking(std::string what, std::function<int(const qs_mpi_api&)> run) {
    auto job = submit(std::move(what), std::move(run));
    wait(*job);
  }

  const Launch& launch() const { return launch_; }
  bool initialized() const { return initialized_; }
  bool mpi_up() const { return mpi_up_; }
  const std::string& library() const { return library_; }

  static constexpr int kTimeoutExit = 124, kMpiErrorExit = 70;

 private:
  Group() : launch_(detect_launch()) {}
  ~Group() { stop_comm(); }

  static double timeout_from_env() {
    const char* v = std::getenv("QS_DIST_TIMEOUT");
    if (!v || !*v) return 300;
    char* end = nullptr;
    double t = std::strtod(v, &end);
    QS_CHECK(end && *end == 0 && t > 0 && t < 1e7, "QS_DIST_TIMEOUT={} is not a number of seconds", v);
    return t;
  }

  void load_plugin() {
    std::vector<std::string> tried;
    std::string reasons;
    auto attempt = [&](const std::string& path) -> bool {
      tried.push_back(path);
      handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (!handle_) {
        const char* raw = dlerror();
        const std::string e = raw ? raw : "";  // a missing plugin's reason names it already
        reasons += e.rfind(path, 0) == 0 ? "\n  " + e : fmt::format("\n  {}: {}", path, e.empty() ? "cannot be loaded" : e);
      }
      return handle_ != nullptr;
    };
    const char* over = std::getenv("QS_MPI_PLUGIN");
    bool ok = false;
    if (over && *over) {
      ok = attempt(over);
    } else {
      std::error_code ec;
      auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (!ec) ok = attempt((exe.parent_path() / "libqiusuo_mpi.so").string());
      if (!ok && *QS_MPI_PLUGIN_DIR) ok = attempt(std::string(QS_MPI_PLUGIN_DIR) + "/libqiusuo_mpi.so");
    }
    QS_CHECK(ok,
             "started by an MPI launcher ({}: {} ranks) but MPI cannot be loaded:{}\nhint: install Open MPI "
             "(Debian: openmpi-bin libopenmpi3) and build qiusuo with libopenmpi-dev, which builds "
             "libqiusuo_mpi.so beside the qiusuo binary; QS_MPI_PLUGIN names another path",
             launch_.source, launch_.size, reasons);
    auto entry = reinterpret_cast<const qs_mpi_api* (*)()>(dlsym(handle_, "qs_mpi_backend"));
    QS_CHECK(entry, "{}: not a qiusuo MPI plugin (no qs_mpi_backend symbol)", tried.back());
    api_ = entry();
    QS_CHECK(api_ && api_->version == kQsMpiApiVersion,
             "{}: MPI plugin of interface version {}, this qiusuo needs {}; hint: rebuild both together",
             tried.back(), api_ ? api_->version : -1, int(kQsMpiApiVersion));
  }

  void comm_loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(q_mu_);
        q_cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping
        job = queue_.front();
        queue_.pop_front();
      }
      job->started = Clock::now();
      int rc = job->run(*api_);
      job->finished = Clock::now();
      {
        std::lock_guard<std::mutex> lk(job->mu);
        job->rc = rc;
        job->done = true;
      }
      job->cv.notify_all();
    }
  }

  void stop_comm() {
    {
      std::lock_guard<std::mutex> lk(q_mu_);
      stop_ = true;
    }
    q_cv_.notify_all();
    if (comm_.joinable()) comm_.join();
  }

  std::mutex init_mu_;
  bool initialized_ = false, mpi_up_ = false;
  Launch launch_;
  double timeout_ = 300;
  void* handle_ = nullptr;
  const qs_mpi_api* api_ = nullptr;
  std::string library_;
  std::thread comm_;
  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
};

Group& group() {
  Group& g = Group::get();
  if (!g.initialized()) g.init();
  return g;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

Launch detect_launch() {
  Launch l;
  auto from = [&](const char* size, const char* rank, const char* local) {
    if (!std::getenv(size)) return false;
    l.by_launcher = true;
    l.source = size;
    l.size = env_int(size, 1);
    l.rank = env_int(rank, 0);
    l.local_size = env_int(local, l.size);
    QS_CHECK(l.size >= 1 && l.rank < l.size, "{}={} and {}={} do not describe a rank of the job", size, l.size, rank,
             l.rank);
    return true;
  };
  // Open MPI's mpirun; a PMI launcher (MPICH's Hydra, Slurm's srun --mpi=pmi2).
  if (!from("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"))
    from("PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS");
  return l;
}

void init() {
  Group& g = group();
  // The cores of a machine are shared among its ranks (an explicit --threads applies later).
  static bool threads_set = false;
  if (!threads_set && g.launch().local_size > 1) {
    threads_set = true;
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    set_num_threads(int(std::max(1u, hw / unsigned(g.launch().local_size))));
  }
}
int rank() { return Group::get().launch().rank; }
int world_size() { return Group::get().launch().size; }
bool active() { return world_size() > 1; }
bool is_main() { return rank() == 0; }
std::string mpi_library() { return group().library(); }
void finalize() { Group::get().finalize(); }
void abort_job(int code) { Group::get().abort_job(code); }

double all_reduce_sum(double v) {
  std::vector<double> x{v};
  all_reduce_sum(x);
  return x[0];
}

void all_reduce_sum(std::vector<double>& v) {
  Group& g = group();
  if (!g.mpi_up() || v.empty()) return;
  g.run_blocking(fmt::format("all-reduce of {} number(s)", v.size()),
                 [&](const qs_mpi_api& api) { return api.allreduce_sum_f64(v.data(), int64_t(v.size())); });
}

void all_reduce_max(std::vector<int64_t>& v) {
  Group& g = group();
  if (!g.mpi_up() || v.empty()) return;
  g.run_blocking(fmt::format("all-reduce (max) of {} integer(s)", v.size()),
                 [&](const qs_mpi_api& api) { return api.allreduce_max_i64(v.data(), int64_t(v.size())); });
}

void broadcast(const std::vector<Tensor>& tensors, int root) {
  Group& g = group();
  if (!g.mpi_up() || tensors.empty()) return;
  std::vector<std::pair<void*, int64_t>> spans;
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    QS_CHECK(t.defined() && t.is_contiguous(), "dist::broadcast: tensor {} is undefined or not contiguous", i);
    spans.emplace_back(t.raw_data(), t.numel() * int64_t(t.element_size()));
    total += spans.back().second;
  }
  g.run_blocking(fmt::format("broadcast of {} tensor(s), {} bytes, from rank {}", tensors.size(), total, root),
                 [&](const qs_mpi_api& api) {
                   for (auto& [p, bytes] : spans)
                     if (int rc = api.broadcast(p, bytes, root)) return rc;
                   return 0;
                 });
}

void all_reduce_sum_inplace(const Tensor& t) {
  Group& g = group();
  if (!g.mpi_up()) return;
  QS_CHECK(t.is_contiguous() && (t.dtype() == DType::f32 || t.dtype() == DType::f64),
           "dist::all_reduce_sum_inplace: expected a contiguous f32 or f64 tensor, got {} {}", dtype_name(t.dtype()),
           shape_str(t.shape()));
  void* p = t.raw_data();
  const int64_t n = t.numel();
  const bool f32 = t.dtype() == DType::f32;
  g.run_blocking(fmt::format("all-reduce of a {} tensor of {} elements", dtype_name(t.dtype()), n),
                 [=](const qs_mpi_api& api) {
                   return f32 ? api.allreduce_sum_f32(static_cast<float*>(p), n)
                              : api.allreduce_sum_f64(static_cast<double*>(p), n);
                 });
}

std::vector<uint64_t> all_gather(uint64_t v) {
  Group& g = group();
  if (!g.mpi_up()) return {v};
  std::vector<uint64_t> all(size_t(g.launch().size));
  g.run_blocking("all-gather", [&](const qs_mpi_api& api) { return api.allgather_u64(v, all.data()); });
  return all;
}

void barrier() {
  Group& g = group();
  if (!g.mpi_up()) return;
  g.run_blocking("barrier", [](const qs_mpi_api& api) { return api.barrier(); });
}

namespace {
// "a.b=1 (rank 0: 2), c absent (rank 0: 3)": where JSON text `mine` differs from `theirs`.
std::string json_differences(const std::string& mine, const std::string& theirs) {
  nlohmann::json a = nlohmann::json::parse(mine, nullptr, false), b = nlohmann::json::parse(theirs, nullptr, false);
  if (a.is_discarded() || b.is_discarded()) return {};
  nlohmann::json fa = a.flatten(), fb = b.flatten();
  std::string out;
  auto add = [&](const std::string& key, const nlohmann::json* x, const nlohmann::json* y) {
    if (out.size() > 400) return;
    out += fmt::format("{}{} {} where rank 0 has {}", out.empty() ? "" : "; ", key, x ? x->dump() : "absent",
                       y ? y->dump() : "nothing");
  };
  for (auto& [k, v] : fa.items())
    if (!fb.contains(k) || fb[k] != v) add(k, &v, fb.contains(k) ? &fb[k] : nullptr);
  for (auto& [k, v] : fb.items())
    if (!fa.contains(k)) add(k, nullptr, &v);
  return out;
}
}  // namespace

void check_same(const std::string& what, const std::string& value) {
  std::vector<uint64_t> all = all_gather(fnv1a(value));
  std::string differ;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) differ += fmt::format("{}{}", differ.empty() ? "" : ", ", r);
  if (differ.empty()) return;
  // Every rank saw the same hashes, so all take part in sending rank 0's text, and a rank
  // that differs can say how.
  Tensor len = full({1}, double(value.size()), DType::i64);
  broadcast({len}, 0);
  Tensor text = empty({len.data_ptr<int64_t>()[0]}, DType::u8);
  if (is_main()) std::memcpy(text.raw_data(), value.data(), value.size());
  broadcast({text}, 0);
  const std::string theirs(static_cast<const char*>(text.raw_data()), size_t(text.numel()));
  std::string how = is_main() ? std::string() : json_differences(value, theirs);
  QS_FAIL("rank(s) {} of {} were started with {} different from rank 0's; every rank of a data-parallel job must run "
          "the same command{}",
          differ, all.size(), what, how.empty() ? "" : fmt::format(" (this rank has {})", how));
}

// ---- DistributedDataParallel

struct DistributedDataParallel::Reducer {
  struct Bucket {
    std::vector<int> params;          // indices into Reducer::params
    std::vector<int64_t> offsets;     // of each in buf
    // Shared with the all-reduce in flight, which outlives a reducer destroyed mid-step
    // (an exception during backward): the other ranks take part in it all the same.
    std::shared_ptr<std::vector<float>> buf = std::make_shared<std::vector<float>>();
    int pending = 0;                  // gradients still to arrive this step
    std::shared_ptr<Job> job;         // the all-reduce in flight
  };

  std::vector<Tensor> params;
  std::vector<Tensor> buffers;          // running statistics: rank 0's, after every step
  std::vector<std::string> names;
  std::vector<int> bucket_of, slot_of;  // parameter -> (bucket, index in it)
  std::vector<Bucket> buckets;
  std::vector<char> arrived;            // this step
  std::vector<int> arrival;             // order of arrival this step
  int next_launch = 0;
  bool sync = true;
  bool rebuilt = false;
  int64_t bucket_bytes;
  Clock::time_point step_t0;
  bool step_started = false;
  StepTrace trace;
  std::vector<BucketTrace> pending_trace;

  void build(const std::vector<int>& order) {
    buckets.clear();
    bucket_of.assign(params.size(), -1);
    slot_of.assign(params.size(), -1);
    int64_t cap = std::max<int64_t>(1, bucket_bytes / int64_t(sizeof(float)));
    for (int p : order) {
      int64_t n = params[size_t(p)].numel();
      if (buckets.empty() || (!buckets.back().params.empty() && int64_t(buckets.back().buf->size()) + n > cap))
        buckets.emplace_back();
      Bucket& b = buckets.back();
      bucket_of[size_t(p)] = int(buckets.size()) - 1;
      slot_of[size_t(p)] = int(b.params.size());
      b.params.push_back(p);
      b.offsets.push_back(int64_t(b.buf->size()));
      b.buf->resize(b.buf->size() + size_t(n));
    }
    reset_step();
  }

  void reset_step() {
    arrived.assign(params.size(), 0);
    arrival.clear();
    next_launch = 0;
    step_started = false;
    for (auto& b : buckets) {
      b.pending = int(b.params.size());
      b.job.reset();
    }
    pending_trace.assign(buckets.size(), BucketTrace{});
  }

  void on_gradient(int p) {
    if (!sync) return;
    if (!step_started) {
      step_started = true;
      step_t0 = Clock::now();
    }
    QS_CHECK(!arrived[size_t(p)],
             "data-parallel training: parameter '{}' received its gradient twice before finish(); a second backward "
             "before the optimiser step must run under no_sync() (gradient accumulation)",
             names[size_t(p)]);
    arrived[size_t(p)] = 1;
    arrival.push_back(p);
    Bucket& b = buckets[size_t(bucket_of[size_t(p)])];
    copy_in(b, slot_of[size_t(p)]);
    --b.pending;
    launch_ready();
  }

  // The parameter's gradient, divided by the world size, into its bucket slot (zeros
  // where this rank has none).
  void copy_in(Bucket& b, int slot) {
    const Tensor& t = params[size_t(b.params[size_t(slot)])];
    float* dst = b.buf->data() + b.offsets[size_t(slot)];
    const int64_t n = t.numel();
    Tensor g = t.grad();
    if (!g.defined()) {
      std::fill(dst, dst + n, 0.f);
      return;
    }
    if (g.dtype() != DType::f32) g = g.to(DType::f32);
    if (!g.is_contiguous()) g = g.contiguous();
    const float* src = g.data_ptr<float>();
    const float s = float(1.0 / double(world_size()));
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i] * s;
  }

  void launch_ready() {
    while (next_launch < int(buckets.size()) && buckets[size_t(next_launch)].pending == 0) launch(next_launch++);
  }

  void launch(int i) {
    Bucket& b = buckets[size_t(i)];
    std::shared_ptr<std::vector<float>> buf = b.buf;
    const int64_t n = int64_t(buf->size());
    pending_trace[size_t(i)].bytes = n * int64_t(sizeof(float));
    pending_trace[size_t(i)].launched_ms = ms_since(step_t0);
    b.job = group().submit(fmt::format("all-reduce of gradient bucket {} of {} ({} parameters, {:.2f} MB)", i,
                                       buckets.size(), b.params.size(), double(n) * 4e-6),
                           [buf, n](const qs_mpi_api& api) { return api.allreduce_sum_f32(buf->data(), n); });
  }

  void finish() {
    if (!sync) return;
    if (!step_started) {
      step_started = true;
      step_t0 = Clock::now();
    }
    trace = StepTrace{};
    trace.backward_end_ms = ms_since(step_t0);
    // Which parameters have a gradient on some rank (an unused one may differ by rank).
    std::vector<int64_t> has(params.size());
    for (size_t p = 0; p < params.size(); ++p) has[p] = arrived[p] || params[p].grad().defined() ? 1 : 0;
    // Buckets still waiting for a gradient this rank never produced: zeros for it, then
    // launch in bucket order (the order is the same on every rank, whatever the timing).
    for (size_t i = size_t(next_launch); i < buckets.size(); ++i) {
      Bucket& b = buckets[i];
      for (size_t s = 0; s < b.params.size(); ++s)
        if (!arrived[size_t(b.params[s])]) {
          arrived[size_t(b.params[s])] = 1;
          copy_in(b, int(s));
        }
      b.pending = 0;
    }
    launch_ready();
    all_reduce_max(has);
    for (size_t i = 0; i < buckets.size(); ++i) {
      Bucket& b = buckets[i];
      group().wait(*b.job);
      BucketTrace t = pending_trace[i];
      t.started_ms = std::chrono::duration<double, std::milli>(b.job->started - step_t0).count();
      t.done_ms = std::chrono::duration<double, std::milli>(b.job->finished - step_t0).count();
      trace.buckets.push_back(t);
    }
    for (size_t i = 0; i < buckets.size(); ++i) copy_out(buckets[i], has);
    // Each rank's batch norms saw only its samples: all continue from rank 0's statistics
    // (torch's broadcast_buffers), so that every rank holds the same model.
    dist::broadcast(buffers, 0);
    trace.finish_end_ms = ms_since(step_t0);
    if (util::verbose("dist")) print_trace();
    if (!rebuilt) rebuild_from_arrival();
    reset_step();
  }

  // QS_VERBOSE=dist: one line per step on stderr, the evidence of overlap: which buckets'
  // all-reduces had finished before backward did.
  void print_trace() const {
    int64_t hidden = 0, total = 0;
    std::string each;
    for (size_t i = 0; i < trace.buckets.size(); ++i) {
      const BucketTrace& b = trace.buckets[i];
      total += b.bytes;
      if (b.done_ms <= trace.backward_end_ms) hidden += b.bytes;
      each += fmt::format(" | b{} {:.2f}MB q{:.1f} s{:.1f} d{:.1f}", i, double(b.bytes) * 1e-6, b.launched_ms,
                          b.started_ms, b.done_ms);
    }
    std::fprintf(stderr, "[dist] rank %d step: first gradient to end of backward %.1f ms, then finish %.1f ms, all-reduced %.2f MB, %.2f MB of it before backward ended%s\n",
                 rank(), trace.backward_end_ms, trace.finish_end_ms - trace.backward_end_ms, double(total) * 1e-6,
                 double(hidden) * 1e-6, each.c_str());
  }

  void copy_out(const Bucket& b, const std::vector<int64_t>& has) {
    for (size_t s = 0; s < b.params.size(); ++s) {
      Tensor& t = params[size_t(b.params[s])];
      if (!has[size_t(b.params[s])]) continue;  // no rank had a gradient: stays undefined
      Tensor g = t.grad();
      if (!g.defined() || g.dtype() != DType::f32 || !g.is_contiguous() || g.storage().use_count() > 1) {
        g = empty(t.shape(), DType::f32);
        t.set_grad(g);
      }
      std::memcpy(g.data_ptr<float>(), b.buf->data() + b.offsets[s], size_t(t.numel()) * sizeof(float));
    }
  }

  // After the first step: buckets in the order rank 0's gradients arrived (the same
  // buckets on every rank, whatever each saw).
  void rebuild_from_arrival() {
    rebuilt = true;
    std::vector<int64_t> order(params.size(), -1);
    for (size_t k = 0; k < arrival.size(); ++k) order[k] = arrival[k];
    Tensor o = from_vector_i64(order);
    dist::broadcast({o}, 0);
    std::vector<int> seq;
    std::vector<char> in(params.size(), 0);
    const int64_t* v = o.data_ptr<int64_t>();
    for (size_t k = 0; k < params.size(); ++k)
      if (v[k] >= 0 && v[k] < int64_t(params.size()) && !in[size_t(v[k])]) {
        in[size_t(v[k])] = 1;
        seq.push_back(int(v[k]));
      }
    for (int p = int(params.size()) - 1; p >= 0; --p)
      if (!in[size_t(p)]) seq.push_back(p);
    build(seq);
  }

  static Tensor from_vector_i64(const std::vector<int64_t>& v) {
    Tensor t = empty({int64_t(v.size())}, DType::i64);
    std::memcpy(t.data_ptr<int64_t>(), v.data(), v.size() * sizeof(int64_t));
    return t;
  }
};

DistributedDataParallel::DistributedDataParallel(const std::vector<std::pair<std::string, Tensor>>& named_parameters,
                                                 const std::vector<Tensor>& buffers, DdpOptions options)
    : r_(std::make_shared<Reducer>()) {
  init();
  if (const char* mb = std::getenv("QS_DDP_BUCKET_MB"); mb && *mb) {
    char* end = nullptr;
    double m = std::strtod(mb, &end);
    QS_CHECK(end && *end == 0 && m > 0 && m <= 4096, "QS_DDP_BUCKET_MB={} is not a size in MB", mb);
    options.bucket_bytes = int64_t(m * 1048576.0);
  }
  QS_CHECK(options.bucket_bytes > 0, "DistributedDataParallel: bucket_bytes must be positive");
  r_->bucket_bytes = options.bucket_bytes;
  std::vector<Tensor> sync_state;
  for (auto& [name, p] : named_parameters) {
    QS_CHECK(p.defined() && p.dtype() == DType::f32 && p.is_contiguous(),
             "DistributedDataParallel: parameter '{}' must be a contiguous f32 tensor", name);
    r_->names.push_back(name);
    r_->params.push_back(p);
    sync_state.push_back(p);
  }
  for (auto& b : buffers)
    if (b.defined() && b.is_contiguous()) {
      sync_state.push_back(b);
      r_->buffers.push_back(b);
    }
  if (!active()) return;
  // Same parameter names and shapes everywhere, then rank 0's values.
  std::string layout;
  for (size_t i = 0; i < r_->params.size(); ++i)
    layout += fmt::format("{}{}:{};", r_->names[i], shape_str(r_->params[i].shape()), "");
  check_same("the model's parameters", layout);
  broadcast(sync_state, 0);
  std::vector<int> order;
  for (int p = int(r_->params.size()) - 1; p >= 0; --p) order.push_back(p);
  r_->build(order);
  std::weak_ptr<Reducer> weak = r_;
  for (size_t i = 0; i < r_->params.size(); ++i)
    if (r_->params[i].requires_grad())
      r_->params[i].register_post_accumulate_hook([weak, i](Tensor&) {
        if (auto r = weak.lock()) r->on_gradient(int(i));
      });
}

DistributedDataParallel::~DistributedDataParallel() = default;

void DistributedDataParallel::finish() {
  if (!active()) return;
  r_->finish();
}

DistributedDataParallel::NoSync::NoSync(DistributedDataParallel& d) : d_(d), prev_(d.r_->sync) { d_.r_->sync = false; }
DistributedDataParallel::NoSync::~NoSync() { d_.r_->sync = prev_; }

int DistributedDataParallel::num_buckets() const { return int(r_->buckets.size()); }
const StepTrace& DistributedDataParallel::last_trace() const { return r_->trace; }

}  // namespace qs::dist
