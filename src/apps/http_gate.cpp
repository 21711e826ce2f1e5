// The gate in front of httplib's request processing (see http_gate.h).
#include "apps/http_gate.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "qiusuo/error.h"

namespace qs::apps {

namespace {

using Clock = std::chrono::steady_clock;

// A connection between requests or in one.
struct Conn {
  int fd = -1;
  std::string ip;              // the client's address: the key of the per-client limits
  std::string buf;             // bytes received and not yet taken by httplib
  size_t scanned = 0;          // buf[0, scanned) holds no end of the head
  bool started = false;        // a byte of the current request has arrived
  Clock::time_point deadline;  // started: the request's; otherwise: when the idle connection is closed
  size_t requests_left = 0;    // httplib's keep-alive count
};

// Rounded up: a poll() that waits this long returns after t.
int64_t ms_until(Clock::time_point t) {
  return std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count());
}

// "a.b.c.d" or an IPv6 address, and the port, of a socket's peer (or its own end).
void socket_address(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  ip.clear();
  port = 0;
  if ((peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
            : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len)) != 0)
    return;
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
  }
  ip = text;
}

// Where the head in c.buf ends (the offset after it), as httplib reads it: after the first
// empty line ("\r\n" following a '\n'), or after the request line when that line is itself
// empty (httplib then answers 400 without reading headers). npos while incomplete.
size_t head_end(Conn& c) {
  if (c.buf.rfind("\r\n", 0) == 0) return 2;
  if (c.buf.rfind("\n", 0) == 0) return 1;
  const size_t at = c.buf.find("\n\r\n", c.scanned >= 2 ? c.scanned - 2 : 0);
  if (at != std::string::npos) return at + 3;
  c.scanned = c.buf.size();
  return std::string::npos;
}

const char* reason(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    default: return "Service Unavailable";
  }
}

