#include "gateway/accounting.h"

#include <algorithm>

namespace strata::gateway {

int64_t BilledTokens(const nlohmann::json& body, size_t body_bytes, int64_t prompt_tokens,
                     int64_t completion_tokens, int64_t estimate) {
  if (prompt_tokens < 0 && completion_tokens < 0) return estimate;
  int64_t continued = 0;
  if (body.is_object()) {
    auto it = body.find("continue_token_ids");
    if (it != body.end() && it->is_array()) continued = static_cast<int64_t>(it->size());
  }
  const int64_t prompt = prompt_tokens >= 0 ? prompt_tokens : static_cast<int64_t>(body_bytes / 4);
  return prompt + continued + std::max<int64_t>(0, completion_tokens);
}

bool ClientWantsStreamUsage(const nlohmann::json& body) {
  if (!body.is_object()) return false;
  auto so = body.find("stream_options");
  if (so == body.end() || !so->is_object()) return false;
  auto iu = so->find("include_usage");
  return iu != so->end() && iu->is_boolean() && iu->get<bool>();
}

}  // namespace strata::gateway
