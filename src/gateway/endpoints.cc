// The gateway's own endpoints: GET /health (always open), /ready, and the admin surface
// /metrics and /api/cluster (behind gateway.admin_key / STRATA_ADMIN_KEY when set).
#include "gateway/gateway_impl.h"

namespace strata::gateway {

using nlohmann::json;

bool Gateway::IsLocal(const std::string& path) {
  return path == "/health" || path == "/ready" || path == "/metrics" || path == "/api/cluster";
}

bool Gateway::AdminAllowed(const Request& req) const {
  const std::string_view path =
      ::strata::http::PathOf(std::string_view(req.target().data(), req.target().size()));
  if (admin_key_.empty() || (path != "/metrics" && path != "/api/cluster")) return true;
  return ::strata::http::SecretEquals(::strata::http::BearerToken(req), admin_key_);
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
    r.body = DumpJson(json{{"status", "ok"}});
  } else if (path == "/ready") {
    const int n = pool_->HealthyCount();
    r.status = n > 0 ? 200 : 503;
    r.body = DumpJson(json{{"ready", n > 0}, {"healthy_backends", n}, {"backends", pool_->size()}});
  } else if (path == "/metrics") {
    r.body = RenderMetrics();
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  } else {
    r.body = DumpJson(ClusterJson());
  }
  const bool keep = co_await Send(s, req, std::move(r), &c.log);
  co_return Finish(c, keep);
}

}  // namespace strata::gateway
