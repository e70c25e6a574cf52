// HTTP client on Boost.Beast: one connection per request (Connection: close), C++20
// coroutines on a private io_context so that every wait has a deadline.
#include "hub/http_client.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <limits>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace strata::hub {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::chrono::milliseconds Ms(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(0.001, s) * 1000));
}

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

struct Hop {
  Url url;
  const Headers* headers;
  const HttpOptions* opt;
  const BodySink* sink;
  HttpResponse* resp;  // status/headers of this hop are written here
  Status status;
};

std::string Describe(const Hop& h, const boost::system::error_code& ec, const char* what) {
  if (ec == beast::error::timeout || ec == asio::error::timed_out)
    return StrFormat("%s %s: timed out (connect timeout %.0f s, idle timeout %.0f s)", what,
                     h.url.HostPort().c_str(), h.opt->connect_timeout_s, h.opt->idle_timeout_s);
  return StrFormat("%s %s: %s", what, h.url.HostPort().c_str(), ec.message().c_str());
}

// Sends the request and reads the response of one hop on an open stream.
template <class Stream>
asio::awaitable<void> Exchange(Stream& s, beast::tcp_stream& tcp, Hop& h) {
  boost::system::error_code ec;
  auto tok = asio::redirect_error(asio::use_awaitable, ec);
  http::request<http::empty_body> req{http::verb::get, h.url.target, 11};
  const bool default_port = h.url.port == (h.url.tls() ? "443" : "80");
  req.set(http::field::host, default_port ? h.url.host : h.url.HostPort());
  req.set(http::field::user_agent, "strata/0.1");
  req.set(http::field::accept_encoding, "identity");
  req.set(http::field::connection, "close");
  for (const auto& [k, v] : *h.headers) req.set(k, v);
  tcp.expires_after(Ms(h.opt->idle_timeout_s));
  co_await http::async_write(s, req, tok);
  if (ec) {
    h.status = Status::Error(Describe(h, ec, "sending to"));
    co_return;
  }

  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> p;
  p.body_limit(std::numeric_limits<std::uint64_t>::max());
  tcp.expires_after(Ms(h.opt->idle_timeout_s));
  co_await http::async_read_header(s, buf, p, tok);
  if (ec) {
    h.status = Status::Error(Describe(h, ec, "reading the response of"));
    co_return;
  }
  HttpResponse& r = *h.resp;
  r.status = static_cast<int>(p.get().result_int());
  r.headers.clear();
  for (const auto& f : p.get()) {
    std::string k = Lower(std::string(f.name_string()));
    if (!r.headers.count(k)) r.headers[k] = std::string(f.value());
  }
  if (IsRedirect(r.status) && r.headers.count("location")) co_return;
  const bool to_sink = *h.sink && r.status >= 200 && r.status < 300;
  if (to_sink) {
    h.status = (*h.sink)(r, nullptr, 0);
    if (!h.status.ok()) co_return;
  }
  std::vector<char> chunk(1 << 16);
  while (!p.is_done()) {
    p.get().body().data = chunk.data();
    p.get().body().size = chunk.size();
    tcp.expires_after(Ms(h.opt->idle_timeout_s));
    co_await http::async_read(s, buf, p, tok);
    if (ec == http::error::need_buffer) ec = {};
    const size_t got = chunk.size() - p.get().body().size;
    if (got > 0) {
      if (to_sink) {
        h.status = (*h.sink)(r, chunk.data(), got);
        if (!h.status.ok()) co_return;
      } else if (r.body.size() + got <= h.opt->max_body_in_memory) {
        r.body.append(chunk.data(), got);
      } else {
        h.status = Status::Error("response body from " + h.url.HostPort() + " too large");
        co_return;
      }
    }
    if (ec) {
      h.status = Status::Error(Describe(h, ec, "reading the body from"));
      co_return;
    }
  }
}

asio::awaitable<void> RunHop(Hop& h, ssl::context* tls) {
  boost::system::error_code ec;
  auto tok = asio::redirect_error(asio::use_awaitable, ec);
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  beast::tcp_stream tcp(ex);
  tcp.expires_after(Ms(h.opt->connect_timeout_s));
  auto eps = co_await resolver.async_resolve(h.url.host, h.url.port, tok);
  if (ec) {
    h.status = Status::Error(Describe(h, ec, "resolving"));
    co_return;
  }
  co_await tcp.async_connect(eps, tok);
  if (ec) {
    h.status = Status::Error(Describe(h, ec, "connecting to"));
    co_return;
  }
  if (!h.url.tls()) {
    co_await Exchange(tcp, tcp, h);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream&> s(tcp, *tls);
  if (!SSL_set_tlsext_host_name(s.native_handle(), h.url.host.c_str())) {
    h.status = Status::Error("TLS: cannot set the server name " + h.url.host);
    co_return;
  }
  s.set_verify_mode(ssl::verify_peer);
  s.set_verify_callback(ssl::host_name_verification(h.url.host));
  tcp.expires_after(Ms(h.opt->connect_timeout_s));
  co_await s.async_handshake(ssl::stream_base::client, tok);
  if (ec) {
    h.status = Status::Error(Describe(h, ec, "TLS handshake with"));
    co_return;
  }
  co_await Exchange(s, tcp, h);
}

Status RunOneHop(Hop& h, ssl::context* tls) {
  asio::io_context ioc;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        try {
          co_await RunHop(h, tls);
        } catch (const std::exception& e) {
          h.status = Status::Error(std::string("HTTP ") + h.url.HostPort() + ": " + e.what());
        }
      },
      asio::detached);
  ioc.run();
  return h.status;
}

