// The viewer's server in-process on a free port, driven over HTTP: model info, weights
// equal to capture_attention's, the three formats, every error path, path traversal.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <thread>

#include "apps/viewer_test_util.h"
#include "qiusuo/apps/viewer.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/text/tokenizer.h"
#include "test_util.h"

namespace qs::apps {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr size_t kBodyLimit = 64 * 1024;

class ViewerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = make_assets("viewer_server");
    ViewerOptions o;
    o.port = 0;
    o.assets_dir = root_ + "/www";
    o.max_tokens = 300;
    o.body_limit = kBodyLimit;
    running_ = new RunningServer(o);
    port_ = running_->port;
  }
  static void TearDownTestSuite() {
    delete running_;
  }
  static httplib::Result post(const json& body) { return post_raw(body.dump()); }
  // Sanitizer and valgrind runs on a busy machine can take longer than httplib's 5 s.
  static httplib::Client client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120);
    return c;
  }
  static httplib::Result post_raw(const std::string& body) {
    return client().Post("/api/attention", body, "application/json");
  }
  // Expects an error status with an {"error": message} body; returns the message.
  static std::string error_of(const httplib::Result& r, int status) {
    EXPECT_TRUE(r);
    if (!r) return "";
    EXPECT_EQ(r->status, status) << r->body;
    const json j = json::parse(r->body, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error") && j["error"].is_string()) << r->body;
    return j.is_object() ? j.value("error", std::string()) : "";
  }
  // A raw request line, as a browser would never send it (no client-side normalisation).
  static std::string raw_get(const std::string& target, std::string host = "") {
    if (host.empty()) host = "127.0.0.1:" + std::to_string(port_);
    return raw_request("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
  }
  // Sends `req` whole, returns everything the server answers until it closes.
  static std::string raw_request(const std::string& req) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::send(fd, req.data(), req.size(), 0), ssize_t(req.size()));
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, size_t(n));
    ::close(fd);
    return out;
  }
  static inline std::string root_;
  static inline RunningServer* running_ = nullptr;
  static inline int port_ = 0;
};

TEST_F(ViewerTest, ModelInfo) {
  auto r = client().Get("/api/model");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const json j = json::parse(r->body);
  EXPECT_EQ(j["layers"], 2);
  EXPECT_EQ(j["heads"], 4);
  EXPECT_EQ(j["kinds"], json::array({"causal"}));
  EXPECT_EQ(j["encoding"], "alibi");
  EXPECT_EQ(j["vocabulary"]["size"], 256);
  EXPECT_EQ(j["vocabulary"]["kind"], "byte");
  EXPECT_EQ(j["max_tokens"], 300);
  EXPECT_EQ(j["step"], 42);
  ASSERT_EQ(j["maps"].size(), 2u);
  EXPECT_EQ(j["maps"][1]["name"], "blocks.1.attn");
  EXPECT_TRUE(j["analysis"].is_null());
}

// Dense weights (rounded to 4 significant digits) equal capture_attention's on the same model.
TEST_F(ViewerTest, DenseEqualsCapture) {
  const std::string text = "In the beginning God created";
  auto model = tiny_model();
  text::ByteTokenizer tok;
  const AttentionSnapshot s = capture_attention(*model, tok, text);
  for (int64_t layer : {0, 1})
    for (int64_t head : {0, 3}) {
      auto r = post({{"text", text}, {"layer", layer}, {"head", head}});
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 200) << r->body;
      const json j = json::parse(r->body);
      EXPECT_EQ(j["format"], "dense");
      EXPECT_EQ(j["tokens"].get<std::vector<std::string>>(), s.tokens);
      const int64_t n = int64_t(s.tokens.size());
      ASSERT_EQ(j["weights"].size(), size_t(n));
      const std::vector<double> w = s.maps[size_t(layer)].weights.to_vector();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < n; ++k) {
          const double want = w[size_t((head * n + i) * n + k)], got = j["weights"][i][k].get<double>();
          EXPECT_NEAR(got, want, 5e-4 * std::fabs(want) + 1e-30) << layer << "," << head << "," << i << "," << k;
        }
    }
}

