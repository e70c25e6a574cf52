// The HTTP/1.1 server core shared by `strata node` and `strata gateway`: a listener with an
// accept loop, one coroutine per connection (plain or TLS) that reads each request in two
// phases (headers, then the body) under header/body limits, an idle deadline and a
// whole-request read deadline, early rejects (400/413/431, or the handler's own answer after
// the headers, e.g. 401 before any body byte is buffered) with a half-close and a bounded
// drain, connection accounting (global and per client address) and a graceful stop.
// No engine or gateway dependency.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/status.h"
#include "http/conn_limit.h"

namespace strata::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
template <typename T>
using Task = asio::awaitable<T>;
using Request = bhttp::request<bhttp::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// A complete response to send.
struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  Headers headers;
};

struct Limits {
  size_t header_bytes = 64 * 1024;                // beyond: 431
  size_t header_fields = 128;                     // header lines; beyond: 431
  uint64_t body_bytes = 8u << 20;                 // beyond: 413
  std::chrono::milliseconds idle{30000};          // waiting for a request's first byte
  std::chrono::milliseconds request_read{30000};  // reading one whole request (headers + body)
  std::chrono::milliseconds write{60000};         // each write
  int max_connections = 2048;                     // open client connections (0: unlimited)
  int max_connections_per_client = 512;           // per remote address (0: unlimited)
  uint64_t drain_bytes = 64u << 20;               // read and discarded after an early reject
  std::chrono::milliseconds drain{2000};
};

// The client side of a connection, plain or TLS, behind one interface. Writes return false
// when the connection broke.
class Stream {
 public:
  virtual ~Stream() = default;
  virtual Task<bool> Write(bhttp::response<bhttp::string_body>& res) = 0;
  virtual Task<bool> WriteHeader(bhttp::response_serializer<bhttp::empty_body>& sr) = 0;
  virtual Task<bool> WriteChunk(std::string_view data) = 0;  // one HTTP chunk
  virtual Task<bool> WriteLastChunk() = 0;
  // The TCP socket under the stream (plain streams: to watch for a disconnect).
  virtual tcp::socket& socket() = 0;
  // Bytes read past the current request (a pipelined next request).
  virtual beast::flat_buffer& buffer() = 0;
  virtual const std::string& client() const = 0;  // remote address
  virtual bool tls() const = 0;
};

// What a server plugs into the core.
class Handler {
 public:
  virtual ~Handler() = default;
  // Called once the headers are read, before the body: a reply rejects the request without
  // reading its body (the connection then closes unless the request had no body).
  virtual std::optional<Reply> OnHeaders(const Request& req, const Stream& s) {
    return std::nullopt;
  }
  // Serves a complete request; returns whether the connection stays open.
  virtual Task<bool> OnRequest(Stream& s, Request& req) = 0;
  // Formats (and counts) an answer of the core itself: 400/413/431 for a request that could
  // not be read (req: null or the headers read so far), 503 for a connection over the limits.
  virtual Reply OnTransportError(int status, const std::string& message, const Request* req) = 0;
};

struct ServerOptions {
  std::string name = "strata";  // for messages: "strata node"
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
  std::string server_header = "strata";
  Limits limits;
};

class Server {
 public:
  Server(asio::io_context& ioc, Handler& handler, ServerOptions o);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens. Errors: an invalid host, the address cannot be bound.
  Status Listen();
  uint16_t port() const { return port_; }
  // Starts accepting (on the io_context's threads).
  void Start();
  // TLS from now on (null: plain). New connections take the context current at their accept,
  // so a reload never disturbs connections already open.
  void SetTls(std::shared_ptr<asio::ssl::context> ctx);
  // Graceful stop: closes the listener, closes idle connections, lets requests in flight end
  // (new ones on their connections are refused), then calls done once every connection has
  // closed or after grace, whichever comes first.
  void Stop(std::chrono::milliseconds grace, std::function<void()> done);
  // Stop(grace, ioc.stop) on SIGINT or SIGTERM.
  void StopOnSignals(std::chrono::milliseconds grace);

  int connections() const { return tracker_.total(); }
  uint64_t rejected_connections() const { return rejected_.load(); }
  bool stopping() const { return stopping_.load(); }
  const Limits& limits() const { return o_.limits; }

 private:
  struct Ctl;
  Task<void> Accept();
  template <typename S>
  Task<void> Session(S stream, std::shared_ptr<Ctl> ctl, std::shared_ptr<void> keep);
  // Reads and serves one request; returns whether the connection stays open.
  template <typename S>
  Task<bool> ServeOne(S& stream, Stream& s, Ctl& ctl);
  Task<void> Refuse(tcp::socket socket, ConnectionTracker::Decision why);
  // Closes the oldest connection waiting for a request (of client, or of anyone when
  // client is ""). Returns whether one was found.
  bool EvictIdle(const std::string& client);
  void WatchStop(std::chrono::steady_clock::time_point until, std::function<void()> done);

  asio::io_context& ioc_;
  Handler& h_;
  ServerOptions o_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::mutex tls_mu_;
  std::shared_ptr<asio::ssl::context> tls_;
  ConnectionTracker tracker_;
  std::atomic<uint64_t> rejected_{0};
  std::atomic<bool> stopping_{false};
  std::mutex ctl_mu_;
  std::map<uint64_t, std::shared_ptr<Ctl>> ctls_;  // open sessions
  uint64_t next_ctl_ = 0;
  std::unique_ptr<asio::signal_set> signals_;
  std::unique_ptr<asio::steady_timer> stop_timer_;
};

// Raises the soft limit of open descriptors to the hard limit.
void RaiseFileLimit();
// Runs ioc on n threads (the caller's included) until it stops.
void RunThreads(asio::io_context& ioc, int n);
// The path of a request target (before '?').
std::string_view PathOf(std::string_view target);
// Constant-time comparison of a presented secret with the configured one.
bool SecretEquals(std::string_view given, std::string_view secret);
// The key of "Authorization: Bearer <key>" ("" when absent).
std::string_view BearerToken(const Request& req);

}  // namespace strata::http
