// libFuzzer target for the node's request-body parsing and validation (JSON in, decision
// out). The first input byte picks the endpoint (/inference, /v1/completions, chat); the rest
// is the body. A body is either refused with a 400 and a message, or accepted into a
// GenRequest whose fields respect the documented bounds. Accepted requests are also turned
// into the response shapes the node would send (serialisation must not throw).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "http/json_guard.h"
#include "node/api.h"

namespace {

void Check(bool cond) {
  if (!cond) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata::node;
  if (size < 1) return 0;
  const Endpoint ep = data[0] % 3 == 0   ? Endpoint::kInference
                      : data[0] % 3 == 1 ? Endpoint::kCompletions
                                         : Endpoint::kChat;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  GenRequest g;
  ApiError err;
  if (!ParseGenRequest(ep, body, &g, &err)) {
    Check(err.status == 400);
    Check(!err.message.empty());
    Check(err.type == "invalid_request_error");
    Check(!ErrorJson(err).empty());
    return 0;
  }
  // Accepted: the bounds the rest of the node relies on.
  Check(g.endpoint == ep);
  Check(g.max_tokens >= -1 && g.max_tokens <= strata::http::kMaxTokensLimit);
  Check(g.sampler.temperature >= 0 && g.sampler.temperature <= 100);
  Check(g.sampler.top_p >= 0 && g.sampler.top_p <= 1);
  Check(g.sampler.min_p >= 0 && g.sampler.min_p <= 1);
  Check(g.sampler.top_k >= -1);
  Check(g.stop.size() <= strata::http::kMaxStopStrings);
  for (int32_t id : g.continue_ids) Check(id >= 0);
  for (int32_t id : g.prompt_ids) Check(id >= 0);
  if (ep == Endpoint::kChat) {
    Check(!g.messages.empty());
    for (const auto& m : g.messages) Check(!m.role.empty());
  } else {
    Check(g.prompt_is_ids ? !g.prompt_ids.empty() : !g.prompt.empty());
  }
  if (ep == Endpoint::kInference) Check(!g.stream && g.continue_ids.empty());
  // The response shapes with the request's text in them.
  const Usage u{static_cast<int>(g.prompt.size()), 1};
  std::string out = Dump(CompletionResponse("id", 0, g.model, g.prompt, "stop", u));
  out += Dump(ChatResponse("id", 0, g.model, "", g.prompt, "length", u));
  out += SseEvent(ChatChunk("id", 0, g.model, {{"content", g.prompt}}, "", g.include_usage));
  Check(!out.empty());
  return 0;
}
