// One OpenAI-compatible request of `strata loadtest` over plain HTTP/1.1 (Boost.Beast,
// coroutines): sends the JSON body, reads the reply (an SSE stream or one JSON document) and
// timestamps every chunk that carries generated text.
#pragma once

#include <string>
#include <utility>

#include <boost/asio/awaitable.hpp>

#include "base/status.h"
#include "loadtest/stats.h"

namespace strata::loadtest {

struct Target {
  std::string host, port;
  std::string path;  // request target, e.g. /v1/chat/completions
};

// "http://host:port[/prefix]" plus the endpoint path; a URL that already ends in
// /v1/completions or /v1/chat/completions is used as is. https is refused (not supported).
Result<Target> ParseTarget(const std::string& url, const std::string& endpoint_path);

struct CallOptions {
  std::string api_key;  // Authorization: Bearer, when set
  bool stream = true;
  double timeout_s = 300;
};

// Sends `body` and measures it. Never throws: failures are RequestResult.error kinds.
boost::asio::awaitable<RequestResult> Call(const Target& t, const std::string& body,
                                           const CallOptions& o);

// Parses one SSE "data:" payload: counts text, keeps the usage. Returns false when the payload
// is not JSON. Exposed for the unit tests.
bool ParseChunk(const std::string& payload, bool* has_text, int64_t* prompt_tokens,
                int64_t* completion_tokens, std::string* error);

}  // namespace strata::loadtest
