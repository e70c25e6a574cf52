// The HTTP server core against real sockets on loopback: limits, early rejects, deadlines,
// connection caps; and the Prometheus helpers.
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "http/prom.h"
#include "http/server.h"
#include "http/tls.h"

namespace strata::http {
namespace {

TEST(ConnectionTracker, GlobalAndPerClientCaps) {
  ConnectionTracker t(3, 2);
  using D = ConnectionTracker::Decision;
  EXPECT_EQ(t.Acquire("a"), D::kAccepted);
  EXPECT_EQ(t.Acquire("a"), D::kAccepted);
  EXPECT_EQ(t.Acquire("a"), D::kClientFull);
  EXPECT_EQ(t.Acquire("b"), D::kAccepted);
  EXPECT_EQ(t.Acquire("c"), D::kServerFull);
  EXPECT_EQ(t.total(), 3);
  t.Release("a");
  EXPECT_EQ(t.of("a"), 1);
  EXPECT_EQ(t.Acquire("c"), D::kAccepted);
  t.ForceAcquire("c");
  EXPECT_EQ(t.total(), 4);
  EXPECT_EQ(t.of("c"), 2);
}

TEST(Prom, HistogramIsCumulative) {
  Histogram h({0.1, 1});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(5);
  std::string out;
  h.Render("x", "b=\"1\"", &out);
  EXPECT_NE(out.find("x_bucket{b=\"1\",le=\"0.1\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_bucket{b=\"1\",le=\"1\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_bucket{b=\"1\",le=\"+Inf\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_sum{b=\"1\"} 5.55\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_count{b=\"1\"} 3\n"), std::string::npos) << out;
  std::string plain;
  h.Render("y", "", &plain);
  EXPECT_NE(plain.find("y_bucket{le=\"+Inf\"} 3\ny_sum 5.55\ny_count 3\n"), std::string::npos)
      << plain;
  std::string m;
  PromMetric("z", "gauge", "A gauge.", 0.25, &m);
  EXPECT_EQ(m, "# HELP z A gauge.\n# TYPE z gauge\nz 0.25\n");
  EXPECT_EQ(PromEscape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Tls, MissingFilesAreNamed) {
  auto ctx = MakeServerTls("/nonexistent/cert.pem", "/nonexistent/key.pem");
  ASSERT_FALSE(ctx.ok());
  EXPECT_NE(ctx.status().message().find("/nonexistent/cert.pem"), std::string::npos)
      << ctx.status().message();
}

// Answers 200 "ok:<body>"; rejects requests without "X-Key: k" after their headers (401).
class EchoHandler : public Handler {
 public:
  std::optional<Reply> OnHeaders(const Request& req, const Stream&) override {
    if (req["X-Key"] == "k") return std::nullopt;
    Reply r;
    r.status = 401;
    r.body = "no key";
    return r;
  }
  Task<bool> OnRequest(Stream& s, Request& req) override {
    bhttp::response<bhttp::string_body> res{bhttp::status::ok, req.version()};
    res.body() = "ok:" + req.body();
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    const bool ok = co_await s.Write(res);
    co_return ok&& req.keep_alive();
  }
  Reply OnTransportError(int status, const std::string& message, const Request*) override {
    Reply r;
    r.status = status;
    r.body = message;
    return r;
  }
};

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(Limits l) {
    ServerOptions o;
    o.name = "test";
    o.limits = l;
    server_ = std::make_unique<Server>(ioc_, handler_, o);
    ASSERT_TRUE(server_->Listen().ok());
    server_->Start();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    if (!server_) return;
    asio::post(ioc_,
               [this] { server_->Stop(std::chrono::milliseconds(500), [this] { ioc_.stop(); }); });
    thread_.join();
  }
  // A client connection to the server.
  std::unique_ptr<tcp::socket> Connect() {
    auto s = std::make_unique<tcp::socket>(client_ioc_);
    s->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
    return s;
  }
  // Connects, sends raw bytes, reads until the server closes or timeout_ms passes.
  std::string Exchange(const std::string& data, int timeout_ms = 3000) {
    auto s = Connect();
    asio::write(*s, asio::buffer(data));
    return ReadAll(*s, timeout_ms);
  }
  static std::string ReadAll(tcp::socket& s, int timeout_ms) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string out;
    char b[4096];
    for (;;) {
      const ssize_t n = ::recv(s.native_handle(), b, sizeof(b), 0);
      if (n <= 0) break;
      out.append(b, static_cast<size_t>(n));
    }
    return out;
  }

