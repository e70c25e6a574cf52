// Internals of the gateway shared by server.cc (listener, sessions, local endpoints, health
// probes, metrics) and proxy.cc (upstream exchanges, streaming, retries, failover).
// Not a public interface.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "cluster/config.h"
#include "gateway/admission.h"
#include "gateway/backend.h"
#include "gateway/cache.h"
#include "gateway/ratelimit.h"
#include "gateway/upstream_pool.h"

namespace strata::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
template <typename T>
using Task = net::awaitable<T>;
using Request = http::request<http::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// The client side of a connection, plain or TLS, behind one interface.
class ClientStream {
 public:
  virtual ~ClientStream() = default;
  virtual Task<bool> Write(http::response<http::string_body>& res) = 0;
  virtual Task<bool> WriteHeader(http::response_serializer<http::empty_body>& sr) = 0;
  virtual Task<bool> WriteChunk(std::string_view data) = 0;  // one HTTP chunk
  virtual Task<bool> WriteLastChunk() = 0;
  // Watches the connection while a request is proxied and nothing is read from or written to
  // it: `on_close` runs (on the connection's executor) if the client closes or resets it. The
  // watch ends when the returned object is destroyed. Implemented on the TCP socket beneath
  // (plain or TLS alike) by WatchForClose (upstream_pool.h).
  virtual std::unique_ptr<ClientWatch> Watch(std::function<void()> on_close) = 0;
};

// What one request did, for the access log and the metrics.
struct RequestLog {
  std::string request_id, method, path, backend, key_name, cache;
  int status = 0;
  int attempts = 0;
  int failovers = 0;
  bool stream = false;
  int64_t prompt_tokens = -1, completion_tokens = -1;
};

// A complete response to send.
struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  Headers headers;
};
// An error reply with the OpenAI envelope (401 adds WWW-Authenticate).
Reply ErrorReply(int status, const std::string& message, const std::string& type,
                 const std::string& code = "", Headers headers = {});

// Outcome of proxying: what was sent to the client.
struct ProxyResult {
  int status = 0;
  bool keep_alive = true;
  std::string body;  // stream: the whole SSE text (for the cache)
  std::string content_type;
};

class Gateway {
 public:
  explicit Gateway(const cluster::ClusterConfig& config);
  Status Run();

 private:
  // server.cc
  Task<void> Accept(tcp::acceptor& acceptor);
  template <typename Stream>
  Task<void> Session(Stream stream, bool tls);
  Task<bool> Handle(ClientStream& s, Request& req);
  // (GCC 12 miscompiles string literals converted inside co_await expressions: replies are
  // built into locals first.)
  Task<bool> Send(ClientStream& s, const Request& req, Reply r, RequestLog* log);
  // Sends an error reply and writes its access-log line.
  Task<bool> SendError(ClientStream& s, const Request& req, Reply r, RequestLog* log);
  Task<void> ProbeLoop(int backend);
  Task<void> Probe(int backend);
  std::string RenderMetrics();
  nlohmann::json ClusterJson();
  void AccessLog(const RequestLog& log, double ms);
  void CountRequest(const std::string& path, int status);

  // proxy.cc
  // Picks a backend for an attempt (waiting up to the unavailable timeout when none is
  // eligible). -1: none.
  Task<int> PickBackend(const std::string& affinity, std::vector<int>* tried, int attempt);
  Task<ProxyResult> ProxyPlain(ClientStream& s, const Request& req, const std::string& path,
                               const std::string& upstream_path, const nlohmann::json* body,
                               const std::string& affinity, const Headers& extra,
                               const std::string& cache_key, RequestLog* log);
  Task<ProxyResult> ProxyStream(ClientStream& s, const Request& req, const std::string& path,
                                const nlohmann::json& body, const std::string& affinity,
                                const Headers& extra, const std::string& cache_key,
                                RequestLog* log);
  // Stores a complete 2xx answer, before the client sees its end (so that a client's next
  // request already hits).
  // With Redis, both calls run on cache_io_ (the event-loop threads never block on Redis;
  // its own timeouts still bound them).
  Task<void> CachePut(const std::string& key, int status, const std::string& content_type,
                      const std::string& body);
  Task<std::optional<CachedResponse>> CacheGet(const std::string& key);
  std::string AffinityKey(const Request& req, const nlohmann::json* body) const;

  cluster::ClusterConfig config_;
  net::io_context ioc_;
  std::unique_ptr<ssl::context> tls_;
  std::unique_ptr<BackendPool> pool_;
  std::unique_ptr<UpstreamPool> upstream_;  // keep-alive connections to the backends
  std::unique_ptr<Admission> admission_;
  std::unique_ptr<ResponseCache> cache_;
  std::unique_ptr<net::thread_pool> cache_io_;  // Redis calls (null: in-memory cache)
  RateLimiter limiter_;
  std::mutex key_mu_;
  std::map<std::string, int> key_active_;  // per API key requests in flight
  std::mutex metrics_mu_;
  std::map<std::pair<std::string, int>, uint64_t> http_counts_;  // (path, status) -> n
  std::atomic<uint64_t> retries_{0}, failovers_{0}, rejected_{0};
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int> connections_{0};
  int64_t started_ = 0;
};

// The OpenAI error envelope {"error": {"message", "type", "code"}}.
std::string ErrorEnvelope(const std::string& message, const std::string& type,
                          const std::string& code);
// Serializes JSON for the wire (invalid UTF-8 replaced, never throws).
std::string DumpJson(const nlohmann::json& j);

}  // namespace strata::gateway
