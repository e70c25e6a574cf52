// Startup of the gateway (cache, TLS with reload on SIGHUP, the HTTP core's listener),
// replies, and the active health probes of the backends.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "base/log.h"
#include "gateway/gateway.h"
#include "gateway/gateway_impl.h"
#include "http/tls.h"

namespace strata::gateway {

using nlohmann::json;

std::string DumpJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ErrorEnvelope(const std::string& message, const std::string& type,
                          const std::string& code) {
  json e = {{"message", message}, {"type", type}};
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return DumpJson(json{{"error", e}});
}

Gateway::Gateway(const cluster::ClusterConfig& config) : config_(config) {
  started_ = static_cast<int64_t>(std::time(nullptr));
  admin_key_ = config_.gateway.admin_key;
  if (const char* env = std::getenv("STRATA_ADMIN_KEY"); admin_key_.empty() && env)
    admin_key_ = env;
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
      pool_->size(),
      UpstreamPool::Options{g.upstream.max_idle_per_backend, g.upstream.idle_timeout_ms});
  admission_ = std::make_unique<Admission>(g.admission.max_concurrent, g.admission.max_queue,
                                           std::chrono::milliseconds(g.admission.queue_timeout_ms));
}

Status Gateway::Run() {
  const auto& g = config_.gateway;
  ::strata::http::RaiseFileLimit();
  if (g.cache.enabled) {
    CacheOptions co;
    co.enabled = true;
    co.max_entries = static_cast<size_t>(g.cache.max_entries);
    co.max_bytes = static_cast<size_t>(g.cache.max_bytes);
    co.ttl_s = g.cache.ttl_s;
    co.redis_url = g.cache.redis_url;
    co.redis_cluster = g.cache.redis_cluster;
    co.redis_nodes = g.cache.redis_nodes;
    co.redis_password = g.cache.redis_password;
    co.hmac_key = g.cache.hmac_key;
    co.redis_prefix = g.cache.redis_prefix;
    co.redis_timeout_ms = g.cache.redis_timeout_ms;
    co.redis_retry_ms = g.cache.redis_retry_ms;
    auto c = MakeResponseCache(co);
    if (!c.ok()) return c.status().With("gateway.cache");
    cache_ = std::move(c).value();
    if (cache_->backend() != "memory") cache_io_ = std::make_unique<asio::thread_pool>(2);
  }
  ::strata::http::Limits limits;
  limits.body_bytes = static_cast<uint64_t>(g.admission.max_body_bytes);
  limits.idle = std::chrono::milliseconds(g.idle_timeout_ms);
  limits.request_read = std::chrono::milliseconds(g.request_read_timeout_ms);
  limits.max_connections = g.max_connections;
  limits.max_connections_per_client = g.max_connections_per_client;
  const ::strata::http::ServerOptions so{.name = "strata gateway",
                                         .host = g.listen_host,
                                         .port = g.listen_port,
                                         .server_header = "strata-gateway",
                                         .limits = limits};
  http_ = std::make_unique<::strata::http::Server>(ioc_, *this, so);
  if (!g.tls_cert.empty()) STRATA_RETURN_IF_ERROR(LoadTls().With("gateway"));
  STRATA_RETURN_IF_ERROR(http_->Listen());
  LogEvent(LogLevel::kInfo,
           StrFormat("strata gateway: listening on %s://%s:%u (%zu backends, policy %s)",
                     g.tls_cert.empty() ? "http" : "https", g.listen_host.c_str(), http_->port(),
                     pool_->size(), cluster::RoutingPolicyName(g.routing.policy)),
           "");
  http_->StopOnSignals(std::chrono::seconds(10));
  if (!g.tls_cert.empty()) ReloadOnHangup();
  http_->Start();
  for (size_t i = 0; i < pool_->size(); ++i)
    asio::co_spawn(asio::make_strand(ioc_), ProbeLoop(static_cast<int>(i)), asio::detached);
  ::strata::http::ResourceMonitor::Options ro;
  ro.component = "gateway";
  ro.disk_path = g.resources.disk_path;
  ro.thresholds = {g.resources.warn_cpu_percent, g.resources.warn_memory_percent,
                   g.resources.warn_disk_percent};
  ro.interval = std::chrono::milliseconds(g.resources.interval_ms);
  resources_ = std::make_unique<::strata::http::ResourceMonitor>(std::move(ro));
  resources_->Start(ioc_.get_executor());
  StartLiveTicks();
  ::strata::http::RunThreads(ioc_, g.threads);
  LogEvent(LogLevel::kInfo, "strata gateway: stopped", "");
  return Status::Ok();
}

Status Gateway::LoadTls() {
  const auto& g = config_.gateway;
  auto ctx = ::strata::http::MakeServerTls(g.tls_cert, g.tls_key);
  if (!ctx.ok()) return ctx.status();
  http_->SetTls(std::move(ctx).value());
  return Status::Ok();
}

void Gateway::ReloadOnHangup() {
  if (!hangup_) hangup_ = std::make_unique<asio::signal_set>(ioc_, SIGHUP);
  hangup_->async_wait([this](const beast::error_code& ec, int) {
    if (ec) return;
    // A failed reload keeps the context in use: new connections still get a certificate.
    const Status st = LoadTls();
    if (st.ok()) LogEvent(LogLevel::kInfo, "strata gateway: TLS certificate and key reloaded", "");
    else
      LogEvent(
          LogLevel::kError,
          "strata gateway: TLS reload failed, keeping the previous certificate: " + st.message(),
          "");
    ReloadOnHangup();
  });
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
  co_return ok&& req.keep_alive();
}

