// Proxying of the gateway: upstream HTTP exchanges with the nodes, retries with jittered
// backoff before the first byte, SSE pass-through chunk by chunk, and mid-stream failover
// (the stream is continued on another backend from the text / tokens already sent).
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <random>

#include "gateway/accounting.h"
#include "gateway/gateway_impl.h"
#include "http/json_guard.h"

namespace strata::gateway {

using nlohmann::json;

namespace {

// One exchange's connection to a backend: adopted from the pool or newly opened, and given
// back to the pool when the exchange completed cleanly (`reusable`), else closed.
struct Upstream {
  Upstream(const asio::any_io_executor& ex, UpstreamPool* pool, int backend)
      : stream(ex), pool(pool), backend(backend) {}
  ~Upstream() { Close(); }
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  void Close() {
    beast::error_code ec;
    if (!stream.socket().is_open()) return;
    stream.expires_never();
    if (reusable && pool && buf.size() == 0) {
      const bool v6 = stream.socket().local_endpoint(ec).address().is_v6();
      const int fd = ec ? -1 : stream.socket().release(ec);
      if (!ec && fd >= 0) {
        pool->Put(backend, {fd, v6});
        reusable = false;
        return;
      }
    }
    reusable = false;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
  }

  beast::tcp_stream stream;
  beast::flat_buffer buf;
  UpstreamPool* pool;
  int backend;
  bool reused = false;    // the connection came from the pool
  bool reusable = false;  // the exchange ended cleanly: give the connection back
};

// The request to a node. Keep-alive: the connection may serve the next request.
Request MakeUpstreamRequest(const BackendInfo& info, http::verb verb, const std::string& target,
                            const std::string& body, const std::string& request_id, bool stream,
                            const std::string& api_key) {
  Request req{verb, target, 11};
  req.set(http::field::host, info.host + ":" + std::to_string(info.port));
  req.set(http::field::user_agent, "strata-gateway");
  req.set("X-Request-Id", request_id);
  if (!api_key.empty()) req.set(http::field::authorization, "Bearer " + api_key);
  if (stream) req.set(http::field::accept, "text/event-stream");
  if (verb == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.keep_alive(true);
  req.prepare_payload();
  return req;
}

// Opens the connection: an idle pooled one when `reuse` allows and one is there, else new.
Task<beast::error_code> Open(Upstream& up, const BackendInfo& info, bool reuse, int timeout_ms) {
  beast::error_code ec;
  up.buf.clear();
  if (reuse && up.pool) {
    const UpstreamPool::Conn c = up.pool->Take(up.backend);
    if (c.fd >= 0) {
      up.stream.socket().assign(c.v6 ? tcp::v6() : tcp::v4(), c.fd, ec);
      if (!ec) {
        up.reused = true;
        co_return ec;
      }
      ::close(c.fd);
      ec = {};
    }
  }
  up.reused = false;
  up.stream.expires_after(std::chrono::milliseconds(std::min(timeout_ms, 10000)));
  const auto addr = asio::ip::make_address(info.host, ec);
  if (ec) {
    tcp::resolver res(co_await asio::this_coro::executor);
    auto r = co_await res.async_resolve(info.host, std::to_string(info.port),
                                        asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return ec;
    co_await up.stream.async_connect(r, asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await up.stream.async_connect(tcp::endpoint(addr, static_cast<unsigned short>(info.port)),
                                     asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) co_return ec;
  up.stream.socket().set_option(tcp::no_delay(true), ec);
  co_return beast::error_code{};
}

// Sends `req` and reads the answer (whole, or its header only) into a fresh parser. A pooled
// connection that turns out broken (an error before any byte of the answer: the node closed it
// meanwhile) is replaced once by a new connection. `*stop` (the client went away) ends it.
template <class Body>
Task<beast::error_code> Exchange(Upstream& up, const BackendInfo& info, const Request& req,
                                 std::optional<http::response_parser<Body>>& p, int timeout_ms,
                                 bool header_only, const bool* stop) {
  beast::error_code ec;
  for (int round = 0; round < 2; ++round) {
    if (*stop) co_return asio::error::operation_aborted;
    if (round > 0) up.Close();
    ec = co_await Open(up, info, round == 0, timeout_ms);
    if (ec) co_return ec;
    p.emplace();
    if constexpr (std::is_same_v<Body, http::string_body>) {
      p->body_limit(256u << 20);
    } else {
      // Not boost::none: Boost 1.74's parser compares a Content-Length against the optional
      // limit with `len > limit`, which an empty optional always loses (every error answer
      // with a Content-Length would fail with body_limit).
      p->body_limit(std::numeric_limits<std::uint64_t>::max());
    }
    up.stream.expires_after(std::chrono::milliseconds(timeout_ms));
    co_await http::async_write(up.stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && header_only) {
      co_await http::async_read_header(up.stream, up.buf, *p,
                                       asio::redirect_error(asio::use_awaitable, ec));
    } else if (!ec) {
      co_await http::async_read(up.stream, up.buf, *p,
                                asio::redirect_error(asio::use_awaitable, ec));
    }
    const bool broken_reuse = ec && up.reused && !p->got_some() && !*stop &&
                              ec != beast::error::timeout && ec != asio::error::operation_aborted;
    if (!broken_reuse) co_return ec;
  }
  co_return ec;
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// A node's error (the "error" object of an event or a JSON answer) that another node may not
// have: a failure of the node or its pipeline ("pipeline_stage_failed", "stage_unavailable",
// "server_stopping", "internal_error", or without a code a server_error/unavailable_error),
// not a request error (invalid_request_error and other 4xx-like codes).
bool RetryableError(const json& e) {
  if (!e.is_object()) return false;
  const std::string code =
      e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
  const std::string type =
      e.contains("type") && e["type"].is_string() ? e["type"].get<std::string>() : "";
  if (!code.empty())
    return code == "pipeline_stage_failed" || code == "stage_unavailable" ||
           code == "server_stopping" || code == "internal_error";
  return type == "server_error" || type == "unavailable_error";
}

// Follows an SSE stream event by event: what was generated so far (for a continuation), the
// stream's identity (so a continuation keeps it), and the rewriting of a continuation's events.
struct StreamState {
  bool chat = false;
  bool strip_ids = true;  // the client did not ask for token ids
  std::string pending;    // bytes of an incomplete event
  std::string id;
  int64_t created = 0;
  bool have_id = false;
  std::string text;                // generated text so far (completions)
  std::vector<int64_t> token_ids;  // generated ids so far, when the node reports them
  int64_t events_with_text = 0;
  bool finished = false;  // a finish_reason was seen
  bool done = false;      // data: [DONE] was seen
  bool error_event = false;
  bool strip_usage = false;  // the client did not ask for usage: only the gateway reads it
  // The node ended the stream with an error event that is its own failure (or its
  // pipeline's), not the request's: the event and the rest of that stream are not forwarded,
  // and the stream is continued elsewhere like a broken one.
  bool retry_error = false;
  std::string retry_message;
  // After a failover: the continuation's events are rewritten to the first stream's identity.
  bool rewrite = false;
  int64_t generated_before = 0;  // tokens generated before the latest failover
  int64_t prompt_tokens = -1, completion_tokens = -1;

  int64_t generated() const {
    return token_ids.empty() ? events_with_text : static_cast<int64_t>(token_ids.size());
  }

  // Consumes upstream bytes; returns the bytes to forward to the client.
  std::string Feed(const char* data, size_t n) {
    pending.append(data, n);
    std::string out;
    size_t start = 0;
    for (;;) {
      const size_t end = pending.find("\n\n", start);
      if (end == std::string::npos) break;
      out += Event(std::string_view(pending).substr(start, end + 2 - start));
      start = end + 2;
    }
    pending.erase(0, start);
    return out;
  }

  std::string Event(std::string_view ev) {
    if (retry_error) return {};  // what follows the swallowed error event ([DONE])
    if (ev.rfind("data: ", 0) != 0) return std::string(ev);
    std::string_view data = ev.substr(6, ev.size() - 8);
    if (data == "[DONE]") {
      done = true;
      return std::string(ev);
    }
    json j = json::parse(data, nullptr, false);
    if (!j.is_object()) return std::string(ev);
    bool modified = false;
    if (j.contains("error")) {
      if (RetryableError(j["error"])) {
        retry_error = true;
        retry_message = j["error"].is_object() ? j["error"].value("message", "") : "";
        return {};
      }
      error_event = true;
    }
    if (!have_id && j.contains("id") && j["id"].is_string()) {
      id = j["id"].get<std::string>();
      created = j.value("created", int64_t{0});
      have_id = true;
    } else if (rewrite && j.contains("id")) {
      j["id"] = id;
      j["created"] = created;
      modified = true;
    }
    if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
      json& c = j["choices"][0];
      bool has_text = false;
      if (chat && c.contains("delta") && c["delta"].is_object()) {
        json& d = c["delta"];
        // A continuation's opening {"role": "assistant"} chunk was already sent once.
        if (rewrite && d.contains("role") && (!d.contains("content") || d["content"] == "") &&
            c["finish_reason"].is_null())
          return {};
        for (const char* f : {"content", "reasoning_content"})
          if (d.contains(f) && d[f].is_string() && !d[f].get<std::string>().empty())
            has_text = true;
      } else if (c.contains("text") && c["text"].is_string()) {
        const std::string t = c["text"].get<std::string>();
        text += t;
        has_text = !t.empty();
      }
      if (has_text) ++events_with_text;
      for (json* holder : {&c, &j}) {
        if (holder->contains("token_ids") && (*holder)["token_ids"].is_array()) {
          for (const json& t : (*holder)["token_ids"])
            if (t.is_number_integer()) token_ids.push_back(t.get<int64_t>());
          if (strip_ids) {
            holder->erase("token_ids");
            modified = true;
          }
        }
      }
      if (c.contains("finish_reason") && !c["finish_reason"].is_null()) finished = true;
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      json& u = j["usage"];
      if (rewrite && u.contains("completion_tokens") &&
          u["completion_tokens"].is_number_integer()) {
        u["completion_tokens"] = u["completion_tokens"].get<int64_t>() + generated_before;
        if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
          u["prompt_tokens"] = std::max<int64_t>(
              0, u["prompt_tokens"].get<int64_t>() - (token_ids.empty() ? generated_before : 0));
        if (u.contains("total_tokens"))
          u["total_tokens"] =
              u.value("prompt_tokens", int64_t{0}) + u["completion_tokens"].get<int64_t>();
        modified = true;
      }
      prompt_tokens = u.value("prompt_tokens", int64_t{-1});
      completion_tokens = u.value("completion_tokens", int64_t{-1});
    }
    if (strip_usage && j.contains("usage")) {
      if (j.contains("choices") && j["choices"].is_array() && j["choices"].empty()) return {};
      j.erase("usage");  // "usage": null on every chunk
      modified = true;
    }
    if (!modified) return std::string(ev);
    return "data: " + DumpJson(j) + "\n\n";
  }
};

std::string SseError(const std::string& message) {
  return "data: " + ErrorEnvelope(message, "server_error", "backend_failed") + "\n\n" +
         "data: [DONE]\n\n";
}

// After a failed exchange with backend `b`: releases it and records why in `last_error`. True
// when this process is out of descriptors (or memory): not the backend's fault, and no other
// backend would fare better, so the caller stops trying.
bool ExchangeFailed(BackendPool& pool, UpstreamPool& upstream, int b, const BackendInfo& info,
                    const beast::error_code& ec, std::string* last_error) {
  if (LocalResourceError(ec)) {
    pool.Release(b, Outcome::kNeutral, -1, -1, "");
    *last_error = "the gateway is out of resources: " + ec.message();
    return true;
  }
  *last_error = info.name + ": " + ec.message();
  pool.Release(b, Outcome::kFailure, -1, -1, ec.message());
  upstream.Drop(b);
  return false;
}

// 503 with Retry-After: no backend could serve the request (the last error says why).
Reply UnavailableReply(const std::string& last_error) {
  Reply r = ErrorReply(503, "no backend could serve the request: " + last_error,
                       "unavailable_error", "backend_unavailable");
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

}  // namespace

Task<int> Gateway::PickBackend(const std::string& affinity, std::vector<int>* tried, int attempt,
                               const std::string& last_error, RequestLog* log) {
  const int b = co_await PickEligible(affinity, tried, attempt);
  if (b < 0) co_return -1;
  const BackendInfo& info = pool_->info(b);
  if (attempt > 0) {
    ++retries_;
    LiveEventNow("retry", info.name, "after " + last_error, log->request_id);
  }
  log->attempts++;
  log->backend = info.name;
  co_return b;
}

Task<int> Gateway::PickEligible(const std::string& affinity, std::vector<int>* tried, int attempt) {
  const auto& r = config_.gateway.retry;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  beast::error_code ec;
  if (attempt > 0 && r.backoff_ms > 0) {
    // Exponential backoff with full jitter.
    const int64_t cap =
        std::min<int64_t>(r.max_backoff_ms, int64_t{r.backoff_ms} << std::min(attempt - 1, 20));
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::uniform_int_distribution<int64_t> d(0, std::max<int64_t>(0, cap));
    timer.expires_after(std::chrono::milliseconds(d(rng)));
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(r.unavailable_timeout_ms);
  for (;;) {
    int b = pool_->Pick(affinity, *tried);
    if (b < 0 && !tried->empty()) b = pool_->Pick(affinity, {});  // every other one is out
    if (b >= 0) {
      tried->push_back(b);
      co_return b;
    }
    if (Clock::now() >= deadline) co_return -1;
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

Task<ProxyResult> Gateway::ProxyPlain(ClientStream& s, const Request& req, const std::string& path,
                                      const std::string& upstream_path, const json* body,
                                      const std::string& affinity, const Headers& extra,
                                      const std::string& cache_key, RequestLog* log) {
  const auto& g = config_.gateway;
  ProxyResult out;
  std::vector<int> tried;
  std::string last_error = "no healthy backend";
  const std::string payload = body ? DumpJson(*body) : std::string();
  auto ex = co_await asio::this_coro::executor;
  for (int attempt = 0; attempt < g.retry.max_attempts; ++attempt) {
    const int b = co_await PickBackend(affinity, &tried, attempt, last_error, log);
    if (b < 0) break;
    const BackendInfo& info = pool_->info(b);
    const auto t0 = Clock::now();
    Upstream up(ex, upstream_.get(), b);
    const Request ureq =
        MakeUpstreamRequest(info, body ? http::verb::post : http::verb::get, upstream_path, payload,
                            log->request_id, false, config_.gateway.node_api_key);
    // While the node works, a client that goes away closes the upstream connection: the node
    // cancels the request, and this request's slots are released.
    bool client_gone = false;
    std::optional<http::response_parser<http::string_body>> p;
    beast::error_code ec;
    {
      auto watch = WatchForClose(s.socket(), [&up, &client_gone] {
        client_gone = true;
        up.stream.close();
      });
      ec =
          co_await Exchange(up, info, ureq, p, g.admission.request_timeout_ms, false, &client_gone);
    }
    if (client_gone) {
      pool_->Release(b, Outcome::kNeutral, -1, -1, "");
      log->status = 499;  // nginx's "client closed request", for the access log
      out.status = 499;
      out.keep_alive = false;
      co_return out;
    }
    if (ec) {
      if (ExchangeFailed(*pool_, *upstream_, b, info, ec, &last_error)) break;
      continue;
    }
    auto& res = p->get();
    up.reusable = res.keep_alive() && p->is_done();
    up.Close();  // the answer is read: the connection can serve another request now
    const int status = res.result_int();
    if (status == 401 || status == 403) {
      // The node refused the gateway's own credential: a misconfigured backend, not the
      // client's fault (clients are authenticated by the gateway).
      last_error = StrFormat("%s: HTTP %d (the node refused gateway.node_api_key)",
                             info.name.c_str(), status);
      pool_->Release(b, Outcome::kFailure, -1, -1, last_error);
      continue;
    }
    if (status >= 500) {
      last_error = StrFormat("%s: HTTP %d", info.name.c_str(), status);
      pool_->Release(b, status == 503 ? Outcome::kNeutral : Outcome::kFailure, -1, -1, last_error);
      if (status != 503) upstream_->Drop(b);
      continue;
    }
    const double latency = Seconds(t0);
    pool_->Release(b, Outcome::kSuccess, latency, latency, "");
    std::string rbody = std::move(res.body());
    std::string ctype(res[http::field::content_type]);
    if (ctype.empty()) ctype = "application/json";
    if (status == 200 && body) {
      auto parsed = ::strata::http::ParseJsonLimited(rbody);
      json j = parsed.ok() ? std::move(parsed).value() : json();
      if (j.is_object()) {
        if (path == "/api/inference") {
          j["node"] = info.name;
          rbody = DumpJson(j);
        }
        if (j.contains("usage") && j["usage"].is_object()) {
          log->prompt_tokens = j["usage"].value("prompt_tokens", int64_t{-1});
          log->completion_tokens = j["usage"].value("completion_tokens", int64_t{-1});
        } else {
          log->prompt_tokens = j.value("prompt_tokens", int64_t{-1});
          log->completion_tokens = j.value("completion_tokens", int64_t{-1});
        }
      }
    }
    Headers h = extra;
    h.emplace_back("X-Strata-Backend", info.name);
    out.status = status;
    out.content_type = ctype;
    co_await CachePut(cache_key, status, ctype, rbody);
    Reply reply{status, std::move(rbody), ctype, std::move(h)};
    out.keep_alive = co_await Send(s, req, std::move(reply), log);
    co_return out;
  }
  out.status = 503;
  Reply unavailable = UnavailableReply(last_error);
  out.keep_alive = co_await Send(s, req, std::move(unavailable), log);
  co_return out;
}

Task<ProxyResult> Gateway::ProxyStream(ClientStream& s, const Request& req, const std::string& path,
                                       const json& body, const std::string& affinity,
                                       const Headers& extra, const std::string& cache_key,
                                       RequestLog* log) {
  const auto& g = config_.gateway;
  ProxyResult out;
  out.content_type = "text/event-stream";
  StreamState st;
  st.chat = path == "/v1/chat/completions";
  st.strip_ids = body.value("return_token_ids", false) != true;
  // n > 1 choices interleave in one stream: a continuation would mix their ids, so a
  // mid-stream failure after text was forwarded ends the stream with an error instead.
  const bool multi =
      body.contains("n") && body["n"].is_number_integer() && body["n"].get<int64_t>() > 1;
  const bool text_prompt =
      !multi && !st.chat && body.contains("prompt") && body["prompt"].is_string();
  const std::string prompt = text_prompt ? body["prompt"].get<std::string>() : std::string();
  int64_t max_tokens = -1;
  for (const char* f : {"max_tokens", "max_completion_tokens"})
    if (body.contains(f) && body[f].is_number_integer()) max_tokens = body[f].get<int64_t>();

  // Billing needs the real usage: the node is always asked for it, and the usage chunk is
  // stripped from the stream when the client did not ask for it.
  json upstream = body;
  upstream["stream_options"]["include_usage"] = true;
  st.strip_usage = !ClientWantsStreamUsage(body);
  json cur = upstream;
  cur["return_token_ids"] = true;  // nodes that support continuation report token ids
  std::vector<int> tried;
  std::string last_error = "no healthy backend";
  bool header_sent = false, client_gone = false, ended = false;
  auto ex = co_await asio::this_coro::executor;
  std::array<char, 16384> tmp;

  for (int attempt = 0; attempt < g.retry.max_attempts && !ended;) {
    const int b = co_await PickBackend(affinity, &tried, attempt, last_error, log);
    ++attempt;
    if (b < 0) break;
    const BackendInfo& info = pool_->info(b);
    const auto t0 = Clock::now();
    Upstream up(ex, upstream_.get(), b);
    const Request ureq = MakeUpstreamRequest(info, http::verb::post, path, DumpJson(cur),
                                             log->request_id, true, g.node_api_key);
    const bool no_stop = false;
    std::optional<http::response_parser<http::buffer_body>> parser;
    beast::error_code ec =
        co_await Exchange(up, info, ureq, parser, g.admission.request_timeout_ms, true, &no_stop);
    if (ec) {
      if (ExchangeFailed(*pool_, *upstream_, b, info, ec, &last_error)) break;
      continue;
    }
    auto& p = *parser;
    const int status = p.get().result_int();
    if (status != 200) {
      // An error answer: read it whole (small), then retry (5xx) or pass it on (4xx).
      std::string ebody;
      while (!p.is_done() && !ec) {
        p.get().body().data = tmp.data();
        p.get().body().size = tmp.size();
        co_await http::async_read_some(up.stream, up.buf, p,
                                       asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        ebody.append(tmp.data(), tmp.size() - p.get().body().size);
        if (ebody.size() > (1u << 20)) break;
      }
      up.reusable = !ec && p.is_done() && p.get().keep_alive();
      up.Close();
      if (status >= 500 || status == 401 || status == 403 || ec) {  // 401/403: see ProxyPlain
        last_error = StrFormat("%s: HTTP %d", info.name.c_str(), status);
        pool_->Release(b, status == 503 ? Outcome::kNeutral : Outcome::kFailure, -1, -1,
                       last_error);
        continue;
      }
      pool_->Release(b, Outcome::kSuccess, Seconds(t0), -1, "");
      if (!header_sent) {
        out.status = status;
        Reply reply{status, std::move(ebody), "application/json", extra};
        out.keep_alive = co_await Send(s, req, std::move(reply), log);
        co_return out;
      }
      // A continuation refused: end the stream with an error event.
      const std::string tail = SseError("continuation refused: " + ebody);
      client_gone = !co_await s.WriteChunk(tail);
      ended = true;
      break;
    }
    if (!header_sent) {
      http::response<http::empty_body> res{http::status::ok, req.version()};
      res.set(http::field::server, "strata-gateway");
      res.set(http::field::content_type, "text/event-stream");
      res.set(http::field::cache_control, "no-cache");
      res.set("X-Request-Id", log->request_id);
      res.set("X-Strata-Backend", info.name);
      for (const auto& [k, v] : extra) res.set(k, v);
      res.keep_alive(req.keep_alive());
      res.chunked(true);
      http::response_serializer<http::empty_body> sr{res};
      log->status = 200;
      out.status = 200;
      header_sent = true;
      if (!co_await s.WriteHeader(sr)) {
        pool_->Release(b, Outcome::kNeutral, -1, -1, "");
        client_gone = true;
        break;
      }
    }
    // Pass the events through as they come.
    bool first = true, upstream_ok = false;
    ec = {};
    while (!ec) {
      if (p.is_done()) {
        upstream_ok = true;
        up.reusable = p.get().keep_alive();  // a complete answer: the connection can serve again
        up.Close();
        break;
      }
      p.get().body().data = tmp.data();
      p.get().body().size = tmp.size();
      up.stream.expires_after(std::chrono::milliseconds(g.admission.request_timeout_ms));
      co_await http::async_read_some(up.stream, up.buf, p,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      const size_t n = tmp.size() - p.get().body().size;
      if (n == 0) continue;
      if (first) {
        first = false;
        pool_->ObserveTtft(b, Seconds(t0));
        if (log->ttft_s < 0) log->ttft_s = Seconds(t0);
      }
      const std::string fwd = st.Feed(tmp.data(), n);
      if (fwd.empty()) continue;
      if (!cache_key.empty()) out.body += fwd;
      if (!co_await s.WriteChunk(fwd)) {
        client_gone = true;
        break;
      }
    }
    if (client_gone) {
      pool_->Release(b, Outcome::kNeutral, -1, -1, "");
      break;
    }
    if ((upstream_ok || st.done) && !st.retry_error) {
      pool_->Release(b, Outcome::kSuccess, Seconds(t0), -1, "");
      if (!st.done) {  // the node ended without [DONE]: close the stream properly
        const std::string tail = "data: [DONE]\n\n";
        if (!cache_key.empty()) out.body += tail;
        client_gone = !co_await s.WriteChunk(tail);
      }
      ended = true;
      break;
    }
    // The backend broke mid-stream, or ended the stream with a failure of its own.
    last_error = st.retry_error ? info.name + ": error event: " + st.retry_message
                                : info.name + ": stream broken: " + ec.message();
    pool_->Release(b, Outcome::kFailure, -1, -1, last_error);
    upstream_->Drop(b);
    ++failovers_;
    ++(st.retry_error ? failovers_error_event_ : failovers_stream_broken_);
    LiveEventNow("failover", info.name, last_error, log->request_id);
    st.retry_error = false;
    ++log->failovers;
    if (st.finished && !multi) {  // all text was delivered: only the end marker is missing
      const std::string tail = "data: [DONE]\n\n";
      if (!cache_key.empty()) out.body += tail;
      client_gone = !co_await s.WriteChunk(tail);
      ended = true;
      break;
    }
    // Continue on another backend from what the client already has.
    const int64_t done_tokens = st.generated();
    if (!multi && max_tokens >= 0 && done_tokens >= max_tokens) {
      json fin = st.chat
                     ? json{{"index", 0}, {"delta", json::object()}, {"finish_reason", "length"}}
                     : json{{"index", 0}, {"text", ""}, {"finish_reason", "length"}};
      json chunk = {{"id", st.id},
                    {"object", st.chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", st.created},
                    {"model", body.value("model", "")},
                    {"choices", json::array({fin})}};
      const std::string tail = "data: " + DumpJson(chunk) + "\n\ndata: [DONE]\n\n";
      if (!cache_key.empty()) out.body += tail;
      client_gone = !co_await s.WriteChunk(tail);
      ended = true;
      break;
    }
    cur = upstream;
    cur["return_token_ids"] = true;
    if (log->failovers > g.retry.max_attempts) {
      last_error = "too many failovers";
      break;
    }
    if (!st.token_ids.empty() && !multi) {
      cur["continue_token_ids"] = st.token_ids;  // exact: the node appends these ids
    } else if (done_tokens == 0 && (!multi || st.token_ids.empty())) {
      // Nothing generated was forwarded yet: the original request starts over.
    } else if (text_prompt) {
      cur["prompt"] = prompt + st.text;
    } else {
      const std::string tail =
          SseError("the backend failed mid-stream and this request cannot be continued elsewhere");
      client_gone = !co_await s.WriteChunk(tail);
      ended = true;
      break;
    }
    if (max_tokens >= 0) {
      cur.erase("max_completion_tokens");
      cur["max_tokens"] = max_tokens - done_tokens;
    }
    st.rewrite = true;
    st.generated_before = done_tokens;
    st.pending.clear();
    tried = {b};
    attempt = 0;  // a fresh retry budget for the continuation
  }
  if (!header_sent && !client_gone) {
    out.status = 503;
    Reply unavailable = UnavailableReply(last_error);
    out.keep_alive = co_await Send(s, req, std::move(unavailable), log);
    co_return out;
  }
  if (header_sent && !ended && !client_gone) {
    const std::string tail = SseError("no backend could continue the stream: " + last_error);
    client_gone = !co_await s.WriteChunk(tail);
  }
  if (ended && st.done && !st.error_event && log->failovers == 0 && !client_gone)
    co_await CachePut(cache_key, 200, out.content_type, out.body);
  if (!client_gone && header_sent) client_gone = !co_await s.WriteLastChunk();
  log->prompt_tokens = st.prompt_tokens;
  // Without a usage chunk (broken or cut stream), what was generated is counted.
  log->completion_tokens = st.completion_tokens >= 0 ? st.completion_tokens : st.generated();
  out.keep_alive = !client_gone && req.keep_alive();
  co_return out;
}

std::string Gateway::FailoverMetrics() const {
  return StrFormat(
      "# HELP strata_gateway_failovers_by_cause_total Streams continued on another backend, by "
      "cause: the node's connection broke (stream_broken) or the node ended the stream with an "
      "error event of its own (error_event: a failed pipeline stage, a stopping node).\n"
      "# TYPE strata_gateway_failovers_by_cause_total counter\n"
      "strata_gateway_failovers_by_cause_total{cause=\"stream_broken\"} %llu\n"
      "strata_gateway_failovers_by_cause_total{cause=\"error_event\"} %llu\n",
      static_cast<unsigned long long>(failovers_stream_broken_.load()),
      static_cast<unsigned long long>(failovers_error_event_.load()));
}

}  // namespace strata::gateway