// An answer the gate gives itself before closing the connection: the API's {"error": ...}
// body, sent without waiting (a client that does not read it loses it).
void refuse(int fd, int status, const std::string& msg) {
  const std::string body = nlohmann::json{{"error", msg}}.dump();
  const std::string r = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n"
      "Connection: close\r\n\r\n{}",
      status, reason(status), body.size(), body);
  [[maybe_unused]] const ssize_t n = ::send(fd, r.data(), r.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

thread_local bool t_timed_out = false;

// httplib's view of a connection on a worker: the buffered bytes first, then the socket,
// each read within the request's deadline and httplib's per-read timeout.
class ConnStream : public httplib::Stream {
 public:
  ConnStream(Conn& c, int read_ms, int write_ms) : c_(c), read_ms_(read_ms), write_ms_(write_ms) {}

  bool is_readable() const override { return pos_ < c_.buf.size() || wait(POLLIN, read_ms_) > 0; }
  bool is_writable() const override { return wait(POLLOUT, write_ms_) > 0; }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == c_.buf.size()) {
      c_.buf.clear();
      pos_ = 0;
      const int64_t left = ms_until(c_.deadline);
      if (left == 0 || wait(POLLIN, int(std::min<int64_t>(left, read_ms_))) <= 0) {
        t_timed_out = left <= read_ms_;  // else httplib's per-read timeout
        failed_ = true;
        return -1;
      }
      char chunk[16384];
      const ssize_t got = ::recv(c_.fd, chunk, sizeof chunk, 0);
      if (got <= 0) {
        failed_ = true;
        return got;
      }
      c_.buf.append(chunk, size_t(got));
    }
    const size_t n = std::min(size, c_.buf.size() - pos_);
    std::memcpy(ptr, c_.buf.data() + pos_, n);
    pos_ += n;
    return ssize_t(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    return ::send(c_.fd, ptr, size, MSG_NOSIGNAL);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { socket_address(c_.fd, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { socket_address(c_.fd, false, ip, port); }
  socket_t socket() const override { return c_.fd; }

  // A read failed (closed, timed out): where the next request would start is unknown.
  bool failed() const { return failed_; }

  // Drops what httplib has read: the rest is the start of the next request.
  void consume() {
    c_.buf.erase(0, pos_);
    pos_ = 0;
    c_.scanned = 0;
  }

 private:
  int wait(short events, int ms) const {
    pollfd p{c_.fd, events, 0};
    return ::poll(&p, 1, ms);
  }

  Conn& c_;
  size_t pos_ = 0;
  bool failed_ = false;
  int read_ms_, write_ms_;
};

// httplib's accept loop hands each socket to a task; here the task runs at once on that
// thread, and all it does is pass the socket to the gate.
class InlineQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

}  // namespace

struct GatedServer::Gate {
  Gate(GatedServer& s, const HttpLimits& l) : server(s), lim(l) {}

  GatedServer& server;
  const HttpLimits lim;
  int wake = -1;  // eventfd: connections for the gate thread, or stop
  std::mutex m;
  std::condition_variable cv;  // for the workers: a ready request, a freed slot, or stop
  bool running = false;
  std::vector<std::unique_ptr<Conn>> incoming;  // for the gate thread
  std::deque<std::unique_ptr<Conn>> ready;      // heads complete, for the workers
  struct Client {
    int open = 0;     // connections
    int workers = 0;  // requests on a worker
  };
  std::unordered_map<std::string, Client> clients;
  int open = 0;
  std::thread gate_thread;
  std::vector<std::thread> workers;

  std::chrono::milliseconds request_timeout() const {
    return std::chrono::milliseconds(int64_t(std::ceil(lim.request_timeout_s * 1000)));
  }

  void start() {
    wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    QS_CHECK(wake >= 0, "serve: eventfd failed: {}", std::strerror(errno));
    running = true;
    gate_thread = std::thread([this] { gate_loop(); });
    for (int i = 0; i < lim.workers; ++i) workers.emplace_back([this] { work_loop(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m);
      running = false;
    }
    notify_gate();
    cv.notify_all();
    gate_thread.join();
    for (auto& t : workers) t.join();
    workers.clear();
    for (auto& c : incoming) close(std::move(c));
    for (auto& c : ready) close(std::move(c));
    incoming.clear();
    ready.clear();
    ::close(wake);
    wake = -1;
  }

  void notify_gate() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake, &one, sizeof one);
  }

  // A new connection from the accept loop: counted, or refused with 503.
  void admit(int fd) {
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    int port = 0;
    socket_address(fd, true, c->ip, port);
    c->deadline = Clock::now() + std::chrono::seconds(lim.keep_alive_s);
    c->requests_left = server.keep_alive_max_count_;
    std::string refusal;
    {
      std::lock_guard<std::mutex> lk(m);
      Client& cl = clients[c->ip];
      if (!running)
        refusal = "the server is stopping";
      else if (open >= lim.connections_max)
        refusal = fmt::format("the server has {} connections open, its limit; hint: retry later", open);
      else if (cl.open >= lim.connections_per_client)
        refusal = fmt::format("{} has {} connections open to this server, the limit for one client address; "
                              "hint: reuse connections (keep-alive) instead of opening more",
                              c->ip, cl.open);
      if (refusal.empty()) {
        ++open, ++cl.open;
        incoming.push_back(std::move(c));
      } else if (cl.open == 0) {
        clients.erase(c->ip);
      }
    }
    if (refusal.empty()) return notify_gate();
    refuse(fd, 503, refusal);
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
  }

  void close(std::unique_ptr<Conn> c) {
    ::shutdown(c->fd, SHUT_RDWR);
    ::close(c->fd);
    std::lock_guard<std::mutex> lk(m);
    --open;
    auto it = clients.find(c->ip);
    if (it != clients.end() && --it->second.open == 0 && it->second.workers == 0) clients.erase(it);
  }

  void to_workers(std::unique_ptr<Conn> c) {
    {
      std::lock_guard<std::mutex> lk(m);
      ready.push_back(std::move(c));
    }
    cv.notify_one();
  }

  // Reads what a waiting connection has sent; returns false when it must be closed (after
  // answering it where there is something to say).
  bool receive(Conn& c, Clock::time_point now) {
    char chunk[4096];
    const size_t room = std::min(sizeof chunk, lim.head_max + 1 - std::min(c.buf.size(), lim.head_max));
    const ssize_t n = ::recv(c.fd, chunk, room, MSG_DONTWAIT);
    if (n == 0) return false;  // closed by the client
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (!c.started) {
      c.started = true;
      c.deadline = now + request_timeout();
    }
    c.buf.append(chunk, size_t(n));
    return true;
  }

  void gate_loop() {
    std::vector<std::unique_ptr<Conn>> waiting;
    std::vector<pollfd> fds;
    for (;;) {
      {
        std::lock_guard<std::mutex> lk(m);
        if (!running) break;
        for (auto& c : incoming) waiting.push_back(std::move(c));
        incoming.clear();
      }
      fds.assign(1, pollfd{wake, POLLIN, 0});
      int64_t timeout = -1;
      for (auto& c : waiting) {
        fds.push_back(pollfd{c->fd, POLLIN, 0});
        const int64_t left = ms_until(c->deadline);
        timeout = timeout < 0 ? left : std::min(timeout, left);
      }
      // One millisecond more, so that a deadline has passed when poll returns for it.
      if (::poll(fds.data(), fds.size(), timeout < 0 ? -1 : int(timeout + 1)) < 0 && errno != EINTR) break;
      if (fds[0].revents) {
        uint64_t v;
        [[maybe_unused]] const ssize_t n = ::read(wake, &v, sizeof v);
      }
      const Clock::time_point now = Clock::now();
      size_t kept = 0;
      for (size_t i = 0; i < waiting.size(); ++i) {
        std::unique_ptr<Conn> c = std::move(waiting[i]);
        bool open = !fds[i + 1].revents || receive(*c, now);
        const size_t end = open && c->started ? head_end(*c) : std::string::npos;
        if (end != std::string::npos && end <= lim.head_max) {
          to_workers(std::move(c));
          continue;
        }
        if (open && c->buf.size() > lim.head_max) {
          refuse(c->fd, 431, fmt::format("the request head is longer than {} bytes", lim.head_max));
          open = false;
        } else if (open && now >= c->deadline) {
          if (c->started)
            refuse(c->fd, 408, fmt::format("the request did not arrive within {} s of its first byte",
                                           lim.request_timeout_s));
          open = false;  // else: idle past keep_alive_s
        }
        if (open)
          waiting[kept++] = std::move(c);
        else
          close(std::move(c));
      }
      waiting.resize(kept);
    }
    for (auto& c : waiting) close(std::move(c));
  }

  // The oldest ready request whose client holds fewer than workers_per_client workers.
  std::unique_ptr<Conn> take() {
    for (auto it = ready.begin(); it != ready.end(); ++it)
      if (clients[(*it)->ip].workers < lim.workers_per_client) {
        std::unique_ptr<Conn> c = std::move(*it);
        ready.erase(it);
        return c;
      }
    return nullptr;
  }

  void work_loop() {
    for (;;) {
      std::unique_ptr<Conn> c;
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return !running || (c = take()) != nullptr; });
        if (!c) return;  // stopping
        ++clients[c->ip].workers;
      }
      const bool keep = serve_one(*c);
      {
        std::lock_guard<std::mutex> lk(m);
        --clients[c->ip].workers;
      }
      cv.notify_all();  // a request of this client may run now
      if (!keep)
        close(std::move(c));
      else if (c->started && head_end(*c) != std::string::npos)
        to_workers(std::move(c));  // the next request was sent with this one
      else {
        std::lock_guard<std::mutex> lk(m);
        incoming.push_back(std::move(c));
        notify_gate();
      }
    }
  }

  // One request through httplib; true when the connection stays open for the next one.
  bool serve_one(Conn& c) {
    t_timed_out = false;
    const int read_ms = int(server.read_timeout_sec_ * 1000 + server.read_timeout_usec_ / 1000);
    const int write_ms = int(server.write_timeout_sec_ * 1000 + server.write_timeout_usec_ / 1000);
    ConnStream strm(c, read_ms, write_ms);
    const bool last = c.requests_left <= 1;
    bool closed = false;
    const bool ok = server.process_request(strm, last, closed, nullptr);
    strm.consume();
    if (!ok || closed || last || strm.failed()) return false;
    --c.requests_left;
    const Clock::time_point now = Clock::now();
    c.started = !c.buf.empty();
    c.deadline = c.started ? now + request_timeout() : now + std::chrono::seconds(lim.keep_alive_s);
    return true;
  }
};