Result<std::unique_ptr<ssl::context>> ClientTls() {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_default_verify_paths(ec);  // honours SSL_CERT_FILE and SSL_CERT_DIR
  if (ec) return Status::Error("TLS: cannot load the system CA store: " + ec.message());
  if (const char* f = std::getenv("SSL_CERT_FILE"); f && *f) {
    ctx->load_verify_file(f, ec);
    if (ec)
      return Status::Error(std::string("TLS: cannot load SSL_CERT_FILE ") + f + ": " +
                           ec.message());
  }
  return ctx;
}

}  // namespace

std::string Url::ToString() const {
  const bool def = port == (tls() ? "443" : "80");
  return scheme + "://" + (def ? host : HostPort()) + target;
}

Result<Url> Url::Parse(const std::string& text) {
  Url u;
  const size_t sep = text.find("://");
  if (sep == std::string::npos) return Status::Error("not a URL: " + text);
  u.scheme = Lower(text.substr(0, sep));
  if (u.scheme != "http" && u.scheme != "https")
    return Status::Error("unsupported URL scheme '" + u.scheme + "' (http and https only)");
  const size_t start = sep + 3;
  const size_t slash = text.find_first_of("/?#", start);
  std::string authority =
      text.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
  if (authority.find('@') != std::string::npos)
    return Status::Error("URLs with user info are not supported: " + text);
  u.target = slash == std::string::npos ? "/" : text.substr(slash);
  if (u.target[0] != '/') u.target = "/" + u.target;
  if (const size_t hash = u.target.find('#'); hash != std::string::npos) u.target.resize(hash);
  u.port = u.tls() ? "443" : "80";
  if (!authority.empty() && authority[0] == '[') {  // [v6]:port
    const size_t close = authority.find(']');
    if (close == std::string::npos) return Status::Error("bad IPv6 host in URL: " + text);
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      u.port = authority.substr(close + 2);
  } else if (const size_t colon = authority.rfind(':'); colon != std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
  }
  if (u.host.empty()) return Status::Error("URL without a host: " + text);
  if (u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos)
    return Status::Error("bad port in URL: " + text);
  return u;
}

Result<Url> Url::Resolve(const std::string& location) const {
  if (location.find("://") != std::string::npos) return Parse(location);
  if (location.rfind("//", 0) == 0) return Parse(scheme + ":" + location);
  Url u = *this;
  if (!location.empty() && location[0] == '/') {
    u.target = location;
  } else {
    std::string base = target.substr(0, target.find('?'));
    base = base.substr(0, base.rfind('/') + 1);
    u.target = base + location;
  }
  return u;
}

std::string HttpResponse::FindHeader(const std::string& name) const {
  for (const Headers& h : redirects)
    if (auto it = h.find(name); it != h.end()) return it->second;
  if (auto it = headers.find(name); it != headers.end()) return it->second;
  return std::string();
}

Result<HttpResponse> HttpGet(const std::string& url, const Headers& headers,
                             const HttpOptions& options, const BodySink& sink) {
  STRATA_ASSIGN_OR_RETURN(Url u, Url::Parse(url));
  const std::string origin = u.scheme + "://" + u.HostPort();
  std::unique_ptr<ssl::context> tls;
  Headers h = headers;
  HttpResponse resp;
  for (int hop = 0;; ++hop) {
    if (u.tls() && !tls) {
      STRATA_ASSIGN_OR_RETURN(tls, ClientTls());
    }
    Hop one{u, &h, &options, &sink, &resp, Status::Ok()};
    STRATA_RETURN_IF_ERROR(RunOneHop(one, tls.get()));
    resp.final_url = u.ToString();
    if (!IsRedirect(resp.status) || !resp.headers.count("location")) return resp;
    if (hop >= options.max_redirects)
      return Status::Error(StrFormat("too many redirects (more than %d) from %s",
                                     options.max_redirects, url.c_str()));
    STRATA_ASSIGN_OR_RETURN(Url next, u.Resolve(resp.headers["location"]));
    // Credentials go only to the host they were meant for (as huggingface_hub and curl do).
    if (next.scheme + "://" + next.HostPort() != origin) h.erase("Authorization");
    resp.redirects.push_back(resp.headers);
    u = next;
  }
}

}  // namespace strata::hub