  asio::io_context ioc_, client_ioc_;
  EchoHandler handler_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

TEST_F(ServerTest, ServesAndRejectsByLimits) {
  Limits l;
  l.header_bytes = 1024;
  l.body_bytes = 16;
  StartServer(l);
  std::string r =
      Exchange("POST / HTTP/1.1\r\nX-Key: k\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
  EXPECT_NE(r.find("200 OK"), std::string::npos) << r;
  EXPECT_NE(r.find("ok:abc"), std::string::npos) << r;
  r = Exchange("POST / HTTP/1.1\r\nX-Key: k\r\nContent-Length: 17\r\n\r\n");
  EXPECT_NE(r.find("413"), std::string::npos) << r;
  r = Exchange("GET / HTTP/1.1\r\nX-Key: k\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
  EXPECT_NE(r.find("431"), std::string::npos) << r;
  r = Exchange("GARBAGE\r\n\r\n");
  EXPECT_NE(r.find("400"), std::string::npos) << r;
}

TEST_F(ServerTest, RejectsOnHeadersWithoutReadingTheBody) {
  Limits l;
  l.body_bytes = 8u << 20;
  StartServer(l);
  // The body is announced but never sent: the answer must come anyway.
  const auto t0 = std::chrono::steady_clock::now();
  const std::string r = Exchange("POST / HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n", 5000);
  EXPECT_NE(r.find("401"), std::string::npos) << r;
  EXPECT_NE(r.find("no key"), std::string::npos) << r;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
  // Without a body the connection stays usable.
  auto s = Connect();
  asio::write(
      *s, asio::buffer(std::string(
              "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nX-Key: k\r\nConnection: close\r\n\r\n")));
  const std::string both = ReadAll(*s, 3000);
  EXPECT_NE(both.find("401"), std::string::npos) << both;
  EXPECT_NE(both.find("ok:"), std::string::npos) << both;
}

TEST_F(ServerTest, SlowHeadersHitTheRequestDeadline) {
  Limits l;
  l.request_read = std::chrono::milliseconds(300);
  StartServer(l);
  auto conn = Connect();
  tcp::socket& s = *conn;
  const auto t0 = std::chrono::steady_clock::now();
  bool closed = false;
  // One header byte every 50 ms: the server must close within the deadline, not keep going.
  for (int i = 0; i < 60 && !closed; ++i) {
    beast::error_code ec;
    asio::write(s, asio::buffer(i == 0 ? std::string("GET / HTTP/1.1\r\nX-A: ") : std::string("a")),
                ec);
    if (ec) closed = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    char b;
    if (::recv(s.native_handle(), &b, 1, MSG_DONTWAIT) == 0) closed = true;
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2000));
}

TEST_F(ServerTest, IdleConnectionsMakeRoomForNewOnes) {
  Limits l;
  l.max_connections_per_client = 4;
  l.max_connections = 8;
  StartServer(l);
  std::vector<std::unique_ptr<tcp::socket>> idle(20);
  for (auto& conn : idle) conn = Connect();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_LE(server_->connections(), 4);
  // A real request still gets through while the idle ones are held open.
  const std::string r = Exchange("GET / HTTP/1.1\r\nX-Key: k\r\nConnection: close\r\n\r\n");
  EXPECT_NE(r.find("200 OK"), std::string::npos) << r;
}

TEST_F(ServerTest, BusyClientOverItsCapIsRefused) {
  Limits l;
  l.max_connections_per_client = 2;
  StartServer(l);
  // Two connections with a request in progress (headers incomplete): not idle.
  std::vector<std::unique_ptr<tcp::socket>> busy;
  for (int i = 0; i < 2; ++i) {
    busy.push_back(Connect());
    asio::write(*busy.back(), asio::buffer(std::string("GET / HTTP/1.1\r\n")));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string r = Exchange("GET / HTTP/1.1\r\nX-Key: k\r\n\r\n");
  EXPECT_NE(r.find("503"), std::string::npos) << r;
  EXPECT_NE(r.find("Retry-After: 1"), std::string::npos) << r;
  EXPECT_EQ(server_->rejected_connections(), 1u);
}

}  // namespace
}  // namespace strata::http
