#include "loadtest/client.h"

#include <chrono>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace strata::loadtest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string ErrorKind(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return "timeout";
  if (ec == asio::error::connection_refused) return "connect";
  if (ec == asio::error::connection_reset || ec == http::error::end_of_stream ||
      ec == asio::error::eof || ec == http::error::partial_message)
    return "disconnect";
  return "io";
}

// Text of a server's error body: the OpenAI "error.message" when there is one.
std::string ErrorText(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const json& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string())
      return e["message"].get<std::string>();
    if (e.is_string()) return e.get<std::string>();
  }
  return body.substr(0, 200);
}

// Splits SSE events out of the received bytes and timestamps the ones with text.
class SseReader {
 public:
  SseReader(RequestResult* r, Clock::time_point start) : r_(r), start_(start) {}

  void Feed(const char* data, size_t n, Clock::time_point now) {
    pending_.append(data, n);
    size_t pos;
    while ((pos = pending_.find('\n')) != std::string::npos) {
      std::string line = pending_.substr(0, pos);
      pending_.erase(0, pos + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("data:", 0) != 0) continue;
      std::string payload = line.substr(5);
      if (!payload.empty() && payload[0] == ' ') payload.erase(0, 1);
      OnData(payload, now);
    }
  }
  bool done() const { return done_; }
  const std::string& error() const { return error_; }

 private:
  void OnData(const std::string& payload, Clock::time_point now) {
    if (payload == "[DONE]") {
      done_ = true;
      return;
    }
    bool text = false;
    std::string err;
    if (!ParseChunk(payload, &text, &r_->prompt_tokens, &r_->output_tokens, &err)) return;
    if (!err.empty() && error_.empty()) error_ = err;
    if (!text) return;
    const double t = std::chrono::duration<double>(now - start_).count();
    if (r_->chunks == 0) r_->ttft = t;
    else r_->itl.push_back(t - last_);
    last_ = t;
    ++r_->chunks;
  }

  RequestResult* r_;
  Clock::time_point start_;
  std::string pending_, error_;
  double last_ = 0;
  bool done_ = false;
};

