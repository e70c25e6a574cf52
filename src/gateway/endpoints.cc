// The gateway's own endpoints: GET /health (always open), /ready, the dashboard's static files
// (/ and /dashboard/*, always open: nothing secret in them), and the admin surface /metrics,
// /api/cluster and /api/dashboard (behind gateway.admin_key / STRATA_ADMIN_KEY when set).
#include <ctime>

#include "gateway/dashboard.h"
#include "gateway/gateway_impl.h"

namespace strata::gateway {

using nlohmann::json;

bool Gateway::IsLocal(const std::string& path) {
  return path == "/health" || path == "/ready" || path == "/metrics" || path == "/api/cluster" ||
         path == "/api/dashboard" || path == "/" || path.rfind("/dashboard/", 0) == 0;
}

bool Gateway::IsAdminPath(std::string_view path) {
  return path == "/metrics" || path == "/api/cluster" || path == "/api/dashboard";
}

bool Gateway::AdminAllowed(const Request& req) const {
  const std::string_view path =
      ::strata::http::PathOf(std::string_view(req.target().data(), req.target().size()));
  if (admin_key_.empty() || !IsAdminPath(path)) return true;
  return ::strata::http::SecretEquals(::strata::http::BearerToken(req), admin_key_);
}

Reply Gateway::ServeAsset(const std::string& path) const {
  const DashboardAsset* a = FindDashboardAsset(path);
  if (!a) return ErrorReply(404, "not found: " + path, "not_found_error");
  Reply r;
  r.body.assign(reinterpret_cast<const char*>(a->data), a->size);
  r.content_type = a->content_type;
  r.headers = {{"Cache-Control", "no-cache"},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"},
               {"Content-Security-Policy",
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"}};
  return r;
}

json Gateway::DashboardJson() {
  const auto& g = config_.gateway;
  json gw = {{"uptime_s", static_cast<int64_t>(std::time(nullptr)) - started_},
             {"policy", cluster::RoutingPolicyName(g.routing.policy)},
             {"avoid_memory_pressure", g.routing.avoid_memory_pressure},
             {"health_interval_ms", g.health.interval_ms},
             {"requests_active", admission_->active()},
             {"queue_depth", admission_->queued()},
             {"connections", http_ ? http_->connections() : 0},
             {"retries", retries_.load()},
             {"failovers", failovers_.load()},
             {"rejected", rejected_.load()},
             {"api_keys_required", !g.api_keys.empty()},
             {"admin_key_required", !admin_key_.empty()},
             {"cache", cache_ ? cache_->backend() : std::string()},
             {"resources", resources_ ? resources_->Json() : json(nullptr)}};
  json series = live_.Json();
  json events = std::move(series["events"]);
  series.erase("events");
  series["interval_ms"] = 1000;
  return {{"gateway", gw}, {"cluster", ClusterJson()}, {"series", series}, {"events", events}};
}

Task<bool> Gateway::Local(ClientStream& s, Call& c) {
  const Request& req = c.req;
  const std::string& path = c.log.path;
  if (req.method() != http::verb::get) {
    Reply e = ErrorReply(405, "use GET", "invalid_request_error", "");
    co_return co_await SendError(s, req, std::move(e), &c.log);
  }
  if (!AdminAllowed(req)) {
    Reply e = ErrorReply(401, "this endpoint needs the admin key", "authentication_error",
                         "invalid_admin_key");
    co_return co_await SendError(s, req, std::move(e), &c.log);
  }
  Reply r;
  if (path == "/health") {
    json h = {{"status", "ok"}};
    if (resources_) h["resources"] = resources_->Json();
    r.body = DumpJson(h);
  } else if (path == "/ready") {
    const int n = pool_->HealthyCount();
    r.status = n > 0 ? 200 : 503;
    r.body = DumpJson(json{{"ready", n > 0}, {"healthy_backends", n}, {"backends", pool_->size()}});
  } else if (path == "/metrics") {
    r.body = RenderMetrics();
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  } else if (path == "/api/cluster") {
    r.body = DumpJson(ClusterJson());
  } else if (path == "/api/dashboard") {
    r.body = DumpJson(DashboardJson());
    r.headers.emplace_back("Cache-Control", "no-store");
  } else {
    r = ServeAsset(path);
    if (r.status != 200) co_return co_await SendError(s, req, std::move(r), &c.log);
  }
  const bool keep = co_await Send(s, req, std::move(r), &c.log);
  co_return Finish(c, keep);
}

}  // namespace strata::gateway
