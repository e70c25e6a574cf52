// Transport and local endpoints of the gateway: listener (plain or TLS), per-connection
// coroutine, request dispatch with authentication, limits and the cache, /health, /ready,
// /metrics, /api/cluster, active health probes and the access log.
#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <thread>

#include <boost/beast/ssl.hpp>

#include "gateway/gateway.h"
#include "gateway/gateway_impl.h"

namespace strata::gateway {

using nlohmann::json;

namespace {

template <typename Stream>
class ClientStreamImpl : public ClientStream {
 public:
  explicit ClientStreamImpl(Stream& s) : s_(s) {}
  Task<bool> Write(http::response<http::string_body>& res) override {
    beast::get_lowest_layer(s_).expires_after(std::chrono::seconds(60));
    beast::error_code ec;
    co_await http::async_write(s_, res, net::redirect_error(net::use_awaitable, ec));
    co_return !ec;
  }
  Task<bool> WriteHeader(http::response_serializer<http::empty_body>& sr) override {
    beast::get_lowest_layer(s_).expires_after(std::chrono::seconds(60));
    beast::error_code ec;
    co_await http::async_write_header(s_, sr, net::redirect_error(net::use_awaitable, ec));
    co_return !ec;
  }
  Task<bool> WriteChunk(std::string_view data) override {
    beast::get_lowest_layer(s_).expires_after(std::chrono::seconds(60));
    beast::error_code ec;
    co_await net::async_write(s_, http::make_chunk(net::buffer(data.data(), data.size())),
                              net::redirect_error(net::use_awaitable, ec));
    co_return !ec;
  }
  Task<bool> WriteLastChunk() override {
    beast::get_lowest_layer(s_).expires_after(std::chrono::seconds(60));
    beast::error_code ec;
    co_await net::async_write(s_, http::make_chunk_last(),
                              net::redirect_error(net::use_awaitable, ec));
    co_return !ec;
  }
  std::unique_ptr<ClientWatch> Watch(std::function<void()> on_close) override {
    return WatchForClose(beast::get_lowest_layer(s_).socket(), std::move(on_close));
  }

