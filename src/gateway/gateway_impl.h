// Internals of the gateway shared by server.cc (startup, TLS, replies, health probes),
// handle.cc (a request's steps), endpoints.cc (local endpoints), metrics.cc (metrics, access
// log) and proxy.cc (upstream exchanges, streaming, retries, failover). The transport is the
// HTTP core of src/http. Not a public interface.
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
#include "gateway/live_stats.h"
#include "gateway/ratelimit.h"
#include "gateway/upstream_pool.h"
#include "http/resources.h"
#include "http/server.h"

namespace strata::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
template <typename T>
using Task = asio::awaitable<T>;
using Request = http::request<http::string_body>;
using Headers = ::strata::http::Headers;

// The client side of a connection, plain or TLS, behind one interface (src/http).
using ClientStream = ::strata::http::Stream;

// What one request did, for the access log and the metrics.
struct RequestLog {
  std::string request_id, method, path, backend, key_name, cache;
  int status = 0;
  int attempts = 0;
  int failovers = 0;
  bool stream = false;
  int64_t prompt_tokens = -1, completion_tokens = -1;
  double ttft_s = -1;  // streams: first bytes from the node (of the first attempt that sent any)
};

// A complete response to send.
using Reply = ::strata::http::Reply;
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

// One request on its way through Gateway::Handle's steps (handle.cc).
struct Call {
  explicit Call(const Request& r) : req(r) {}
  const Request& req;
  RequestLog log;
  Clock::time_point t0 = Clock::now();
  bool is_gen = false, is_models = false, stream = false;
  const cluster::ApiKeySpec* key = nullptr;
  nlohmann::json body;
  KeyLimits limits;
  int64_t estimate = 0;  // tokens charged up front
  std::string cache_key;
  // Slots held until the request ends.
  std::shared_ptr<void> key_slot, admission_slot;
};

class Gateway : public ::strata::http::Handler {
 public:
  explicit Gateway(const cluster::ClusterConfig& config);
  Status Run();

  // ::strata::http::Handler (handle.cc).
  std::optional<Reply> OnHeaders(const Request& req, const ClientStream& s) override;
  Task<bool> OnRequest(ClientStream& s, Request& req) override;
  Reply OnTransportError(int status, const std::string& message, const Request* req) override;

 private:
  // server.cc
  Status LoadTls();  // (re)loads gateway.tls_cert / tls_key into the listener
  void ReloadOnHangup();
  // (GCC 12 miscompiles string literals converted inside co_await expressions: replies are
  // built into locals first.)
  Task<bool> Send(ClientStream& s, const Request& req, Reply r, RequestLog* log);
  // Sends an error reply and writes its access-log line.
  Task<bool> SendError(ClientStream& s, const Request& req, Reply r, RequestLog* log);
  Task<void> ProbeLoop(int backend);
  Task<void> Probe(int backend);
  // Dashboard events (and a log line) for a probe's changes of health / memory pressure.
  void NoteHealthChange(int backend, HealthState before, const std::string& why);
  void NoteResources(int backend, NodeResources r);

  // handle.cc: the steps of a request. Each check returns the error reply that ends it.
  Task<bool> Handle(ClientStream& s, Request& req);
  void Begin(Call& c);
  std::optional<Reply> Route(Call& c) const;
  std::optional<Reply> Authenticate(Call& c) const;
  std::optional<Reply> Parse(Call& c) const;
  std::optional<Reply> Limit(Call& c);
  Task<std::optional<Reply>> Admit(Call& c);
  Task<std::optional<Reply>> CacheLookup(Call& c);
  Task<bool> Proxy(ClientStream& s, Call& c);
  bool Finish(Call& c, bool keep);  // access log and counters of a served request

  // endpoints.cc: /health, /ready, /metrics, /api/cluster, the dashboard (/, /dashboard/*)
  // and its state (/api/dashboard).
  static bool IsLocal(const std::string& path);
  static bool IsAdminPath(std::string_view path);
  Task<bool> Local(ClientStream& s, Call& c);
  bool AdminAllowed(const Request& req) const;
  Reply ServeAsset(const std::string& path) const;
  nlohmann::json DashboardJson();

  // dashboard ticks (metrics.cc): the live series, one point a second.
  void StartLiveTicks();
  void LiveTick();
  void RecordLive(const Call& c);  // a finished generation request
  void LiveEventNow(const std::string& kind, const std::string& backend, const std::string& message,
                    const std::string& request_id);

  // metrics.cc
  std::string RenderMetrics();
  nlohmann::json ClusterJson();
  std::string FailoverMetrics() const;  // strata_gateway_failovers_by_cause_total (proxy.cc)
  void AccessLog(const RequestLog& log, double ms);
  void CountRequest(const std::string& path, int status);

  // proxy.cc
  // Picks a backend for an attempt (0: the first; waiting up to the unavailable timeout when
  // none is eligible) and records it: a retry (after last_error) in the counters and the live
  // events, the attempt and backend in the log. -1: none.
  Task<int> PickBackend(const std::string& affinity, std::vector<int>* tried, int attempt,
                        const std::string& last_error, RequestLog* log);
  Task<int> PickEligible(const std::string& affinity, std::vector<int>* tried, int attempt);
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
  asio::io_context ioc_;
  std::unique_ptr<BackendPool> pool_;
  std::unique_ptr<UpstreamPool> upstream_;  // keep-alive connections to the backends
  std::unique_ptr<Admission> admission_;
  std::unique_ptr<ResponseCache> cache_;
  std::unique_ptr<asio::thread_pool> cache_io_;  // Redis calls (null: in-memory cache)
  RateLimiter limiter_;
  std::mutex key_mu_;
  std::map<std::string, int> key_active_;  // per API key requests in flight
  std::mutex metrics_mu_;
  std::map<std::pair<std::string, int>, uint64_t> http_counts_;  // (path, status) -> n
  std::atomic<uint64_t> retries_{0}, failovers_{0}, rejected_{0};
  // failovers_ by cause (proxy.cc, FailoverMetrics).
  std::atomic<uint64_t> failovers_stream_broken_{0}, failovers_error_event_{0};
  std::atomic<uint64_t> next_id_{1};
  int64_t started_ = 0;
  std::string admin_key_;  // "": /metrics and /api/cluster are open
  std::unique_ptr<::strata::http::Server> http_;
  std::unique_ptr<asio::signal_set> hangup_;
  LiveStats live_;
  // Before ioc_ in destruction (their timers).
  std::unique_ptr<::strata::http::ResourceMonitor> resources_;
  std::unique_ptr<asio::steady_timer> live_timer_;
};

// The OpenAI error envelope {"error": {"message", "type", "code"}}.
std::string ErrorEnvelope(const std::string& message, const std::string& type,
                          const std::string& code);
// Serializes JSON for the wire (invalid UTF-8 replaced, never throws).
std::string DumpJson(const nlohmann::json& j);

}  // namespace strata::gateway
