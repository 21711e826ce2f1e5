// The viewer's server under slow and greedy clients (issue 19, slowloris): clients that
// trickle a request's head or body, one address opening many connections, an oversized
// head. Each test times a normal request made meanwhile, and when the others were closed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "apps/viewer_test_util.h"
#include "qiusuo/apps/viewer.h"

namespace qs::apps {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Small limits, so that the deadlines pass within the test.
constexpr double kTimeout = 3;  // request_timeout_s
constexpr int kWorkers = 4, kPerClient = 2, kConnsPerClient = 24;
// A normal request answered within this was not queued behind the slow clients: they are
// closed only after kTimeout.
constexpr double kPrompt = 1.0;

class ViewerLimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ViewerOptions o;
    o.port = 0;
    o.assets_dir = make_assets("viewer_limits") + "/www";
    o.http.request_timeout_s = kTimeout;
    o.http.workers = kWorkers;
    o.http.workers_per_client = kPerClient;
    o.http.connections_per_client = kConnsPerClient;
    running_ = new RunningServer(o);
    port_ = running_->port;
  }
  static void TearDownTestSuite() {
    delete running_;
  }

  // A TCP connection to the server from the loopback address `from` (127.0.0.x: each is a
  // different client address to the server).
  static int connect_from(const char* from) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, from, &a.sin_addr);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << from;
    a.sin_port = htons(uint16_t(port_));
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }
  static std::string host() { return "Host: 127.0.0.1:" + std::to_string(port_) + "\r\n"; }

  // GET /api/model from 127.0.0.1 with a 10 s timeout; returns the seconds it took, or -1
  // when it failed.
  static double timed_request() {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(10);
    c.set_read_timeout(10);
    const Clock::time_point t0 = Clock::now();
    auto r = c.Get("/api/model");
    if (!r || r->status != 200) return -1;
    return seconds_since(t0);
  }

  // A client that sent `start` and then sends `drip` every 200 ms until the server closes
  // the connection; it notes what the server answered and when it closed.
  struct Slow {
    int fd = -1;
    Clock::time_point first;
    std::string answer;
    double closed_after = -1;  // seconds from the first byte
  };
  static std::vector<Slow> open_slow(const char* from, int n, const std::string& start) {
    std::vector<Slow> s(static_cast<size_t>(n));
    for (auto& c : s) {
      c.fd = connect_from(from);
      c.first = Clock::now();
      EXPECT_EQ(::send(c.fd, start.data(), start.size(), MSG_NOSIGNAL), ssize_t(start.size()));
    }
    return s;
  }
  // Drips until every connection is closed or `limit` seconds have passed.
  static void drip_until_closed(std::vector<Slow>& s, const std::string& drip, double limit) {
    const Clock::time_point t0 = Clock::now();
    for (size_t open = s.size(); open > 0 && seconds_since(t0) < limit;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      open = 0;
      for (auto& c : s) {
        if (c.closed_after >= 0) continue;
        char buf[4096];
        ssize_t n;
        while ((n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) c.answer.append(buf, size_t(n));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
            ::send(c.fd, drip.data(), drip.size(), MSG_NOSIGNAL) < 0) {
          c.closed_after = seconds_since(c.first);
          continue;
        }
        ++open;
      }
    }
    for (auto& c : s) ::close(c.fd);
  }

  static inline RunningServer* running_ = nullptr;
  static inline int port_ = 0;
};