 private:
  Stream& s_;
};

std::string_view PathOf(std::string_view target) {
  const size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::string HeaderValue(const Request& req, std::string_view name) {
  auto it = req.find(beast::string_view(name.data(), name.size()));
  if (it == req.end()) return {};
  return std::string(it->value());
}

bool KeyEquals(std::string_view a, std::string_view b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < b.size(); ++i)
    diff |= static_cast<unsigned>(static_cast<unsigned char>(b[i]) ^
                                  static_cast<unsigned char>(i < a.size() ? a[i] : 0));
  return diff == 0;
}

// A request id is passed through when it is short and printable, else generated.
bool ValidRequestId(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

}  // namespace

std::string DumpJson(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string ErrorEnvelope(const std::string& message, const std::string& type,
                          const std::string& code) {
  json e = {{"message", message}, {"type", type}};
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return DumpJson(json{{"error", e}});
}

Gateway::Gateway(const cluster::ClusterConfig& config) : config_(config) {
  started_ = static_cast<int64_t>(std::time(nullptr));
  std::vector<BackendInfo> infos;
  for (const std::string& name : config_.gateway.backends) {
    const cluster::NodeSpec* n = config_.FindNode(name);
    if (!n) continue;  // the parser guarantees it exists
    BackendInfo b;
    b.name = n->name;
    b.host = n->host;
    b.port = n->port;
    b.mode = config_.ModeOf(*n);
    b.layers = n->layers_auto ? "auto" : StrFormat("%d-%d", n->layer_begin, n->layer_end);
    infos.push_back(std::move(b));
  }
  const auto& g = config_.gateway;
  pool_ = std::make_unique<BackendPool>(std::move(infos), g.routing, g.health, g.circuit);
  upstream_ = std::make_unique<UpstreamPool>(
      pool_->size(), UpstreamPool::Options{g.upstream.max_idle_per_backend,
                                           g.upstream.idle_timeout_ms});
  admission_ = std::make_unique<Admission>(g.admission.max_concurrent, g.admission.max_queue,
                                           std::chrono::milliseconds(g.admission.queue_timeout_ms));
}

Status Gateway::Run() {
  const auto& g = config_.gateway;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (g.cache.enabled) {
    CacheOptions co;
    co.enabled = true;
    co.max_entries = static_cast<size_t>(g.cache.max_entries);
    co.max_bytes = static_cast<size_t>(g.cache.max_bytes);
    co.ttl_s = g.cache.ttl_s;
    co.redis_url = g.cache.redis_url;
    co.redis_password = g.cache.redis_password;
    co.hmac_key = g.cache.hmac_key;
    co.redis_prefix = g.cache.redis_prefix;
    co.redis_timeout_ms = g.cache.redis_timeout_ms;
    co.redis_retry_ms = g.cache.redis_retry_ms;
    auto c = MakeResponseCache(co);
    if (!c.ok()) return c.status().With("gateway.cache");
    cache_ = std::move(c).value();
    if (cache_->backend() == "redis") cache_io_ = std::make_unique<net::thread_pool>(2);
  }
  if (!g.tls_cert.empty()) {
    tls_ = std::make_unique<ssl::context>(ssl::context::tls_server);
    tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                      ssl::context::no_tlsv1_1);
    beast::error_code ec;
    tls_->use_certificate_chain_file(g.tls_cert, ec);
    if (ec) return Errorf("gateway.tls_cert %s: %s", g.tls_cert.c_str(), ec.message().c_str());
    tls_->use_private_key_file(g.tls_key, ssl::context::pem, ec);
    if (ec) return Errorf("gateway.tls_key %s: %s", g.tls_key.c_str(), ec.message().c_str());
  }

  beast::error_code ec;
  const auto addr = net::ip::make_address(g.listen_host, ec);
  if (ec) return Errorf("gateway.listen: invalid host '%s'", g.listen_host.c_str());
  tcp::acceptor acceptor(ioc_);
  const tcp::endpoint ep(addr, static_cast<unsigned short>(g.listen_port));
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return Errorf("cannot listen on %s:%d: %s", g.listen_host.c_str(), g.listen_port,
                  ec.message().c_str());
  std::fprintf(stderr, "strata gateway: listening on %s://%s:%u (%zu backends, policy %s)\n",
               tls_ ? "https" : "http", g.listen_host.c_str(), acceptor.local_endpoint().port(),
               pool_->size(), cluster::RoutingPolicyName(g.routing.policy));

  net::signal_set signals(ioc_, SIGINT, SIGTERM);
  signals.async_wait([this](const beast::error_code&, int) { ioc_.stop(); });
  std::signal(SIGPIPE, SIG_IGN);

  net::co_spawn(ioc_, Accept(acceptor), net::detached);
  for (size_t i = 0; i < pool_->size(); ++i)
    net::co_spawn(net::make_strand(ioc_), ProbeLoop(static_cast<int>(i)), net::detached);

  std::vector<std::thread> io;
  for (int i = 1; i < std::max(1, g.threads); ++i) io.emplace_back([this] { ioc_.run(); });
  ioc_.run();
  for (auto& t : io) t.join();
  std::fprintf(stderr, "strata gateway: stopped\n");
  return Status::Ok();
}

Task<void> Gateway::Accept(tcp::acceptor& acceptor) {
  for (;;) {
    tcp::socket socket(net::make_strand(ioc_));
    beast::error_code ec;
    co_await acceptor.async_accept(socket, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (!acceptor.is_open()) co_return;
      net::steady_timer t(co_await net::this_coro::executor, std::chrono::milliseconds(50));
      co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto ex = socket.get_executor();
    if (tls_) {
      net::co_spawn(ex,
                    Session(beast::ssl_stream<beast::tcp_stream>(std::move(socket), *tls_), true),
                    net::detached);
    } else {
      net::co_spawn(ex, Session(beast::tcp_stream(std::move(socket)), false), net::detached);
    }
  }
}

template <typename Stream>
Task<void> Gateway::Session(Stream stream, bool tls) {
  ++connections_;
  beast::flat_buffer buf;
  ClientStreamImpl<Stream> client(stream);
  try {
    beast::error_code ec;
    if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
      co_await stream.async_handshake(ssl::stream_base::server,
                                      net::redirect_error(net::use_awaitable, ec));
    }
    while (!ec) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(static_cast<uint64_t>(config_.gateway.admission.max_body_bytes));
      parser.header_limit(64 * 1024);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
      co_await http::async_read(stream, buf, parser, net::redirect_error(net::use_awaitable, ec));
      if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == net::error::eof || ec == net::error::connection_reset ||
          ec == net::error::operation_aborted || ec == ssl::error::stream_truncated)
        break;
      if (ec) {
        RequestLog log;
        log.request_id = StrFormat("gw-%llx", static_cast<unsigned long long>(next_id_++));
        int status = 400;
        std::string msg = "malformed HTTP request: " + ec.message();
        if (ec == http::error::body_limit) {
          status = 413;
          msg = StrFormat("request body exceeds the limit of %lld bytes",
                          static_cast<long long>(config_.gateway.admission.max_body_bytes));
        } else if (ec == http::error::header_limit) {
          status = 431;
          msg = "request headers too large";
        }
        Request dummy{http::verb::post, "/", 11};
        dummy.keep_alive(false);
        log.path = std::string(PathOf(std::string_view(parser.get().target().data(),
                                                       parser.get().target().size())));
        log.method = std::string(parser.get().method_string());
        Reply e_ = ErrorReply(status, msg, "invalid_request_error");
        co_await SendError(client, dummy, std::move(e_), &log);
        // Let the client read the answer, then drop what it still sends for a moment.
        beast::error_code ec2;
        beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_send, ec2);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
        size_t drained = 0;
        while (drained < (64u << 20)) {
          std::array<char, 65536> sink;
          const size_t n = co_await beast::get_lowest_layer(stream).async_read_some(
              net::buffer(sink), net::redirect_error(net::use_awaitable, ec2));
          if (ec2) break;
          drained += n;
        }
        break;
      }
      Request req = parser.release();
      if (!co_await Handle(client, req)) break;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "strata gateway: connection ended by an exception: %s\n", e.what());
  }
  beast::error_code ec;
  beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ec);
  beast::get_lowest_layer(stream).socket().close(ec);
  --connections_;
}

