// Parsing of untrusted JSON request bodies with limits on nesting depth, number of values and
// string length. The limits are enforced while parsing: a body nested 100,000 levels deep is
// rejected at level max_depth + 1, before any deep value exists, so no later recursive use of
// a parsed value (copy, dump, comparison) can exhaust the stack.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace strata::http {

struct JsonLimits {
  // Containers (objects and arrays) nested in each other, the outermost one counting 1.
  int max_depth = 64;
  // Values of any kind plus object keys in the whole document.
  size_t max_values = size_t{1} << 20;
  // Bytes of one string value or object key (0: no limit beyond the body's size).
  size_t max_string_bytes = 0;
};

// Why a body was refused, for the "code" of an error envelope.
enum class JsonRefusal { kNone, kInvalid, kTooDeep, kTooManyValues, kStringTooLong };
// "invalid_json", "json_too_deep", "json_too_many_values", "json_string_too_long" ("" for kNone).
const char* JsonRefusalCode(JsonRefusal r);

// Parses `body` (strict JSON, valid UTF-8) under `lim`. The error message says what was wrong
// and where (byte offset); *why (optional) receives the kind of refusal.
Result<nlohmann::json> ParseJsonLimited(std::string_view body, const JsonLimits& lim = {},
                                        JsonRefusal* why = nullptr);

// The deepest container nesting of an already built value, without recursion (0 for a
// scalar). For values that did not come through ParseJsonLimited.
int JsonDepth(const nlohmann::json& j);

// ---- Fields of a generation request ----
// One rule set for both servers, so the gateway refuses exactly what a node would refuse
// (and never forwards a body it could not read itself).

enum class GenKind { kInference, kCompletions, kChat };  // /inference, /v1/completions, chat

// A refused field: its name, a message naming it, and "invalid_type" / "invalid_value".
struct FieldError {
  std::string field;
  std::string message;
  std::string code;
};

// Checks the type and range of every field a node reads from a generation request body (an
// object); absent and null fields pass, unknown fields are ignored. The prompt (messages for
// chat) must be present and non-empty.
std::optional<FieldError> CheckGenerationBody(GenKind kind, const nlohmann::json& body);

// Bounds shared by the check and the readers.
inline constexpr int64_t kMaxTokensLimit = int64_t{1} << 24;
inline constexpr size_t kMaxTokenIds = size_t{1} << 24;
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr int kMaxChoices = 8;  // most choices of one request (n)

}  // namespace strata::http
