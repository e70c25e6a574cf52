// Gateway::Handle: a request's named steps — route, authenticate, parse, limits, admission,
// cache, proxy — and the HTTP core's hooks (authentication before the body is read).
#include <cmath>

#include "gateway/accounting.h"
#include "gateway/gateway_impl.h"
#include "gateway/validate.h"
#include "http/json_guard.h"

namespace strata::gateway {

using nlohmann::json;

namespace {

// A request id is passed through when it is short and printable, else generated.
bool ValidRequestId(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

std::string_view Target(const Request& req) {
  return std::string_view(req.target().data(), req.target().size());
}

// Holds a per-key concurrency slot until released.
struct KeySlot {
  std::mutex* mu;
  std::map<std::string, int>* active;
  std::string key;
  ~KeySlot() {
    std::lock_guard<std::mutex> lock(*mu);
    --(*active)[key];
  }
};

struct AdmissionSlot {
  Admission* a;
  ~AdmissionSlot() { a->Release(); }
};

}  // namespace

// ---- hooks of the HTTP core ----

std::optional<Reply> Gateway::OnHeaders(const Request& req, const ClientStream&) {
  // Route and key need only the headers: a request without a valid key is answered 401
  // before its body is read.
  Call c(req);
  Begin(c);
  std::optional<Reply> err;
  if (IsLocal(c.log.path)) {
    if (req.method() == http::verb::get && !AdminAllowed(req))
      err = ErrorReply(401, "this endpoint needs the admin key", "authentication_error",
                       "invalid_admin_key");
  } else if (!Route(c)) {
    err = Authenticate(c);
  }
  if (!err) return std::nullopt;
  c.log.status = err->status;
  AccessLog(c.log, 0);
  CountRequest(c.log.path, err->status);
  err->headers.emplace_back("X-Request-Id", c.log.request_id);
  return err;
}

Task<bool> Gateway::OnRequest(ClientStream& s, Request& req) { co_return co_await Handle(s, req); }

Reply Gateway::OnTransportError(int status, const std::string& message, const Request* req) {
  RequestLog log;
  log.request_id = StrFormat("gw-%llx", static_cast<unsigned long long>(next_id_++));
  if (req) {
    log.method = std::string(req->method_string());
    log.path = std::string(::strata::http::PathOf(Target(*req)));
  }
  log.status = status;
  AccessLog(log, 0);
  CountRequest(log.path, status);
  const std::string type = status == 503 ? "unavailable_error" : "invalid_request_error";
  return ErrorReply(status, message, type, "", {{"X-Request-Id", log.request_id}});
}

// ---- the steps ----

Task<bool> Gateway::Handle(ClientStream& s, Request& req) {
  Call c(req);
  Begin(c);
  if (IsLocal(c.log.path)) co_return co_await Local(s, c);
  std::optional<Reply> err = Route(c);
  if (!err) err = Authenticate(c);
  if (!err) err = Parse(c);
  if (!err) err = Limit(c);
  if (!err) err = co_await Admit(c);
  if (err) co_return co_await SendError(s, req, std::move(*err), &c.log);
  if (std::optional<Reply> hit = co_await CacheLookup(c)) {
    const bool keep = co_await Send(s, req, std::move(*hit), &c.log);
    if (c.key) limiter_.Settle(c.key->key, c.limits, c.estimate, 0);
    co_return Finish(c, keep);
  }
  co_return Finish(c, co_await Proxy(s, c));
}

void Gateway::Begin(Call& c) {
  c.log.method = std::string(c.req.method_string());
  c.log.path = std::string(::strata::http::PathOf(Target(c.req)));
  const auto it = c.req.find("X-Request-Id");
  const std::string given = it == c.req.end() ? std::string() : std::string(it->value());
  c.log.request_id = ValidRequestId(given)
                         ? given
                         : StrFormat("gw-%llx-%llx", static_cast<unsigned long long>(started_),
                                     static_cast<unsigned long long>(next_id_++));
}

bool Gateway::Finish(Call& c, bool keep) {
  AccessLog(c.log, std::chrono::duration<double, std::milli>(Clock::now() - c.t0).count());
  CountRequest(c.log.path, c.log.status);
  RecordLive(c);
  return keep;
}

std::optional<Reply> Gateway::Route(Call& c) const {
  const std::string& path = c.log.path;
  c.is_models = path == "/v1/models";
  c.is_gen =
      path == "/api/inference" || path == "/v1/completions" || path == "/v1/chat/completions";
  if (!c.is_models && !c.is_gen) return ErrorReply(404, "not found: " + path, "not_found_error");
  const bool get = c.req.method() == http::verb::get;
  const bool post = c.req.method() == http::verb::post;
  if ((c.is_models && !get) || (c.is_gen && !post))
    return ErrorReply(405, c.is_gen ? "use POST" : "use GET", "invalid_request_error");
  return std::nullopt;
}

std::optional<Reply> Gateway::Authenticate(Call& c) const {
  if (config_.gateway.api_keys.empty()) return std::nullopt;
  const std::string_view token = ::strata::http::BearerToken(c.req);
  for (const auto& k : config_.gateway.api_keys)
    if (!token.empty() && ::strata::http::SecretEquals(token, k.key)) c.key = &k;
  if (!c.key)
    return ErrorReply(401, "invalid or missing API key", "authentication_error", "invalid_api_key");
  c.log.key_name = c.key->name;
  return std::nullopt;
}

std::optional<Reply> Gateway::Parse(Call& c) const {
  if (!c.is_gen) return std::nullopt;
  // Depth and size limits first: nothing recurses over a value that did not pass them.
  ::strata::http::JsonRefusal why{};
  auto parsed = ::strata::http::ParseJsonLimited(c.req.body(), {}, &why);
  if (!parsed.ok())
    return ErrorReply(400, "request body: " + parsed.status().message(), "invalid_request_error",
                      ::strata::http::JsonRefusalCode(why));
  c.body = std::move(parsed).value();
  if (!c.body.is_object())
    return ErrorReply(400, "the request body must be a JSON object", "invalid_request_error");
  if (auto bad = ValidateGatewayBody(c.log.path, c.body))
    return ErrorReply(bad->status, bad->message, "invalid_request_error", bad->code);
  DropNullFields(&c.body);
  const json& b = c.body;
  if (c.log.path == "/api/inference" &&
      (!b.contains("prompt") || !b["prompt"].is_string() || b["prompt"].get<std::string>().empty()))
    return ErrorReply(400, "No prompt provided", "invalid_request_error");
  c.stream = c.log.path != "/api/inference" && b.value("stream", false) == true;
  c.log.stream = c.stream;
  return std::nullopt;
}

std::optional<Reply> Gateway::Limit(Call& c) {
  if (!c.key) return std::nullopt;
  const cluster::ApiKeySpec& key = *c.key;
  c.limits.requests_per_minute = key.requests_per_minute;
  c.limits.tokens_per_minute = key.tokens_per_minute;
  if (c.is_gen) {
    int64_t max_tokens = 256;
    for (const char* f : {"max_tokens", "max_completion_tokens", "max_length"})
      if (c.body.contains(f) && c.body[f].is_number_integer())
        max_tokens = c.body[f].get<int64_t>();
    c.estimate = static_cast<int64_t>(c.req.body().size() / 4) + std::max<int64_t>(0, max_tokens);
  }
  const RateDecision d = limiter_.Acquire(key.key, c.limits, c.estimate);
  if (!d.allowed) {
    ++rejected_;
    const int after = std::max(1, static_cast<int>(std::ceil(d.retry_after_s)));
    return ErrorReply(429, "rate limit exceeded: " + d.reason, "rate_limit_error",
                      "rate_limit_exceeded", {{"Retry-After", std::to_string(after)}});
  }
  if (key.max_concurrent <= 0) return std::nullopt;
  {
    std::lock_guard<std::mutex> lock(key_mu_);
    int& active = key_active_[key.key];
    if (active < key.max_concurrent) {
      ++active;
      c.key_slot = std::make_shared<KeySlot>(KeySlot{&key_mu_, &key_active_, key.key});
      return std::nullopt;
    }
  }
  ++rejected_;
  limiter_.Settle(key.key, c.limits, c.estimate, 0);
  return ErrorReply(429, "too many concurrent requests for this API key", "rate_limit_error",
                    "concurrency_limit_exceeded", {{"Retry-After", "1"}});
}

Task<std::optional<Reply>> Gateway::Admit(Call& c) {
  const AdmitResult admit = co_await admission_->Acquire();
  if (admit == AdmitResult::kAdmitted) {
    c.admission_slot = std::make_shared<AdmissionSlot>(AdmissionSlot{admission_.get()});
    co_return std::nullopt;
  }
  ++rejected_;
  if (c.key) limiter_.Settle(c.key->key, c.limits, c.estimate, 0);
  Reply r = ErrorReply(429,
                       admit == AdmitResult::kQueueFull
                           ? "the gateway is at capacity (queue full)"
                           : "the gateway is at capacity (timed out in the queue)",
                       "rate_limit_error", "overloaded", {{"Retry-After", "1"}});
  co_return r;
}

Task<std::optional<Reply>> Gateway::CacheLookup(Call& c) {
  if (!cache_ || !c.is_gen || !IsDeterministic(c.body, 0.8)) co_return std::nullopt;
  // Per tenant unless the key shares; per served model (configured path and name).
  c.cache_key =
      CacheKey(c.log.path, c.body, c.key && !c.key->shared_cache ? c.key->key : std::string(),
               config_.model.path + "|" + config_.model.name);
  std::optional<CachedResponse> hit = co_await CacheGet(c.cache_key);
  if (!hit) {
    c.log.cache = "MISS";
    co_return std::nullopt;
  }
  c.log.cache = "HIT";
  Reply r;
  r.status = hit->status;
  r.body = std::move(hit->body);
  r.content_type = hit->content_type;
  r.headers.emplace_back("X-Cache", "HIT");
  co_return r;
}

Task<bool> Gateway::Proxy(ClientStream& s, Call& c) {
  Headers extra;
  if (!c.cache_key.empty()) extra.emplace_back("X-Cache", "MISS");
  const std::string affinity = AffinityKey(c.req, c.is_gen ? &c.body : nullptr);
  const std::string& path = c.log.path;
  ProxyResult r;
  if (c.stream) {
    r = co_await ProxyStream(s, c.req, path, c.body, affinity, extra, c.cache_key, &c.log);
  } else {
    const std::string up = path == "/api/inference" ? "/inference" : path;
    r = co_await ProxyPlain(s, c.req, path, up, c.is_gen ? &c.body : nullptr, affinity, extra,
                            c.cache_key, &c.log);
  }
  if (c.key) {
    const int64_t used = BilledTokens(c.body, c.req.body().size(), c.log.prompt_tokens,
                                      c.log.completion_tokens, c.estimate);
    limiter_.Settle(c.key->key, c.limits, c.estimate, used);
  }
  co_return r.keep_alive;
}

}  // namespace strata::gateway