Reply ErrorReply(int status, const std::string& message, const std::string& type,
                 const std::string& code, Headers headers) {
  Reply r;
  r.status = status;
  r.body = ErrorEnvelope(message, type, code);
  r.headers = std::move(headers);
  if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

Task<bool> Gateway::Send(ClientStream& s, const Request& req, Reply r, RequestLog* log) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
  res.set(http::field::server, "strata-gateway");
  res.set(http::field::content_type, r.content_type);
  if (log && !log->request_id.empty()) res.set("X-Request-Id", log->request_id);
  for (const auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(r.body);
  res.prepare_payload();
  if (log) log->status = r.status;
  const bool ok = co_await s.Write(res);
  co_return ok && req.keep_alive();
}

Task<bool> Gateway::SendError(ClientStream& s, const Request& req, Reply r, RequestLog* log) {
  if (log) {
    log->status = r.status;
    if (log->path.empty())
      log->path = std::string(PathOf(std::string_view(req.target().data(), req.target().size())));
    if (log->method.empty()) log->method = std::string(req.method_string());
    AccessLog(*log, 0);
    CountRequest(log->path, r.status);
  }
  co_return co_await Send(s, req, std::move(r), log);
}

std::string Gateway::AffinityKey(const Request& req, const json* body) const {
  const auto& r = config_.gateway.routing;
  if (!r.affinity_header.empty()) {
    std::string h = HeaderValue(req, r.affinity_header);
    if (!h.empty()) return "s:" + h;
  }
  if (!body) return {};
  if (!r.affinity_field.empty() && body->contains(r.affinity_field) &&
      (*body)[r.affinity_field].is_string())
    return "s:" + (*body)[r.affinity_field].get<std::string>();
  std::string text;
  if (body->contains("prompt") && (*body)["prompt"].is_string()) {
    text = (*body)["prompt"].get<std::string>();
  } else if (body->contains("messages") && (*body)["messages"].is_array()) {
    for (const auto& m : (*body)["messages"]) {
      if (m.is_object() && m.contains("content") && m["content"].is_string())
        text += m["content"].get<std::string>() + "\n";
      if (text.size() >= static_cast<size_t>(r.affinity_prefix_chars)) break;
    }
  }
  if (text.empty()) return {};
  return "p:" + text.substr(0, static_cast<size_t>(r.affinity_prefix_chars));
}

Task<bool> Gateway::Handle(ClientStream& s, Request& req) {
  const auto t0 = Clock::now();
  RequestLog log;
  log.method = std::string(req.method_string());
  log.path = std::string(PathOf(std::string_view(req.target().data(), req.target().size())));
  const std::string given_id = HeaderValue(req, "X-Request-Id");
  log.request_id = ValidRequestId(given_id)
                       ? given_id
                       : StrFormat("gw-%llx-%llx", static_cast<unsigned long long>(started_),
                                   static_cast<unsigned long long>(next_id_++));
  const std::string& path = log.path;
  const bool get = req.method() == http::verb::get;
  const bool post = req.method() == http::verb::post;
  auto finish = [&](bool keep) {
    AccessLog(log, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    CountRequest(path, log.status);
    return keep;
  };

  // Local endpoints.
  if (path == "/health" || path == "/ready" || path == "/metrics" || path == "/api/cluster") {
    if (!get) {
      Reply e_ = ErrorReply(405, "use GET", "invalid_request_error", "");
      co_return co_await SendError(s, req, std::move(e_), &log);
    }
    bool keep = false;
    if (path == "/health") {
      Reply r;
      r.body = DumpJson(json{{"status", "ok"}});
      keep = co_await Send(s, req, std::move(r), &log);
    } else if (path == "/ready") {
      const int n = pool_->HealthyCount();
      Reply r;
      r.status = n > 0 ? 200 : 503;
      r.body = DumpJson(json{{"ready", n > 0}, {"healthy_backends", n}, {"backends", pool_->size()}});
      keep = co_await Send(s, req, std::move(r), &log);
    } else if (path == "/metrics") {
      Reply r;
      r.body = RenderMetrics();
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      keep = co_await Send(s, req, std::move(r), &log);
    } else {
      Reply r;
      r.body = DumpJson(ClusterJson());
      keep = co_await Send(s, req, std::move(r), &log);
    }
    co_return finish(keep);
  }
  const bool is_models = path == "/v1/models";
  const bool is_gen = path == "/api/inference" || path == "/v1/completions" ||
                      path == "/v1/chat/completions";
  if (!is_models && !is_gen)
    {
      Reply e_ = ErrorReply(404, "not found: " + path, "not_found_error", "");
      co_return co_await SendError(s, req, std::move(e_), &log);
    }
  if ((is_models && !get) || (is_gen && !post))
    {
      Reply e_ = ErrorReply(405, is_gen ? "use POST" : "use GET",
                                 "invalid_request_error", "");
      co_return co_await SendError(s, req, std::move(e_), &log);
    }

  // Authentication.
  const cluster::ApiKeySpec* key = nullptr;
  if (!config_.gateway.api_keys.empty()) {
    const std::string auth = HeaderValue(req, "Authorization");
    const std::string token = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : std::string();
    for (const auto& k : config_.gateway.api_keys)
      if (!token.empty() && KeyEquals(token, k.key)) key = &k;
    if (!key)
      {
      Reply e_ = ErrorReply(401, "invalid or missing API key",
                                   "authentication_error", "invalid_api_key");
      co_return co_await SendError(s, req, std::move(e_), &log);
    }
    log.key_name = key->name;
  }

  // The body.
  json body;
  if (is_gen) {
    body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded())
      {
      Reply e_ = ErrorReply(400, "the request body is not valid JSON",
                                   "invalid_request_error", "");
      co_return co_await SendError(s, req, std::move(e_), &log);
    }
    if (!body.is_object())
      {
      Reply e_ = ErrorReply(400, "the request body must be a JSON object",
                                   "invalid_request_error", "");
      co_return co_await SendError(s, req, std::move(e_), &log);
    }
    if (path == "/api/inference" &&
        (!body.contains("prompt") || !body["prompt"].is_string() ||
         body["prompt"].get<std::string>().empty()))
      {
      Reply e_ = ErrorReply(400, "No prompt provided", "invalid_request_error", "");
      co_return co_await SendError(s, req, std::move(e_), &log);
    }
  }
  const bool stream = is_gen && path != "/api/inference" && body.value("stream", false) == true;
  log.stream = stream;

  // Rate limits and the per-key concurrency limit.
  int64_t estimate = 0;
  KeyLimits limits;
  if (key) {
    limits.requests_per_minute = key->requests_per_minute;
    limits.tokens_per_minute = key->tokens_per_minute;
    if (is_gen) {
      int64_t max_tokens = 256;
      for (const char* f : {"max_tokens", "max_completion_tokens", "max_length"})
        if (body.contains(f) && body[f].is_number_integer()) max_tokens = body[f].get<int64_t>();
      estimate = static_cast<int64_t>(req.body().size() / 4) + std::max<int64_t>(0, max_tokens);
    }
    const RateDecision d = limiter_.Acquire(key->key, limits, estimate);
    if (!d.allowed) {
      ++rejected_;
      const int after = std::max(1, static_cast<int>(std::ceil(d.retry_after_s)));
      {
      Reply e_ = ErrorReply(429, "rate limit exceeded: " + d.reason,
                                   "rate_limit_error", "rate_limit_exceeded", {{"Retry-After", std::to_string(after)}});
      co_return co_await SendError(s, req, std::move(e_), &log);
    }
    }
  }
  bool key_slot = false;
  if (key && key->max_concurrent > 0) {
    std::lock_guard<std::mutex> lock(key_mu_);
    int& active = key_active_[key->key];
    if (active < key->max_concurrent) {
      ++active;
      key_slot = true;
    }
  }
  if (key && key->max_concurrent > 0 && !key_slot) {
    ++rejected_;
    limiter_.Settle(key->key, limits, estimate, 0);
    {
      Reply e_ = ErrorReply(429, "too many concurrent requests for this API key",
                                 "rate_limit_error", "concurrency_limit_exceeded", {{"Retry-After", "1"}});
      co_return co_await SendError(s, req, std::move(e_), &log);
    }
  }
  struct KeySlot {
    Gateway* g;
    const cluster::ApiKeySpec* k;
    bool held;
    ~KeySlot() {
      if (!held) return;
      std::lock_guard<std::mutex> lock(g->key_mu_);
      --g->key_active_[k->key];
    }
  } key_guard{this, key, key_slot};

  // Global admission.
  const AdmitResult admit = co_await admission_->Acquire();
  if (admit != AdmitResult::kAdmitted) {
    ++rejected_;
    if (key) limiter_.Settle(key->key, limits, estimate, 0);
    Reply e_ = ErrorReply(429,
                          admit == AdmitResult::kQueueFull
                              ? "the gateway is at capacity (queue full)"
                              : "the gateway is at capacity (timed out in the queue)",
                          "rate_limit_error", "overloaded", {{"Retry-After", "1"}});
    co_return co_await SendError(s, req, std::move(e_), &log);
  }
  struct Slot {
    Admission* a;
    ~Slot() { a->Release(); }
  } slot{admission_.get()};

  // The response cache.
  std::string cache_key;
  if (cache_ && is_gen && IsDeterministic(body, 0.8)) {
    // Per tenant unless the key shares; per served model (configured path and name).
    cache_key = CacheKey(path, body, key && !key->shared_cache ? key->key : std::string(),
                         config_.model.path + "|" + config_.model.name);
    if (auto hit = co_await CacheGet(cache_key)) {
      log.cache = "HIT";
      Reply r;
      r.status = hit->status;
      r.body = std::move(hit->body);
      r.content_type = hit->content_type;
      r.headers.emplace_back("X-Cache", "HIT");
      const bool keep = co_await Send(s, req, std::move(r), &log);
      if (key) limiter_.Settle(key->key, limits, estimate, 0);
      co_return finish(keep);
    }
    log.cache = "MISS";
  }

  Headers extra;
  if (!cache_key.empty()) extra.emplace_back("X-Cache", "MISS");
  const std::string affinity = AffinityKey(req, is_gen ? &body : nullptr);
  ProxyResult r;
  if (stream) {
    r = co_await ProxyStream(s, req, path, body, affinity, extra, cache_key, &log);
  } else {
    const std::string up = path == "/api/inference" ? "/inference" : path;
    r = co_await ProxyPlain(s, req, path, up, is_gen ? &body : nullptr, affinity, extra, cache_key,
                            &log);
  }
  if (key) {
    int64_t used = estimate;
    if (log.prompt_tokens >= 0 || log.completion_tokens >= 0)
      used = std::max<int64_t>(0, log.prompt_tokens) + std::max<int64_t>(0, log.completion_tokens);
    limiter_.Settle(key->key, limits, estimate, used);
  }
  co_return finish(r.keep_alive);
}

namespace {
// Coroutines run on the cache's thread pool (free functions with by-value parameters: GCC 12
// mishandles lambda coroutines with captures).
Task<void> PutOn(ResponseCache* cache, std::string key, CachedResponse c) {
  cache->Put(key, c);
  co_return;
}
Task<std::optional<CachedResponse>> GetOn(ResponseCache* cache, std::string key) {
  co_return cache->Get(key);
}
}  // namespace

Task<void> Gateway::CachePut(const std::string& key, int status, const std::string& content_type,
                             const std::string& body) {
  if (!cache_ || key.empty() || status < 200 || status >= 300) co_return;
  if (!CacheableContentType(content_type)) co_return;
  CachedResponse c;
  c.status = status;
  c.content_type = content_type;
  c.body = body;
  if (!cache_io_) {
    cache_->Put(key, c);
    co_return;
  }
  co_await net::co_spawn(cache_io_->get_executor(), PutOn(cache_.get(), key, std::move(c)),
                         net::use_awaitable);
}

Task<std::optional<CachedResponse>> Gateway::CacheGet(const std::string& key) {
  if (!cache_io_) co_return cache_->Get(key);
  std::optional<CachedResponse> r = co_await net::co_spawn(
      cache_io_->get_executor(), GetOn(cache_.get(), key), net::use_awaitable);
  co_return r;
}

// ---- observability ----

void Gateway::CountRequest(const std::string& path, int status) {
  std::lock_guard<std::mutex> lock(metrics_mu_);
  const bool known = path == "/api/inference" || path == "/v1/completions" ||
                     path == "/v1/chat/completions" || path == "/v1/models" || path == "/health" ||
                     path == "/ready" || path == "/metrics" || path == "/api/cluster";
  ++http_counts_[{known ? path : "other", status}];
}

void Gateway::AccessLog(const RequestLog& log, double ms) {
  if (!config_.gateway.access_log) return;
  json j = {{"ts", static_cast<int64_t>(std::time(nullptr))},
            {"request_id", log.request_id},
            {"method", log.method},
            {"path", log.path},
            {"status", log.status},
            {"latency_ms", std::round(ms * 1000) / 1000},
            {"stream", log.stream}};
  if (!log.backend.empty()) j["backend"] = log.backend;
  if (log.attempts) j["attempts"] = log.attempts;
  if (log.failovers) j["failovers"] = log.failovers;
  if (!log.key_name.empty()) j["key"] = log.key_name;
  if (!log.cache.empty()) j["cache"] = log.cache;
  if (log.completion_tokens >= 0) j["completion_tokens"] = log.completion_tokens;
  const std::string line = DumpJson(j) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

json Gateway::ClusterJson() {
  json backends = json::array();
  for (const BackendView& v : pool_->Snapshot()) {
    backends.push_back({{"name", v.info.name},
                        {"url", StrFormat("http://%s:%d", v.info.host.c_str(), v.info.port)},
                        {"state", HealthName(v.health)},
                        {"circuit", CircuitName(v.circuit)},
                        {"mode", v.info.mode},
                        {"layers", v.info.layers},
                        {"outstanding", v.outstanding},
                        {"load", {{"slots_busy", v.slots_busy},
                                  {"slots_total", v.slots_total},
                                  {"waiting", v.waiting}}},
                        {"latency_ms", std::round(v.latency_ewma_ms * 1000) / 1000},
                        {"probe_ms", std::round(v.probe_ms * 1000) / 1000},
                        {"requests", v.requests},
                        {"errors", v.errors},
                        {"last_error", v.last_error}});
  }
  return {{"policy", cluster::RoutingPolicyName(config_.gateway.routing.policy)},
          {"healthy_backends", pool_->HealthyCount()},
          {"backends", backends}};
}

std::string Gateway::RenderMetrics() {
  std::string o;
  o += "# HELP strata_gateway_http_requests_total Requests answered, by path and status.\n";
  o += "# TYPE strata_gateway_http_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lock(metrics_mu_);
    for (const auto& [k, n] : http_counts_)
      o += StrFormat("strata_gateway_http_requests_total{path=\"%s\",code=\"%d\"} %llu\n",
                     PromEscape(k.first).c_str(), k.second, static_cast<unsigned long long>(n));
  }
  const auto views = pool_->Snapshot();
  auto per = [&](const char* name, const char* type, const char* help, auto value) {
    o += StrFormat("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (const BackendView& v : views)
      o += StrFormat("%s{backend=\"%s\"} %s\n", name, PromEscape(v.info.name).c_str(),
                     value(v).c_str());
  };
  per("strata_gateway_backend_requests_total", "counter", "Requests sent to the backend.",
      [](const BackendView& v) { return std::to_string(v.requests); });
  per("strata_gateway_backend_errors_total", "counter", "Failed requests of the backend.",
      [](const BackendView& v) { return std::to_string(v.errors); });
  per("strata_gateway_backend_outstanding", "gauge", "Requests in flight at the backend.",
      [](const BackendView& v) { return std::to_string(v.outstanding); });
  per("strata_gateway_backend_healthy", "gauge", "1 when the backend takes traffic.",
      [](const BackendView& v) {
        return std::string(v.health == HealthState::kHealthy && v.circuit != CircuitState::kOpen
                               ? "1"
                               : "0");
      });
  o += "# HELP strata_gateway_backend_latency_seconds Request latency per backend.\n"
       "# TYPE strata_gateway_backend_latency_seconds histogram\n";
  for (const BackendView& v : views)
    v.latency.Render("strata_gateway_backend_latency_seconds",
                     "backend=\"" + PromEscape(v.info.name) + "\"", &o);
  o += "# HELP strata_gateway_backend_ttft_seconds Time to the first streamed byte per backend.\n"
       "# TYPE strata_gateway_backend_ttft_seconds histogram\n";
  for (const BackendView& v : views)
    v.ttft.Render("strata_gateway_backend_ttft_seconds",
                  "backend=\"" + PromEscape(v.info.name) + "\"", &o);
  o += StrFormat(
      "# HELP strata_gateway_healthy_backends Backends taking traffic.\n"
      "# TYPE strata_gateway_healthy_backends gauge\nstrata_gateway_healthy_backends %d\n",
      pool_->HealthyCount());
  o += StrFormat(
      "# HELP strata_gateway_queue_depth Requests waiting for admission.\n"
      "# TYPE strata_gateway_queue_depth gauge\nstrata_gateway_queue_depth %d\n"
      "# HELP strata_gateway_requests_active Requests admitted and in flight.\n"
      "# TYPE strata_gateway_requests_active gauge\nstrata_gateway_requests_active %d\n"
      "# HELP strata_gateway_connections Open client connections.\n"
      "# TYPE strata_gateway_connections gauge\nstrata_gateway_connections %d\n",
      admission_->queued(), admission_->active(), connections_.load());
  o += StrFormat(
      "# HELP strata_gateway_retries_total Requests retried on another backend.\n"
      "# TYPE strata_gateway_retries_total counter\nstrata_gateway_retries_total %llu\n"
      "# HELP strata_gateway_failovers_total Streams continued on another backend.\n"
      "# TYPE strata_gateway_failovers_total counter\nstrata_gateway_failovers_total %llu\n"
      "# HELP strata_gateway_rejected_total Requests refused by limits (429).\n"
      "# TYPE strata_gateway_rejected_total counter\nstrata_gateway_rejected_total %llu\n",
      static_cast<unsigned long long>(retries_.load()),
      static_cast<unsigned long long>(failovers_.load()),
      static_cast<unsigned long long>(rejected_.load()));
  o += StrFormat(
      "# HELP strata_gateway_upstream_idle_connections Idle keep-alive connections to backends.\n"
      "# TYPE strata_gateway_upstream_idle_connections gauge\n"
      "strata_gateway_upstream_idle_connections %zu\n"
      "# HELP strata_gateway_upstream_reused_total Requests sent on a pooled connection.\n"
      "# TYPE strata_gateway_upstream_reused_total counter\n"
      "strata_gateway_upstream_reused_total %llu\n",
      upstream_->idle_total(), static_cast<unsigned long long>(upstream_->reused()));
  if (cache_) {
    const CacheStats st = cache_->stats();
    const double total = static_cast<double>(st.hits + st.misses);
    o += StrFormat(
        "# HELP strata_gateway_cache_hits_total Response cache hits.\n"
        "# TYPE strata_gateway_cache_hits_total counter\nstrata_gateway_cache_hits_total %llu\n"
        "# HELP strata_gateway_cache_misses_total Response cache misses.\n"
        "# TYPE strata_gateway_cache_misses_total counter\nstrata_gateway_cache_misses_total %llu\n"
        "# HELP strata_gateway_cache_hit_ratio Hits over lookups.\n"
        "# TYPE strata_gateway_cache_hit_ratio gauge\nstrata_gateway_cache_hit_ratio %.6f\n"
        "# HELP strata_gateway_cache_backend_up 1 when the cache backend answers.\n"
        "# TYPE strata_gateway_cache_backend_up gauge\nstrata_gateway_cache_backend_up %d\n",
        static_cast<unsigned long long>(st.hits), static_cast<unsigned long long>(st.misses),
        total > 0 ? static_cast<double>(st.hits) / total : 0.0, st.backend_up ? 1 : 0);
  }
  return o;
}

// ---- active health checks ----

Task<void> Gateway::ProbeLoop(int backend) {
  net::steady_timer timer(co_await net::this_coro::executor);
  for (;;) {
    co_await Probe(backend);
    if (backend == 0) upstream_->Expire();
    timer.expires_after(std::chrono::milliseconds(config_.gateway.health.interval_ms));
    beast::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
  }
}

Task<void> Gateway::Probe(int backend) {
  const BackendInfo& info = pool_->info(backend);
  const auto t0 = Clock::now();
  beast::tcp_stream up(co_await net::this_coro::executor);
  up.expires_after(std::chrono::milliseconds(config_.gateway.health.timeout_ms));
  beast::error_code ec;
  tcp::endpoint ep;
  const auto addr = net::ip::make_address(info.host, ec);
  if (ec) {
    tcp::resolver res(co_await net::this_coro::executor);
    auto r = co_await res.async_resolve(info.host, std::to_string(info.port),
                                        net::redirect_error(net::use_awaitable, ec));
    if (!ec && !r.empty()) ep = *r.begin();
  } else {
    ep = tcp::endpoint(addr, static_cast<unsigned short>(info.port));
  }
  if (!ec) co_await up.async_connect(ep, net::redirect_error(net::use_awaitable, ec));
  http::response<http::string_body> res;
  if (!ec) {
    Request req{http::verb::get, "/health", 11};
    req.set(http::field::host, info.host);
    if (!config_.gateway.node_api_key.empty())
      req.set(http::field::authorization, "Bearer " + config_.gateway.node_api_key);
    req.keep_alive(false);
    co_await http::async_write(up, req, net::redirect_error(net::use_awaitable, ec));
  }
  beast::flat_buffer buf;
  if (!ec) co_await http::async_read(up, buf, res, net::redirect_error(net::use_awaitable, ec));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (ec) {
    pool_->ProbeResult(backend, false, false, ms, 0, 0, 0, "probe: " + ec.message());
    if (!LocalResourceError(ec)) upstream_->Drop(backend);
    co_return;
  }
  const json j = json::parse(res.body(), nullptr, false);
  const std::string status =
      j.is_object() && j.contains("status") && j["status"].is_string() ? j["status"].get<std::string>() : "";
  auto num = [&](const char* k) {
    return j.is_object() && j.contains(k) && j[k].is_number_integer() ? j[k].get<int>() : 0;
  };
  const bool ok = res.result_int() == 200 && status == "healthy";
  if (!ok) upstream_->Drop(backend);
  pool_->ProbeResult(backend, ok, status == "loading", ms, num("slots_busy"), num("slots_total"),
                     num("requests_waiting"),
                     ok ? "" : StrFormat("probe: HTTP %d %s", res.result_int(), status.c_str()));
  beast::error_code ignore;
  up.socket().shutdown(tcp::socket::shutdown_both, ignore);
}

Status RunGateway(const cluster::ClusterConfig& config) {
  if (config.gateway.backends.empty()) return Status::Error("the cluster has no backends");
  Gateway g(config);
  return g.Run();
}

}  // namespace strata::gateway