asio::awaitable<void> Exchange(const Target& t, const std::string& body, const CallOptions& o,
                               RequestResult* r, beast::error_code& ec) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(t.host, t.port,
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    r->error = "resolve";
    co_return;
  }
  beast::tcp_stream stream(ex);
  stream.expires_at(deadline);
  co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  http::request<http::string_body> req{http::verb::post, t.path, 11};
  req.set(http::field::host, t.host + ":" + t.port);
  req.set(http::field::user_agent, "strata-loadtest");
  req.set(http::field::content_type, "application/json");
  if (o.stream) req.set(http::field::accept, "text/event-stream");
  if (!o.api_key.empty()) req.set(http::field::authorization, "Bearer " + o.api_key);
  req.body() = body;
  req.prepare_payload();
  co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;

  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> p;
  p.body_limit(std::numeric_limits<std::uint64_t>::max());
  co_await http::async_read_header(stream, buf, p, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  const int status = p.get().result_int();
  SseReader sse(r, start);
  std::string whole;  // the body of a non-streamed or failed reply
  const bool sse_reply = o.stream && status == 200;
  char tmp[16384];
  while (!p.is_done()) {
    p.get().body().data = tmp;
    p.get().body().size = sizeof tmp;
    co_await http::async_read_some(stream, buf, p, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return;
    const size_t got = sizeof tmp - p.get().body().size;
    if (sse_reply) sse.Feed(tmp, got, Clock::now());
    else whole.append(tmp, got);
  }
  r->latency = std::chrono::duration<double>(Clock::now() - start).count();
  if (status != 200) {
    r->error = "http_" + std::to_string(status);
    r->error_detail = ErrorText(whole);
    co_return;
  }
  if (!sse_reply) {
    bool text = false;
    std::string err;
    if (!ParseChunk(whole, &text, &r->prompt_tokens, &r->output_tokens, &err) || !err.empty()) {
      r->error = "bad_response";
      r->error_detail = err.empty() ? whole.substr(0, 200) : err;
      co_return;
    }
    r->ok = true;
    co_return;
  }
  if (!sse.error().empty()) {
    r->error = "stream_error";
    r->error_detail = sse.error();
  } else if (!sse.done()) {
    r->error = "truncated";
    r->error_detail = "stream ended without [DONE]";
  } else {
    r->ok = true;
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  ec = {};
}

}  // namespace

Result<Target> ParseTarget(const std::string& url, const std::string& endpoint_path) {
  std::string rest = url;
  if (rest.rfind("https://", 0) == 0)
    return Status::Error("https URLs are not supported by strata loadtest: use http://");
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  Target t;
  const size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : rest.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (hostport.empty()) return Errorf("bad URL '%s': no host", url.c_str());
  if (hostport[0] == '[') {  // [v6]:port
    const size_t close = hostport.find(']');
    if (close == std::string::npos) return Errorf("bad URL '%s'", url.c_str());
    t.host = hostport.substr(1, close - 1);
    t.port = close + 1 < hostport.size() && hostport[close + 1] == ':' ? hostport.substr(close + 2)
                                                                       : "80";
  } else {
    const size_t colon = hostport.rfind(':');
    t.host = hostport.substr(0, colon);
    t.port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  }
  if (t.port.empty() || t.port.find_first_not_of("0123456789") != std::string::npos)
    return Errorf("bad URL '%s': port", url.c_str());
  if (EndsWith(prefix, "/v1/completions") || EndsWith(prefix, "/v1/chat/completions"))
    t.path = prefix;
  else if (EndsWith(prefix, "/v1")) t.path = prefix + endpoint_path.substr(3);
  else t.path = prefix + endpoint_path;
  return t;
}

bool ParseChunk(const std::string& payload, bool* has_text, int64_t* prompt_tokens,
                int64_t* completion_tokens, std::string* error) {
  const json j = json::parse(payload, nullptr, false);
  if (!j.is_object()) return false;
  if (j.contains("error")) {
    const json& e = j["error"];
    *error = e.is_object() && e.contains("message") ? e["message"].dump() : e.dump();
    return true;
  }
  if (const auto u = j.find("usage"); u != j.end() && u->is_object()) {
    if (u->contains("prompt_tokens") && (*u)["prompt_tokens"].is_number_integer())
      *prompt_tokens = (*u)["prompt_tokens"].get<int64_t>();
    if (u->contains("completion_tokens") && (*u)["completion_tokens"].is_number_integer())
      *completion_tokens = (*u)["completion_tokens"].get<int64_t>();
  }
  *has_text = false;
  const auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array()) return true;
  auto nonempty = [](const json& o, const char* k) {
    const auto it = o.find(k);
    return it != o.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
  };
  for (const json& c : *choices) {
    if (!c.is_object()) continue;
    if (nonempty(c, "text")) *has_text = true;
    for (const char* part : {"delta", "message"}) {
      const auto d = c.find(part);
      if (d != c.end() && d->is_object() &&
          (nonempty(*d, "content") || nonempty(*d, "reasoning_content") ||
           nonempty(*d, "reasoning")))
        *has_text = true;
    }
  }
  return true;
}

asio::awaitable<RequestResult> Call(const Target& t, const std::string& body,
                                    const CallOptions& o) {
  RequestResult r;
  beast::error_code ec;
  try {
    co_await Exchange(t, body, o, &r, ec);
  } catch (const std::exception& e) {
    r.ok = false;
    r.error = "io";
    r.error_detail = e.what();
    co_return r;
  }
  if (ec && !r.ok && r.error.empty()) {
    r.error = ErrorKind(ec);
    r.error_detail = ec.message();
  }
  co_return r;
}

}  // namespace strata::loadtest
