// Observability of the gateway: the request counters, the Prometheus exposition, the
// /api/cluster view and the access log.
#include <cmath>
#include <cstdio>
#include <ctime>

#include "gateway/gateway_impl.h"
#include "http/prom.h"

namespace strata::gateway {

using nlohmann::json;
using ::strata::http::PromEscape;

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
                        {"mode", v.stages.empty() ? v.info.mode : "pipeline"},
                        {"layers", v.info.layers},
                        {"stages", StagesJson(v.stages)},
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
