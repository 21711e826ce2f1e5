// The viewer's HTTP server: cpp-httplib routes for the JSON API and the static page, behind
// the gate of http_gate.h (slow clients wait there, not on a worker thread).
#include <fmt/format.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/http_gate.h"
#include "qiusuo/apps/viewer.h"
#include "qiusuo/error.h"

#ifndef QS_VIEWER_ASSETS
#define QS_VIEWER_ASSETS "web/viewer"
#endif

namespace qs::apps {

namespace fs = std::filesystem;
using nlohmann::json;

std::string default_assets_dir() { return QS_VIEWER_ASSETS; }

std::string resolve_asset(const std::string& assets_dir, const std::string& url_path) {
  if (url_path.empty() || url_path[0] != '/') return "";
  std::string rel = url_path.substr(1);
  if (rel.empty()) rel = "index.html";
  if (rel.find('\\') != std::string::npos || rel.find('\0') != std::string::npos) return "";
  // Components: none empty (no "//", no absolute path), none "." or ".." or hidden.
  for (size_t start = 0; start <= rel.size();) {
    size_t end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    if (end == start || rel[start] == '.') return "";
    start = end + 1;
  }
  std::error_code ec;
  const fs::path root = fs::canonical(assets_dir, ec);
  if (ec) return "";
  const fs::path target = fs::canonical(root / rel, ec);  // resolves symlinks
  if (ec || !fs::is_regular_file(target, ec)) return "";
  // The resolved file must still lie inside the folder (a symlink may point out).
  const auto [r, t] = std::mismatch(root.begin(), root.end(), target.begin(), target.end());
  if (r != root.end()) return "";
  return target.string();
}

namespace {

const char* mime_of(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js") return "application/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  return "application/octet-stream";
}

// With the charset the type is not one httplib compresses: it would pick brotli at its
// slowest quality (seconds for a 1024-token answer), pointless on localhost.
void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  // Replace, not throw: an error message may quote a request path that is not UTF-8 (a 500
  // with the exception's text in a header, before; issue 19).
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json; charset=utf-8");
}

void send_error(httplib::Response& res, int status, const std::string& msg) {
  send_json(res, status, {{"error", msg}});
}

bool is_loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

}  // namespace

struct ViewerServer::Impl {
  Impl(LoadedLm lm, const ViewerOptions& o) : opt(o), api(std::move(lm), o), http(o.http) {}
  Impl(LoadedMt mt, const ViewerOptions& o) : opt(o), api(std::move(mt), o), http(o.http) {}
  ViewerOptions opt;
  ViewerApi api;
  GatedServer http;
  std::string assets;
  int port = 0;
  void routes();
  std::string refusal(const httplib::Request& req) const;
};

// Why a request is refused before routing, or "". A web page on another site can make the
// browser send requests here: a Host other than this loopback address means DNS rebinding
// (the answer would be readable by that site), and a POST that is not application/json
// would skip the browser's CORS preflight (the model would run for that site).
std::string ViewerServer::Impl::refusal(const httplib::Request& req) const {
  if (is_loopback(opt.host)) {
    const std::string host = req.get_header_value("Host"), p = ":" + std::to_string(port);
    if (host != "127.0.0.1" + p && host != "localhost" + p && host != "[::1]" + p)
      return fmt::format("Host '{}' is not this server's loopback address (127.0.0.1{})", host, p);
  }
  if (req.method == "POST" && req.get_header_value("Content-Type").rfind("application/json", 0) != 0)
    return fmt::format("POST bodies must be sent as Content-Type: application/json, found '{}'",
                       req.get_header_value("Content-Type"));
  return "";
}

