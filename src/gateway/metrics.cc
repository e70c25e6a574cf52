// Observability of the gateway: the request counters, the Prometheus exposition, the
// /api/cluster view, the access log and the dashboard's live series (one tick a second).
#include <cmath>
#include <cstdio>
#include <ctime>
#include <vector>

#include "base/log.h"

#include "base/log.h"

#include "gateway/gateway_impl.h"
#include "http/prom.h"

namespace strata::gateway {

using nlohmann::json;
using ::strata::http::PromEscape;

void Gateway::CountRequest(const std::string& path, int status) {
  std::lock_guard<std::mutex> lock(metrics_mu_);
  const bool known = path == "/api/inference" || path == "/v1/completions" ||
                     path == "/v1/chat/completions" || path == "/v1/models" || path == "/health" ||
                     path == "/ready" || path == "/metrics" || path == "/api/cluster" ||
                     path == "/" || path == "/api/dashboard";
  ++http_counts_[{known ? path : "other", status}];
}

void Gateway::AccessLog(const RequestLog& log, double ms) {
  if (!config_.gateway.access_log) return;
  json j = {{"method", log.method},
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
  std::vector<LogField> fields;
  for (const auto& [k, v] : j.items()) fields.push_back({k, DumpJson(v)});
  // One line per request: the shared log format (docs/logging.md), whatever STRATA_LOG says.
  LogEvent(log.status >= 500 ? LogLevel::kWarn : LogLevel::kInfo, "request", log.request_id,
           fields);
}

void Gateway::StartLiveTicks() {
  live_timer_ = std::make_unique<asio::steady_timer>(ioc_);
  LiveTick();
}

void Gateway::LiveTick() {
  live_timer_->expires_after(std::chrono::seconds(1));
  live_timer_->async_wait([this](const beast::error_code& ec) {
    if (ec) return;
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    live_.Tick(now_ms, admission_->active(), admission_->queued());
    LiveTick();
  });
}

void Gateway::RecordLive(const Call& c) {
  if (!c.is_gen || c.log.status == 0) return;
  const double latency = std::chrono::duration<double>(Clock::now() - c.t0).count();
  const bool error = c.log.status >= 500;
  live_.Record(latency, c.log.ttft_s, c.log.completion_tokens, error);
  if (error)
    LiveEventNow("error", c.log.backend,
                 StrFormat("%s answered %d", c.log.path.c_str(), c.log.status), c.log.request_id);
}

void Gateway::LiveEventNow(const std::string& kind, const std::string& backend,
                           const std::string& message, const std::string& request_id) {
  LiveEvent e;
  e.t_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  e.kind = kind;
  e.backend = backend;
  e.message = message;
  e.request_id = request_id;
  live_.Event(std::move(e));
}

json Gateway::ClusterJson() {
  json backends = json::array();
  for (const BackendView& v : pool_->Snapshot()) {
    backends.push_back(
        {{"name", v.info.name},
         {"url", StrFormat("http://%s:%d", v.info.host.c_str(), v.info.port)},
         {"state", HealthName(v.health)},
         {"circuit", CircuitName(v.circuit)},
         {"mode", v.stages.empty() ? v.info.mode : "pipeline"},
         {"layers", v.info.layers},
         {"stages", StagesJson(v.stages)},
         {"outstanding", v.outstanding},
         {"load",
          {{"slots_busy", v.slots_busy}, {"slots_total", v.slots_total}, {"waiting", v.waiting}}},
         {"latency_ms", std::round(v.latency_ewma_ms * 1000) / 1000},
         {"probe_ms", std::round(v.probe_ms * 1000) / 1000},
         {"requests", v.requests},
         {"errors", v.errors},
         {"last_error", v.last_error},
         {"resources", NodeResourcesJson(v.resources)}});
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
        return std::string(
            v.health == HealthState::kHealthy && v.circuit != CircuitState::kOpen ? "1" : "0");
      });
  per("strata_gateway_backend_circuit_open", "gauge",
      "1 while the backend's circuit breaker is open.", [](const BackendView& v) {
        return std::string(v.circuit == CircuitState::kOpen ? "1" : "0");
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
      "# TYPE strata_gateway_connections gauge\nstrata_gateway_connections %d\n"
      "# HELP strata_gateway_connections_refused_total Connections refused over the caps.\n"
      "# TYPE strata_gateway_connections_refused_total counter\n"
      "strata_gateway_connections_refused_total %llu\n",
      admission_->queued(), admission_->active(), http_ ? http_->connections() : 0,
      static_cast<unsigned long long>(http_ ? http_->rejected_connections() : 0));
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
  o += FailoverMetrics();
  o += StrFormat(
      "# HELP strata_gateway_upstream_idle_connections Idle keep-alive connections to backends.\n"
      "# TYPE strata_gateway_upstream_idle_connections gauge\n"
      "strata_gateway_upstream_idle_connections %zu\n"
      "# HELP strata_gateway_upstream_reused_total Requests sent on a pooled connection.\n"
      "# TYPE strata_gateway_upstream_reused_total counter\n"
      "strata_gateway_upstream_reused_total %llu\n",
      upstream_->idle_total(), static_cast<unsigned long long>(upstream_->reused()));
  per("strata_gateway_backend_memory_pressure", "gauge",
      "1 when the backend's /health reports host memory above its threshold.",
      [](const BackendView& v) { return std::string(v.resources.memory_pressure ? "1" : "0"); });
  if (resources_) resources_->RenderMetrics(&o);
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
    o += StrFormat(
        "# HELP strata_gateway_cache_errors_total Cache backend failures (turned into misses).\n"
        "# TYPE strata_gateway_cache_errors_total counter\nstrata_gateway_cache_errors_total %llu\n"
        "# HELP strata_gateway_cache_redirects_total Redis Cluster MOVED / ASK answers followed.\n"
        "# TYPE strata_gateway_cache_redirects_total counter\n"
        "strata_gateway_cache_redirects_total %llu\n",
        static_cast<unsigned long long>(st.errors), static_cast<unsigned long long>(st.redirects));
  }
  return o;
}

}  // namespace strata::gateway
