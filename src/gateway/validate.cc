#include "gateway/validate.h"

#include "http/json_guard.h"

namespace strata::gateway {

std::optional<ValidationError> ValidateGatewayBody(std::string_view path,
                                                   const nlohmann::json& body) {
  using strata::http::GenKind;
  GenKind kind;
  if (path == "/api/inference") {
    kind = GenKind::kInference;
  } else if (path == "/v1/completions") {
    kind = GenKind::kCompletions;
  } else if (path == "/v1/chat/completions") {
    kind = GenKind::kChat;
  } else {
    return std::nullopt;
  }
  auto e = strata::http::CheckGenerationBody(kind, body);
  if (!e) return std::nullopt;
  ValidationError v;
  v.message = std::move(e->message);
  v.field = std::move(e->field);
  v.code = std::move(e->code);
  return v;
}

void DropNullFields(nlohmann::json* body) {
  if (!body->is_object()) return;
  for (auto it = body->begin(); it != body->end();) {
    if (it->is_null()) it = body->erase(it);
    else ++it;
  }
}

}  // namespace strata::gateway
