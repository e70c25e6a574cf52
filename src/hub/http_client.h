// A small HTTP/1.1 client for downloads (Boost.Beast over TCP or TLS). GET only, streaming
// bodies to a sink, redirects followed (relative and absolute, cross-host; the Authorization
// header is dropped when a redirect leaves the original host), connect and idle timeouts.
// TLS peers are verified against the system CA store (OpenSSL's default paths, which honour
// SSL_CERT_FILE / SSL_CERT_DIR) with host name checks and SNI.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace strata::hub {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;
  std::string port;    // always set ("80"/"443" by default)
  std::string target;  // path and query, starts with '/'

  bool tls() const { return scheme == "https"; }
  std::string HostPort() const { return host + ":" + port; }
  std::string ToString() const;
  static Result<Url> Parse(const std::string& text);
  // Resolves a Location header (absolute URL, "//host/path", "/path" or "relative") against
  // this URL.
  Result<Url> Resolve(const std::string& location) const;
};

// Header names are lower-cased.
using Headers = std::map<std::string, std::string>;

struct HttpResponse {
  int status = 0;
  Headers headers;                 // of the final response
  std::vector<Headers> redirects;  // headers of each redirect response, in order
  std::string final_url;
  std::string body;  // only when no sink was given
  // The first value of `name` in the redirect chain, then in the final response.
  std::string FindHeader(const std::string& name) const;
};

struct HttpOptions {
  double connect_timeout_s = 30;
  double idle_timeout_s = 60;  // longest wait for any bytes while reading
  int max_redirects = 10;
  size_t max_body_in_memory = 64 << 20;
};

// Receives the body of a final 2xx response in chunks; an error aborts the transfer. It is
// called first with (nullptr, 0) once the final response's headers are known, so the caller
// can inspect `resp` (status, Content-Range) before bytes arrive.
using BodySink = std::function<Status(const HttpResponse& resp, const char* data, size_t n)>;

// GET `url` with `headers` (e.g. Authorization, Range). Without a sink the body is returned
// in HttpResponse::body (bounded by max_body_in_memory). Non-2xx final statuses are returned,
// not errors; network, TLS and timeout failures are errors.
Result<HttpResponse> HttpGet(const std::string& url, const Headers& headers,
                             const HttpOptions& options, const BodySink& sink = nullptr);

}  // namespace strata::hub