Task<bool> Gateway::SendError(ClientStream& s, const Request& req, Reply r, RequestLog* log) {
  if (log) {
    log->status = r.status;
    if (log->path.empty())
      log->path = std::string(
          ::strata::http::PathOf(std::string_view(req.target().data(), req.target().size())));
    if (log->method.empty()) log->method = std::string(req.method_string());
    AccessLog(*log, 0);
    CountRequest(log->path, r.status);
  }
  co_return co_await Send(s, req, std::move(r), log);
}

std::string Gateway::AffinityKey(const Request& req, const json* body) const {
  const auto& r = config_.gateway.routing;
  if (!r.affinity_header.empty()) {
    const auto it = req.find(r.affinity_header);
    const std::string h = it == req.end() ? std::string() : std::string(it->value());
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
  co_await asio::co_spawn(cache_io_->get_executor(), PutOn(cache_.get(), key, std::move(c)),
                          asio::use_awaitable);
}

Task<std::optional<CachedResponse>> Gateway::CacheGet(const std::string& key) {
  if (!cache_io_) co_return cache_->Get(key);
  std::optional<CachedResponse> r = co_await asio::co_spawn(
      cache_io_->get_executor(), GetOn(cache_.get(), key), asio::use_awaitable);
  co_return r;
}

// ---- active health checks ----

Task<void> Gateway::ProbeLoop(int backend) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    co_await Probe(backend);
    if (backend == 0) upstream_->Expire();
    timer.expires_after(std::chrono::milliseconds(config_.gateway.health.interval_ms));
    beast::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

Task<void> Gateway::Probe(int backend) {
  const BackendInfo& info = pool_->info(backend);
  const auto t0 = Clock::now();
  beast::tcp_stream up(co_await asio::this_coro::executor);
  up.expires_after(std::chrono::milliseconds(config_.gateway.health.timeout_ms));
  beast::error_code ec;
  tcp::endpoint ep;
  const auto addr = asio::ip::make_address(info.host, ec);
  if (ec) {
    tcp::resolver res(co_await asio::this_coro::executor);
    auto r = co_await res.async_resolve(info.host, std::to_string(info.port),
                                        asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !r.empty()) ep = *r.begin();
  } else {
    ep = tcp::endpoint(addr, static_cast<unsigned short>(info.port));
  }
  if (!ec) co_await up.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
  http::response<http::string_body> res;
  if (!ec) {
    Request req{http::verb::get, "/health", 11};
    req.set(http::field::host, info.host);
    if (!config_.gateway.node_api_key.empty())
      req.set(http::field::authorization, "Bearer " + config_.gateway.node_api_key);
    req.keep_alive(false);
    co_await http::async_write(up, req, asio::redirect_error(asio::use_awaitable, ec));
  }
  beast::flat_buffer buf;
  if (!ec) co_await http::async_read(up, buf, res, asio::redirect_error(asio::use_awaitable, ec));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const HealthState before = pool_->health(backend);
  if (ec) {
    pool_->ProbeResult(backend, false, false, ms, 0, 0, 0, "probe: " + ec.message());
    if (!LocalResourceError(ec)) upstream_->Drop(backend);
    NoteHealthChange(backend, before, "probe: " + ec.message());
    co_return;
  }
  const json j = json::parse(res.body(), nullptr, false);
  const std::string status = j.is_object() && j.contains("status") && j["status"].is_string()
                                 ? j["status"].get<std::string>()
                                 : "";
  auto num = [&](const char* k) {
    return j.is_object() && j.contains(k) && j[k].is_number_integer() ? j[k].get<int>() : 0;
  };
  // A pipeline head whose next stage is down takes no new request (its streams go on).
  const bool ok = res.result_int() == 200 && status == "healthy" && !PipelineDown(j);
  pool_->ProbeStages(backend, StagesFromHealth(j));
  NoteResources(backend, ResourcesFromHealth(j));
  if (!ok) upstream_->Drop(backend);
  pool_->ProbeResult(backend, ok, status == "loading", ms, num("slots_busy"), num("slots_total"),
                     num("requests_waiting"),
                     ok ? ""
                        : StrFormat("probe: HTTP %d %s%s", res.result_int(), status.c_str(),
                                    PipelineDown(j) ? " (pipeline stage down)" : ""));
  NoteHealthChange(backend, before,
                   StrFormat("probe: HTTP %d %s", res.result_int(), status.c_str()));
  beast::error_code ignore;
  up.socket().shutdown(tcp::socket::shutdown_both, ignore);
}

void Gateway::NoteHealthChange(int backend, HealthState before, const std::string& why) {
  const HealthState now = pool_->health(backend);
  if (now == before) return;
  const std::string& name = pool_->info(backend).name;
  if (now == HealthState::kHealthy)
    LiveEventNow("backend_up", name,
                 before == HealthState::kUnknown ? "healthy (first probe)" : "healthy again", "");
  else if (before == HealthState::kHealthy || now == HealthState::kUnhealthy)
    LiveEventNow("backend_down", name, std::string(HealthName(now)) + ": " + why, "");
}

void Gateway::NoteResources(int backend, NodeResources r) {
  const bool now = r.memory_pressure;
  const double percent = r.memory_percent;
  if (pool_->ProbeResources(backend, std::move(r)) == now) return;
  const std::string& name = pool_->info(backend).name;
  LiveEventNow("memory_pressure", name,
               StrFormat("host memory %.1f%%: %s", percent,
                         now ? "above the node's threshold" : "back below it"),
               "");
  STRATA_LOG(LogLevel::kWarn, "backend memory pressure: backend=%s memory_percent=%.1f state=%s",
             name.c_str(), percent, now ? "above" : "below");
}

Status RunGateway(const cluster::ClusterConfig& config) {
  if (config.gateway.backends.empty()) return Status::Error("the cluster has no backends");
  Gateway g(config);
  return g.Run();
}

}  // namespace strata::gateway