void ViewerServer::Impl::routes() {
  http.set_payload_max_length(opt.body_limit);
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // Before the body is read: httplib applies the body limit to a Content-Length only and
    // would read a chunked body of any size into memory first (issue 19: 256 MiB read, then
    // a 400), so a body must come with its length.
    // Many ranges of one small file multiply it (1300 ranges made 3.9 kB into 14.6 MB):
    // one range is served, several are not.
    if (req.get_header_value("Range").find(',') != std::string::npos) {
      send_error(res, 416, "one byte range per request is served, not several");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.has_header("Transfer-Encoding")) {
      send_error(res, 411, fmt::format("send the request body with a Content-Length (at most {} bytes); "
                                       "Transfer-Encoding '{}' is not accepted",
                                       opt.body_limit, req.get_header_value("Transfer-Encoding")));
      res.set_header("Connection", "close");  // the unread body must not be taken for the next request
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string why = refusal(req);
    if (why.empty()) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, 403, why);
    return httplib::Server::HandlerResponse::Handled;
  });
  http.Get("/api/model", [this](const httplib::Request&, httplib::Response& res) { send_json(res, 200, api.model_info()); });
  http.Post("/api/attention", [this](const httplib::Request& req, httplib::Response& res) {
    try {
      send_json(res, 200, api.attention(req.body));
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, fmt::format("the model failed on this input: {}", e.what()));
    }
  });
  http.Get("/api/.*", [](const httplib::Request& req, httplib::Response& res) {
    send_error(res, 404, fmt::format("no API endpoint {}; there are GET /api/model and POST /api/attention", req.path));
  });
  http.Get("/.*", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string file = resolve_asset(assets, req.path);
    if (file.empty()) return send_error(res, 404, fmt::format("not found: {}", req.path));
    std::ifstream f(file, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    res.set_content(ss.str(), mime_of(file));
    res.set_header("Cache-Control", "no-cache");
  });
  // Errors httplib answers itself (413 body too large, 400 bad request line, 404 for
  // other methods) get the API's {"error": ...} body too. A body that missed the request's
  // deadline is a 400 to httplib (its read failed): the gate knows it was time.
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (GatedServer::request_timed_out()) {
      res.set_header("Connection", "close");  // the gate closes it: the rest of the body is unread
      return send_error(res, 408, fmt::format("the request did not arrive within {} s of its first byte",
                                              opt.http.request_timeout_s));
    }
    if (!res.body.empty()) return;
    const std::string msg =
        res.status == 413 ? fmt::format("the request body is too large: the limit is {} bytes", opt.body_limit)
        : res.status == 404 ? fmt::format("not found: {} {}", req.method, req.path)
                            : fmt::format("HTTP {}: the server could not read this request", res.status);
    send_error(res, res.status, msg);
  });
}

ViewerServer::ViewerServer(LoadedLm lm, const ViewerOptions& opt) : impl_(std::make_unique<Impl>(std::move(lm), opt)) {
  start();
}

ViewerServer::ViewerServer(LoadedMt mt, const ViewerOptions& opt) : impl_(std::make_unique<Impl>(std::move(mt), opt)) {
  start();
}

void ViewerServer::start() {
  impl_->assets = impl_->opt.assets_dir.empty() ? default_assets_dir() : impl_->opt.assets_dir;
  if (resolve_asset(impl_->assets, "/index.html").empty())
    throw IOError(fmt::format("serve: no index.html in the asset folder '{}'; hint: pass --assets DIR (the source "
                              "tree's web/viewer)", impl_->assets));
  impl_->routes();
}

ViewerServer::~ViewerServer() = default;

int ViewerServer::bind() {
  int port = impl_->opt.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(impl_->opt.host);
    if (port < 0) port = 0;
  } else if (!impl_->http.bind_to_port(impl_->opt.host, port)) {
    port = 0;
  }
  if (port <= 0)
    throw IOError(fmt::format("serve: cannot listen on {}:{} (in use, or not an address of this machine)",
                              impl_->opt.host, impl_->opt.port));
  impl_->port = port;
  return port;
}

void ViewerServer::run() { impl_->http.serve(); }
void ViewerServer::stop() { impl_->http.stop(); }
ViewerApi& ViewerServer::api() { return impl_->api; }

}  // namespace qs::apps
