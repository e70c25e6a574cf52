// Validation of a generation request body at the gateway, before any of its fields is read:
// the same type and range rules as a node (src/http/json_guard.h), so a body the gateway
// forwards is one it can read itself without an exception, and a bad one is answered 400
// without a round trip to a node.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace strata::gateway {

struct ValidationError {
  int status = 400;
  std::string message;  // names the field
  std::string field;    // "" for the body as a whole
  std::string code;     // "invalid_type" / "invalid_value"
};

// `path` is the client's path: /api/inference, /v1/completions or /v1/chat/completions (any
// other path passes). `body` must already have passed the JSON depth limit.
std::optional<ValidationError> ValidateGatewayBody(std::string_view path,
                                                   const nlohmann::json& body);

// Removes the top-level fields whose value is null: a node treats them as absent, and the
// gateway's own typed reads (value("stream", false), ...) would throw on a null. Call after
// ValidateGatewayBody accepted the body.
void DropNullFields(nlohmann::json* body);

}  // namespace strata::gateway