TEST_F(ViewerTest, ThumbnailsArePooledMeans) {
  const std::string text(100, 'x');
  auto r = post({{"text", text}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["view"], "model");
  ASSERT_EQ(j["maps"].size(), 2u);
  auto model = tiny_model();
  text::ByteTokenizer tok;
  const AttentionSnapshot s = capture_attention(*model, tok, text);
  for (size_t l = 0; l < 2; ++l) {
    const json& m = j["maps"][l];
    EXPECT_EQ(m["pooled_rows"], kViewerThumbMax);
    ASSERT_EQ(m["heads"].size(), 4u);
    const std::vector<float> p = mean_pool(s.maps[l].weights.data_ptr<float>() + 2 * 100 * 100, 100, 100, 64, 64);
    ASSERT_EQ(m["heads"][2].size(), 64u);
    for (int64_t i = 0; i < 64; i += 9)
      for (int64_t k = 0; k < 64; k += 7)
        EXPECT_NEAR(m["heads"][2][i][k].get<double>(), p[size_t(i * 64 + k)], 5e-4 * p[size_t(i * 64 + k)] + 1e-30);
  }
}

TEST(ViewerMath, MeanPoolAndRounding) {
  // 3x5 -> 2x2: rows {0,1} {2}; cols {0,1,2} {3,4} (token i in bin floor(i * bins / n)).
  std::vector<float> w(15);
  for (int i = 0; i < 15; ++i) w[size_t(i)] = float(i);
  const std::vector<float> p = mean_pool(w.data(), 3, 5, 2, 2);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_FLOAT_EQ(p[0], (0 + 1 + 2 + 5 + 6 + 7) / 6.0f);
  EXPECT_FLOAT_EQ(p[1], (3 + 4 + 8 + 9) / 4.0f);
  EXPECT_FLOAT_EQ(p[2], (10 + 11 + 12) / 3.0f);
  EXPECT_FLOAT_EQ(p[3], (13 + 14) / 2.0f);
  EXPECT_EQ(mean_pool(w.data(), 3, 5, 64, 64), w);  // smaller than the bins: unchanged
  EXPECT_EQ(json(round_significant(0.123456)).dump(), "0.1235");
  EXPECT_EQ(json(round_significant(3.0517578e-05)).dump(), "3.052e-05");
  EXPECT_EQ(round_significant(0.0), 0.0);
}

TEST_F(ViewerTest, LongInputsGetTopkOrPooled) {
  const std::string text(280, 'a');
  auto model = tiny_model();
  text::ByteTokenizer tok;
  const std::vector<double> w = capture_attention(*model, tok, text).maps[1].weights.to_vector();
  auto r = post({{"text", text}, {"layer", 1}, {"head", 2}, {"top_k", 5}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["format"], "topk");
  EXPECT_EQ(j["k"], 5);
  ASSERT_EQ(j["indices"].size(), 280u);
  for (int64_t i : {0, 4, 100, 279}) {
    const double* row = w.data() + (2 * 280 + i) * 280;
    const int64_t argmax = std::max_element(row, row + 280) - row;
    EXPECT_EQ(j["indices"][i][0], argmax) << i;
    EXPECT_GE(j["values"][i][0].get<double>(), j["values"][i][4].get<double>());
  }
  r = post({{"text", text}, {"layer", 1}, {"head", 2}});
  ASSERT_TRUE(r);
  j = json::parse(r->body);
  EXPECT_EQ(j["format"], "pooled");
  EXPECT_EQ(j["rows"], 280);
  EXPECT_EQ(j["pooled_rows"], kViewerDenseMax);
  EXPECT_EQ(j["weights"].size(), size_t(kViewerDenseMax));
  // max_tokens keeps the first tokens of a text over the limit.
  r = post({{"text", std::string(400, 'a')}, {"max_tokens", 20}, {"layer", 0}, {"head", 0}});
  ASSERT_TRUE(r);
  j = json::parse(r->body);
  EXPECT_EQ(j["n_tokens"], 20);
  EXPECT_EQ(j["text_tokens"], 400);
}

TEST_F(ViewerTest, BadRequestsGetClearErrors) {
  EXPECT_NE(error_of(post({{"text", ""}}), 422).find("empty"), std::string::npos);
  EXPECT_NE(error_of(post_raw("{\"text\": "), 400).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(post_raw("{\"text\": \"\xC3\x28\"}"), 400).find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of(post_raw("{\"text\": \"\xED\xA0\x80\"}"), 400).find("UTF-8"), std::string::npos);  // surrogate
  EXPECT_NE(error_of(post_raw("[1]"), 400).find("JSON object"), std::string::npos);
  // A chunked body is refused before it is read (httplib's body limit counts a Content-Length
  // only): the client streams 4 MiB and gets 411, the server reading none of it into memory.
  // A path that is not UTF-8 is a 404 with a valid JSON body, not a 500 (issue 19).
  const std::string bad_path = raw_get("/\xff\xfe");
  EXPECT_EQ(bad_path.rfind("HTTP/1.1 404", 0), 0u) << bad_path;
  EXPECT_EQ(bad_path.find("EXCEPTION"), std::string::npos) << bad_path;
  // Several byte ranges of one file are refused (they multiplied a small file 3700-fold).
  {
    httplib::Headers h = {{"Range", "bytes=0-1,0-2,0-3"}};
    auto r = client().Get("/index.html", h);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 416);
    h = {{"Range", "bytes=0-3"}};
    r = client().Get("/index.html", h);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 206);
  }
  // A small chunked body, sent whole in one write: 411 before the body is read.
  const std::string chunked = raw_request(
      "POST /api/attention HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) +
      "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      "10\r\n{\"text\": \"abcd\"}\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.rfind("HTTP/1.1 411", 0), 0u) << chunked;
  EXPECT_NE(chunked.find("Content-Length"), std::string::npos) << chunked;
  // A 4 MiB stream: the server answers (or closes) without reading it, and still serves.
  size_t sent = 0;
  auto streamed = client().Post(
      "/api/attention",
      [&](size_t, httplib::DataSink& sink) {
        const size_t n = std::min<size_t>(64 * 1024, (size_t(4) << 20) - sent);
        if (n == 0) {
          sink.done();
          return true;
        }
        std::string chunk(n, ' ');
        sent += n;
        return sink.write(chunk.data(), chunk.size());
      },
      "application/json");
  if (streamed) EXPECT_EQ(streamed->status, 411) << streamed->body;  // else the server closed while the client wrote
  EXPECT_EQ(client().Get("/api/model")->status, 200);
  // Nesting is bounded while parsing (issue 19: 60,000 levels overflowed the server's stack
  // when the value was copied); 30,000 fit under the 64 KiB body limit.
  const std::string deep = "{\"text\":\"a\",\"layer\":" + std::string(30000, '[') + std::string(30000, ']') + ",\"head\":0}";
  EXPECT_NE(error_of(post_raw(deep), 400).find("nested deeper than 128"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", 3}}), 400).find("text"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", std::string(301, 'a')}}), 422).find("limit is 300"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", "ab"}, {"layer", 2}, {"head", 0}}), 400).find("layer 2 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of(post({{"text", "ab"}, {"layer", -1}, {"head", 0}}), 400).find("out of range"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", "ab"}, {"layer", 0}, {"head", 4}}), 400).find("head 4 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of(post({{"text", "ab"}, {"layer", 0}}), 400).find("both layer and head"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", "ab"}, {"layer", 0.5}, {"head", 0}}), 400).find("integer"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", "ab"}, {"top_k", 0}}), 400).find("top_k"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", "ab"}, {"max_tokens", 301}}), 400).find("max_tokens"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", "ab"}, {"format", "png"}}), 400).find("format"), std::string::npos);
  EXPECT_NE(error_of(post({{"text", std::string(280, 'a')}, {"layer", 0}, {"head", 0}, {"format", "dense"}}), 400)
                .find("limited to 256"),
            std::string::npos);
  EXPECT_NE(error_of(post_raw(std::string(kBodyLimit + 1, ' ')), 413).find("too large"), std::string::npos);
  httplib::Client c = client();
  EXPECT_NE(error_of(c.Get("/api/nothing"), 404).find("no API endpoint"), std::string::npos);
  EXPECT_EQ(error_of(c.Delete("/api/model"), 404).empty(), false);
  // Unknown fields are ignored, and the server still serves after every error.
  auto r = post({{"text", "ab"}, {"colour", "red"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ViewerTest, ConcurrentRequestsAreServed) {
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      auto r = post({{"text", std::string(50 + t, 'q')}, {"layer", 1}, {"head", t}});
      if (r && r->status == 200 && json::parse(r->body)["rows"] == 50 + t) ++ok;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 4);
}

TEST_F(ViewerTest, ServesOnlyTheAssetFolder) {
  const std::string page = raw_get("/");
  EXPECT_NE(page.find("200 OK"), std::string::npos);
  EXPECT_NE(page.find("viewer page"), std::string::npos);
  EXPECT_NE(raw_get("/sub/a.js").find("application/javascript"), std::string::npos);
  for (const char* bad : {"/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/sub/../../secret.txt",
                          "/sub/../index.html", "//etc/passwd", "/%2Fetc/passwd", "/link.txt", "/.hidden",
                          "/sub/%2e%2e/%2e%2e/secret.txt", "/..\\secret.txt", "/nothing.html", "/sub"}) {
    const std::string r = raw_get(bad);
    EXPECT_NE(r.find("404"), std::string::npos) << bad << "\n" << r;
    EXPECT_EQ(r.find("SECRET-CONTENT"), std::string::npos) << bad;
    EXPECT_EQ(r.find("HIDDEN-CONTENT"), std::string::npos) << bad;
    EXPECT_NE(r.find("{\"error\":"), std::string::npos) << bad;
  }
}

// Requests a page on another site could make the browser send: DNS rebinding (a foreign
// Host) and a POST without a JSON content type (no CORS preflight).
TEST_F(ViewerTest, RefusesOtherSitesRequests) {
  EXPECT_NE(raw_get("/", "evil.example:" + std::to_string(port_)).find("403"), std::string::npos);
  EXPECT_NE(raw_get("/api/model", "127.0.0.1:1").find("is not this server's loopback address"), std::string::npos);
  EXPECT_NE(raw_get("/", "localhost:" + std::to_string(port_)).find("200 OK"), std::string::npos);
  EXPECT_NE(error_of(client().Post("/api/attention", R"({"text": "ab"})", "text/plain"), 403).find("application/json"),
            std::string::npos);
  auto r = client().Post("/api/attention", R"({"text": "ab"})", "application/json; charset=utf-8");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(ViewerAssets, ResolveAsset) {
  const std::string root = make_assets("viewer_assets") + "/www";
  EXPECT_EQ(resolve_asset(root, "/"), fs::canonical(root + "/index.html").string());
  EXPECT_EQ(resolve_asset(root, "/sub/a.js"), fs::canonical(root + "/sub/a.js").string());
  for (const char* bad : {"", "index.html", "/..", "/../secret.txt", "/sub/../index.html", "//etc/passwd",
                          "/link.txt", "/.hidden", "/sub/", "/sub", "/a\\b"})
    EXPECT_EQ(resolve_asset(root, bad), "") << bad;
  EXPECT_EQ(resolve_asset(root + "/missing", "/index.html"), "");
}

TEST(ViewerAnalysis, LoadsHeadRoles) {
  const std::string dir = qs::testing::temp_dir("viewer_analysis");
  qs::testing::write_bytes(dir + "/ok.json", R"({"model": "x", "heads": [
      {"name": "blocks.1.attn", "layer": 1, "head": 3, "kind": "causal", "roles": ["positional -1", 7],
       "confidence": 0.83, "extra": {"a": 1}},
      {"layer": 0, "head": 0, "roles": ["rare words"]}]})");
  ViewerOptions o;
  o.analysis_file = dir + "/ok.json";
  ViewerApi api(tiny_lm(), o);
  const json& a = api.model_info()["analysis"];
  ASSERT_EQ(a["heads"].size(), 2u);
  EXPECT_EQ(a["heads"][0]["roles"], json::array({"positional -1"}));
  EXPECT_DOUBLE_EQ(a["heads"][0]["confidence"].get<double>(), 0.83);
  EXPECT_FALSE(a["heads"][0].contains("extra"));
  qs::testing::write_bytes(dir + "/other.json", R"({"heads": [{"layer": 5, "head": 0, "roles": []}]})");
  o.analysis_file = dir + "/other.json";
  EXPECT_NE(qs::testing::error_of([&] { ViewerApi(tiny_lm(), o); }).find("names no head of this model"),
            std::string::npos);
  qs::testing::write_bytes(dir + "/bad.json", R"({"heads": 3})");
  o.analysis_file = dir + "/bad.json";
  EXPECT_NE(qs::testing::error_of([&] { ViewerApi(tiny_lm(), o); }).find("not JSON of the form"), std::string::npos);
}

}  // namespace
}  // namespace qs::apps
