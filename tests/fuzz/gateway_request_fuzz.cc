// libFuzzer target for the gateway's request-body handling (JSON in, decision out): the JSON
// limits, the field validation, and everything the gateway then does with an accepted body
// (null fields dropped, the typed reads of Handle and ProxyStream, the cache key, a copy and
// the serialisation sent upstream). The first input byte picks the path; the rest is the body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/cache.h"
#include "gateway/validate.h"
#include "http/json_guard.h"

namespace {

void Check(bool cond) {
  if (!cond) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nlohmann::json;
  if (size < 1) return 0;
  static const char* const kPaths[] = {"/api/inference", "/v1/completions", "/v1/chat/completions"};
  const std::string path = kPaths[data[0] % 3];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  strata::http::JsonRefusal why{};
  auto parsed = strata::http::ParseJsonLimited(body, {}, &why);
  if (!parsed.ok()) {
    Check(why != strata::http::JsonRefusal::kNone);
    Check(!parsed.status().message().empty());
    return 0;
  }
  json j = std::move(parsed).value();
  Check(strata::http::JsonDepth(j) <= strata::http::JsonLimits{}.max_depth);
  if (!j.is_object()) return 0;
  if (auto bad = strata::gateway::ValidateGatewayBody(path, j)) {
    Check(bad->status == 400 && !bad->message.empty() && !bad->code.empty());
    return 0;
  }
  strata::gateway::DropNullFields(&j);
  // The gateway's typed reads of an accepted body must not throw.
  const bool stream = path != "/api/inference" && j.value("stream", false) == true;
  const bool strip_ids = j.value("return_token_ids", false) != true;
  const std::string model = j.value("model", "");
  (void)stream;
  (void)strip_ids;
  (void)model;
  (void)strata::gateway::IsDeterministic(j, 0.8);
  Check(strata::gateway::CacheKey(path, j).size() == 64);
  json up = j;  // ProxyStream's copy, rewritten and sent upstream
  up["return_token_ids"] = true;
  const std::string wire = up.dump(-1, ' ', false, json::error_handler_t::replace);
  Check(!wire.empty());
  return 0;
}