GatedServer::GatedServer(const HttpLimits& l) {
  QS_CHECK(l.request_timeout_s > 0 && std::isfinite(l.request_timeout_s) && l.request_timeout_s <= 86400,
           "serve: the request timeout must be a positive number of seconds up to 86400, got {}", l.request_timeout_s);
  QS_CHECK(l.keep_alive_s > 0 && l.head_max >= 1024 && l.workers > 0 && l.workers_per_client > 0 &&
               l.connections_max > 0 && l.connections_per_client > 0,
           "serve: HTTP limits must be positive (head at least 1024 bytes): keep_alive {} s, head {} bytes, "
           "{} workers, {} per client, {} connections, {} per client",
           l.keep_alive_s, l.head_max, l.workers, l.workers_per_client, l.connections_max, l.connections_per_client);
  gate_ = std::make_unique<Gate>(*this, l);
  set_keep_alive_timeout(l.keep_alive_s);  // also what the Keep-Alive response header says
  new_task_queue = [] { return new InlineQueue; };
}

GatedServer::~GatedServer() = default;

bool GatedServer::serve() {
  // httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into Debian's
  // library): a burst of connections beyond it waited for SYN retransmits (1 s, then 3 s).
  // Listening again on the bound socket only raises the backlog.
  ::listen(svr_sock_, SOMAXCONN);
  gate_->start();
  const bool ok = listen_after_bind();
  gate_->stop();
  return ok;
}

bool GatedServer::request_timed_out() { return t_timed_out; }

bool GatedServer::process_and_close_socket(socket_t sock) {
  gate_->admit(sock);
  return true;
}

}  // namespace qs::apps
