// The attention viewer behind `qiusuo serve`: a JSON API over capture_attention and an
// HTTP server (cpp-httplib) that also serves the page in web/viewer/. The API is
// documented with examples in docs/viewer-api.md.
//
//   apps::ViewerOptions o;  o.port = 0;
//   apps::ViewerServer srv(apps::load_lm("run/last.safetensors"), o);
//   int port = srv.bind();      // 127.0.0.1:<port>
//   srv.run();                  // blocks until srv.stop() (from another thread or a signal thread)
//
// Threading: the model is not thread-safe; every request that runs it takes one mutex,
// so attention requests are served one at a time (static files and /api/model are not
// blocked by it). The last text's capture is kept, so asking for other heads of the same
// text does not run the model again.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qiusuo/apps/attention_view.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/apps/mt.h"

namespace qs::apps {

// What one client may hold of the server (issue 19: eight connections sending a header line
// a second held all eight worker threads). A connection waits for its request head without a
// worker thread; only a request whose head has arrived whole reaches one.
struct HttpLimits {
  double request_timeout_s = 10;  // the head and body of a request must arrive within this of its first byte (408)
  int keep_alive_s = 5;           // an idle connection is closed after this many seconds
  size_t head_max = 32 * 1024;    // bytes of request line and headers (431 beyond)
  int workers = 8;                // threads that run requests
  int workers_per_client = 4;     // of them, how many requests of one client address may hold at once
  // Open connections, waiting or served: more are answered 503 at once. cpp-httplib refuses
  // (500) a socket numbered 1024 or above (select()), so the total stays below that.
  int connections_max = 512;
  int connections_per_client = 128;
};

struct ViewerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (bind() returns it)
  std::string assets_dir;          // empty: the compiled-in web/viewer of the source tree
  std::string analysis_file;       // optional head roles, {"heads":[{layer, head, roles, ...}]}
  int64_t max_tokens = 1024;       // per request; also capped by the model's position encoding
  size_t body_limit = 256 * 1024;  // request bodies above it get 413
  std::string checkpoint;          // the path shown in /api/model
  HttpLimits http;
};

// A request the API refuses: the HTTP status (400, 404, 413, 422) and a message for the page.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, const std::string& msg) : std::runtime_error(msg), status(status) {}
  int status;
};

// Largest matrix sent whole ("dense"); longer inputs get "topk" or "pooled".
constexpr int64_t kViewerDenseMax = 256;
// Thumbnails (no layer/head in the request) are mean-pooled to at most this many bins a side.
constexpr int64_t kViewerThumbMax = 64;

// Mean pooling of one [rows, cols] matrix to [min(rows, out_rows), min(cols, out_cols)]:
// token i lies in bin floor(i * bins / n). Returns the bins row-major.
std::vector<float> mean_pool(const float* w, int64_t rows, int64_t cols, int64_t out_rows, int64_t out_cols);

// x rounded to `digits` significant decimal digits (0 stays 0).
double round_significant(double x, int digits = 4);

// The JSON API without HTTP. Thread-safe: attention() serialises model runs on a mutex.
class ViewerApi {
 public:
  // Errors (qs::Error): an analysis file that is not JSON of the documented form.
  ViewerApi(LoadedLm lm, const ViewerOptions& opt);
  // A translation model (`qiusuo train mt`): a request's text is the source sentence (words
  // split on whitespace; max_tokens counts them); the model translates it greedily and the
  // answer holds the encoder ("self"), decoder ("causal") and "cross" maps. Per map, rows are
  // labelled with `tokens` and columns with `key_tokens`: the source (+ <eos>) for encoder
  // maps, <bos> + the translation for decoder rows, the source for cross-attention columns.
  ViewerApi(LoadedMt mt, const ViewerOptions& opt);

  // GET /api/model: {"layers", "heads", "maps": [{layer, name, kind, heads}], "kinds",
  // "encoding", "vocabulary": {"size", "kind"}, "max_tokens", "step", "checkpoint", "model": {...},
  // "analysis": {"heads": [...]} | null}.
  const nlohmann::json& model_info() const { return info_; }

  // POST /api/attention with the raw request body. Throws ApiError: body not UTF-8 or not
  // a JSON object, wrong field types (400); empty text (422); more tokens than the limit
  // (422, naming it); layer/head out of range, layer without head, bad top_k/format (400).
  nlohmann::json attention(const std::string& body);

  int64_t max_tokens() const { return max_tokens_; }

 private:
  void describe(const AttentionSnapshot& probe, nlohmann::json info);  // fills info_ (maps, kinds, analysis)
  // Runs the model on a request's text cut to `limit` tokens (422 when it has none, or more
  // than max_tokens_ and !cut_ok); n_text: the text's own token count.
  AttentionSnapshot capture(const std::string& text, int64_t limit, bool cut_ok, int64_t& n_text);
  LoadedLm lm_;
  std::unique_ptr<LoadedMt> mt_;  // set for a translation model (lm_ is then empty)
  ViewerOptions opt_;
  int64_t max_tokens_ = 0;
  int threads_ = 0;  // OpenMP threads of the constructing thread, applied in the server's threads
  nlohmann::json info_;
  std::mutex model_mu_;  // guards the model and the cached capture below
  // The last text's capture (layers x heads x T x T floats: 128 MiB for 4 layers of 8
  // heads at 1024 tokens).
  std::shared_ptr<const AttentionSnapshot> last_;
  std::string last_text_;
  int64_t last_limit_ = 0;
  int64_t last_n_text_ = 0;
};

// The file an URL path names inside `assets_dir`, or "" when it must not be served: a
// component "..", "." or starting with "." (hidden), a backslash or NUL, an absolute path
// after the leading "/", a target outside the folder once symlinks are resolved, or not a
// regular file. "/" names index.html.
std::string resolve_asset(const std::string& assets_dir, const std::string& url_path);

// The compiled-in asset folder (the source tree's web/viewer).
std::string default_assets_dir();

class ViewerServer {
 public:
  // Errors: the asset folder has no index.html (qs::IOError), a bad analysis file.
  ViewerServer(LoadedLm lm, const ViewerOptions& opt);
  ViewerServer(LoadedMt mt, const ViewerOptions& opt);  // see ViewerApi(LoadedMt, ...)
  ~ViewerServer();
  ViewerServer(const ViewerServer&) = delete;
  ViewerServer& operator=(const ViewerServer&) = delete;

  // Binds host:port (port 0: a free one) and returns the port. Error: qs::IOError.
  int bind();
  // Serves until stop(); call after bind().
  void run();
  // Makes run() return; safe from any thread.
  void stop();
  ViewerApi& api();

 private:
  struct Impl;
  void start();  // the asset check and the routes
  std::unique_ptr<Impl> impl_;
};

}  // namespace qs::apps