// More clients than workers send a header line every 200 ms, from the same address as the
// normal request: before, they held every worker and the normal request waited without end.
TEST_F(ViewerLimitsTest, SlowHeadsDoNotDelayOtherRequests) {
  std::vector<Slow> slow = open_slow("127.0.0.1", 4 * kWorkers, "GET /api/model HTTP/1.1\r\n" + host());
  std::thread dripper([&] { drip_until_closed(slow, "X-Slow: 1\r\n", kTimeout + 5); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const double took = timed_request();
  dripper.join();
  EXPECT_GE(took, 0) << "the normal request failed";
  EXPECT_LT(took, kPrompt) << "the normal request waited behind the slow ones";
  for (const Slow& c : slow) {
    EXPECT_GE(c.closed_after, kTimeout - 0.05) << "closed before the deadline";
    EXPECT_LT(c.closed_after, kTimeout + 1.5) << "not closed at the deadline (-1: still open)";
    EXPECT_EQ(c.answer.rfind("HTTP/1.1 408", 0), 0u) << c.answer;
    EXPECT_NE(c.answer.find("did not arrive within 3 s"), std::string::npos) << c.answer;
  }
}

// Slow bodies are read on a worker; one address holds at most kPerClient of them, so a
// request from another address is still served at once.
TEST_F(ViewerLimitsTest, SlowBodiesHoldAtMostTheirShareOfWorkers) {
  std::vector<Slow> slow = open_slow("127.0.0.2", 2 * kWorkers,
                                     "POST /api/attention HTTP/1.1\r\n" + host() +
                                         "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{");
  std::thread dripper([&] { drip_until_closed(slow, " ", kTimeout + 5); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const double took = timed_request();
  dripper.join();
  EXPECT_GE(took, 0) << "the normal request failed";
  EXPECT_LT(took, kPrompt) << "the normal request waited behind the slow bodies";
  for (const Slow& c : slow) {
    // Those queued behind the first kPerClient get the worker after the deadline: 408 at once.
    EXPECT_GE(c.closed_after, kTimeout - 0.05);
    EXPECT_LT(c.closed_after, kTimeout + 1.5) << "not closed at the deadline (-1: still open)";
    EXPECT_EQ(c.answer.rfind("HTTP/1.1 408", 0), 0u) << c.answer;
  }
}

TEST_F(ViewerLimitsTest, OneAddressOpensABoundedNumberOfConnections) {
  std::vector<int> fds;
  for (int i = 0; i < kConnsPerClient; ++i) fds.push_back(connect_from("127.0.0.3"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server has taken them
  const int extra = connect_from("127.0.0.3");
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(extra, buf, sizeof buf, 0)) > 0;) answer.append(buf, size_t(n));
  ::close(extra);
  EXPECT_EQ(answer.rfind("HTTP/1.1 503", 0), 0u) << answer;
  EXPECT_NE(answer.find("127.0.0.3 has 24 connections open"), std::string::npos) << answer;
  const double took = timed_request();  // another address is not refused
  EXPECT_GE(took, 0);
  EXPECT_LT(took, kPrompt);
  for (int fd : fds) ::close(fd);
}

TEST_F(ViewerLimitsTest, OversizedHeadIsRefused) {
  const int fd = connect_from("127.0.0.1");
  std::string head = "GET /api/model HTTP/1.1\r\n" + host();
  while (head.size() < 40 * 1024) head += "X-Padding: " + std::string(100, 'p') + "\r\n";
  // All of it may not be taken: the server stops reading at its limit and answers.
  [[maybe_unused]] const ssize_t sent = ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) answer.append(buf, size_t(n));
  ::close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 431", 0), 0u) << answer;
  EXPECT_NE(answer.find("longer than 32768 bytes"), std::string::npos) << answer;
  // A head just under the limit is served (httplib takes header lines up to 8192 bytes).
  httplib::Client c("127.0.0.1", port_);
  httplib::Headers h;
  for (int i = 0; i < 4; ++i) h.emplace("X-Padding-" + std::to_string(i), std::string(7900, 'p'));
  auto r = c.Get("/api/model", h);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(HttpLimits, BadLimitsAreRefused) {
  ViewerOptions o;
  o.port = 0;
  o.assets_dir = make_assets("viewer_bad_limits") + "/www";
  o.http.request_timeout_s = 0;
  EXPECT_NE(qs::testing::error_of([&] { ViewerServer s(tiny_lm(), o); }).find("request timeout must be a positive"),
            std::string::npos);
  o.http.request_timeout_s = 10;
  o.http.workers_per_client = 0;
  EXPECT_NE(qs::testing::error_of([&] { ViewerServer s(tiny_lm(), o); }).find("must be positive"), std::string::npos);
}

}  // namespace
}  // namespace qs::apps
