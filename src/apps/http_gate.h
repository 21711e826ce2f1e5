// An httplib::Server whose worker threads see only requests whose head has arrived whole
// (issue 19, slowloris). cpp-httplib gives each connection a worker thread for its whole
// life, and its timeouts are per recv(): a client sending one header byte every few
// seconds held a worker indefinitely, and eight such clients held all eight.
//
// Here the accept loop hands each socket to a gate (one thread polling every waiting
// connection) instead of a worker. The gate reads the request head into the connection's
// buffer and queues the connection for a worker once the head is complete; a head not
// complete within HttpLimits::request_timeout_s of its first byte gets 408, one longer
// than head_max gets 431, and an idle connection is closed after keep_alive_s. A worker
// runs httplib's process_request on the buffered head (the body is read there, under the
// same deadline), then hands a kept-alive connection back to the gate. A worker picks the
// oldest ready request whose client address holds fewer than workers_per_client workers,
// so one address cannot hold them all with slow bodies or slow requests.
#pragma once
#include <httplib.h>

#include <memory>

#include "qiusuo/apps/viewer.h"

namespace qs::apps {

class GatedServer : public httplib::Server {
 public:
  // Errors (qs::Error): a limit that is not positive.
  explicit GatedServer(const HttpLimits& limits);
  ~GatedServer() override;

  // Serves until stop(), after bind_to_port or bind_to_any_port: the gate and the workers
  // start here and are joined before it returns (a request being run is finished first).
  bool serve();

  // True on a worker thread whose current request missed its deadline while its body was
  // read (httplib then answers 400; the error handler can say 408 instead).
  static bool request_timed_out();

 private:
  // Called by httplib's accept loop (on that thread: the task queue runs tasks inline);
  // hands `sock` to the gate, or answers 503 when its client has too many connections.
  bool process_and_close_socket(socket_t sock) override;

  struct Gate;
  std::unique_ptr<Gate> gate_;
};

}  // namespace qs::apps
