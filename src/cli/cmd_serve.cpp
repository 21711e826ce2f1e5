// qiusuo serve: the attention viewer (apps::ViewerServer) until Ctrl-C.
#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>
#include <pthread.h>
#include <thread>

#include "cli/cli.h"
#include "qiusuo/apps/viewer.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/tensor.h"

namespace qs::cli {

int cmd_serve(Args a) {
  apps::ViewerOptions o;
  o.checkpoint = a.required("model");
  o.host = a.str("host", o.host);
  o.port = int(a.integer("port", o.port, 0, 65535));
  o.analysis_file = a.str("analysis", "");
  o.assets_dir = a.str("assets", "");
  o.max_tokens = a.integer("max-tokens", o.max_tokens);
  o.body_limit = size_t(a.integer("body-limit", int64_t(o.body_limit)));
  o.http.request_timeout_s = a.number("request-timeout", o.http.request_timeout_s);
  o.http.workers_per_client = int(a.integer("client-workers", o.http.workers_per_client, 1, o.http.workers));
  o.http.connections_per_client =
      int(a.integer("client-connections", o.http.connections_per_client, 1, o.http.connections_max));
  if (int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  // SIGINT/SIGTERM are blocked in every thread (the server's pool and OpenMP's inherit
  // the mask) and taken by one thread with sigwait, which stops the server outside any
  // signal handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // A translation checkpoint (`qiusuo train mt`) or a language model.
  const io::Checkpoint ck = io::load_checkpoint(o.checkpoint);
  const bool mt = ck.config.is_object() && ck.config.value("kind", std::string()) == "qiusuo-mt";
  std::unique_ptr<apps::ViewerServer> served =
      mt ? std::make_unique<apps::ViewerServer>(apps::load_mt(o.checkpoint), o)
         : std::make_unique<apps::ViewerServer>(apps::load_lm(o.checkpoint), o);
  apps::ViewerServer& server = *served;
  const int port = server.bind();
  const nlohmann::json& info = server.api().model_info();
  std::cout << fmt::format("qiusuo serve: {} attention layers x {} heads, {} tokens per request\n",
                           info["layers"].get<int64_t>(), info["heads"].get<int64_t>(),
                           info["max_tokens"].get<int64_t>());
  if (o.host != "127.0.0.1" && o.host != "localhost" && o.host != "::1")
    std::cout << fmt::format("qiusuo serve: note: bound to {}, not loopback: whoever reaches this address can run "
                             "the model\n", o.host);
  std::cout << fmt::format("qiusuo serve: listening on http://{}:{}/ (Ctrl-C stops)", o.host, port) << std::endl;
  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    signalled = true;
    server.stop();
  });
  server.run();
  // run() also returns on a failure: then wake the waiter, which still waits.
  if (!signalled) pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  std::cout << "qiusuo serve: stopped" << std::endl;
  return kExitOk;
}

}  // namespace qs::cli
