#include "http/json_guard.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace strata::http {

using nlohmann::json;

namespace {

// Thrown by the parser callback to stop parsing at the first exceeded limit. The partial
// value is at most max_depth deep, and its destruction is not recursive anyway.
struct LimitExceeded {
  JsonRefusal why;
  std::string message;
};

}  // namespace

const char* JsonRefusalCode(JsonRefusal r) {
  switch (r) {
    case JsonRefusal::kNone: return "";
    case JsonRefusal::kInvalid: return "invalid_json";
    case JsonRefusal::kTooDeep: return "json_too_deep";
    case JsonRefusal::kTooManyValues: return "json_too_many_values";
    case JsonRefusal::kStringTooLong: return "json_string_too_long";
  }
  return "invalid_json";
}

Result<json> ParseJsonLimited(std::string_view body, const JsonLimits& lim, JsonRefusal* why) {
  if (why) *why = JsonRefusal::kNone;
  size_t values = 0;
  // `depth` is the number of containers already open around the event.
  // `depth` is the number of containers already open around the event. Containers are
  // reported at their start only (their "value" event is skipped by the parser).
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    using E = json::parse_event_t;
    if (ev == E::object_end || ev == E::array_end) return true;
    if ((ev == E::object_start || ev == E::array_start) && depth + 1 > lim.max_depth)
      throw LimitExceeded{JsonRefusal::kTooDeep,
                          StrFormat("JSON nesting is deeper than %d levels", lim.max_depth)};
    if (ev == E::key || ev == E::value) {
      if (lim.max_string_bytes > 0 && parsed.is_string() &&
          parsed.get_ref<const std::string&>().size() > lim.max_string_bytes)
        throw LimitExceeded{
            JsonRefusal::kStringTooLong,
            StrFormat("a JSON string is longer than %zu bytes", lim.max_string_bytes)};
    }
    if (++values > lim.max_values)
      throw LimitExceeded{
          JsonRefusal::kTooManyValues,
          StrFormat("the JSON body has more than %zu values and keys", lim.max_values)};
    return true;
  };
  try {
    json j = json::parse(body.begin(), body.end(), cb, /*allow_exceptions=*/true);
    return j;
  } catch (const LimitExceeded& e) {
    if (why) *why = e.why;
    return Status::Error(e.message);
  } catch (const json::exception& e) {
    if (why) *why = JsonRefusal::kInvalid;
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 3: ...".
    std::string msg = e.what();
    const size_t p = msg.find("] ");
    if (p != std::string::npos) msg = msg.substr(p + 2);
    // The message quotes the last token read, which can be most of the body.
    if (msg.size() > 240) msg = msg.substr(0, 240) + "...";
    return Status::Error("invalid JSON: " + msg);
  }
}

int JsonDepth(const json& j) {
  // Explicit stack of (value, depth of that value).
  std::vector<std::pair<const json*, int>> stack{{&j, 0}};
  int deepest = 0;
  while (!stack.empty()) {
    auto [v, d] = stack.back();
    stack.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    for (const json& c : *v) stack.emplace_back(&c, d + 1);
  }
  return deepest;
}

}  // namespace strata::http

// ---- Fields of a generation request ----

namespace strata::http {

using nlohmann::json;

namespace {

using Err = std::optional<FieldError>;

Err TypeError(const std::string& field, const std::string& message) {
  return FieldError{field, message, "invalid_type"};
}
Err ValueError(const std::string& field, const std::string& message) {
  return FieldError{field, message, "invalid_value"};
}

// The field's value, nullptr when absent or null.
const json* Field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer value (also a float with an integral value), saturated to int64.
std::optional<int64_t> AsInteger(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
               ? std::numeric_limits<int64_t>::max()
               : static_cast<int64_t>(u);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9e15)
      return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

Err CheckNumber(const json& obj, const char* key, double lo, double hi) {
  const json* v = Field(obj, key);
  if (!v) return {};
  if (!v->is_number()) return TypeError(key, StrFormat("'%s' must be a number", key));
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    return ValueError(key, StrFormat("'%s' must be between %g and %g (got %g)", key, lo, hi, d));
  return {};
}

Err CheckInteger(const json& obj, const char* key, int64_t lo, int64_t hi) {
  const json* v = Field(obj, key);
  if (!v) return {};
  const auto x = AsInteger(*v);
  if (!x) return TypeError(key, StrFormat("'%s' must be an integer", key));
  if (*x < lo || *x > hi)
    return ValueError(key, StrFormat("'%s' must be between %lld and %lld (got %lld)", key,
                                     static_cast<long long>(lo), static_cast<long long>(hi),
                                     static_cast<long long>(*x)));
  return {};
}

Err CheckBool(const json& obj, const char* key) {
  const json* v = Field(obj, key);
  if (v && !v->is_boolean()) return TypeError(key, StrFormat("'%s' must be a boolean", key));
  return {};
}

Err CheckString(const json& obj, const char* key) {
  const json* v = Field(obj, key);
  if (v && !v->is_string()) return TypeError(key, StrFormat("'%s' must be a string", key));
  return {};
}

// Token ids: non-negative 32-bit integers (the vocabulary bound is the node's to check).
Err CheckTokenIds(const json& arr, const char* key) {
  for (const json& t : arr) {
    if (!t.is_number_integer())
      return TypeError(key, StrFormat("'%s' must be an array of token ids", key));
    const int64_t id = t.is_number_unsigned() && t.get<uint64_t>() > (uint64_t{1} << 62)
                           ? int64_t{1} << 62
                           : t.get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      return ValueError(
          key, StrFormat("token id %lld in '%s' is out of range", static_cast<long long>(id), key));
  }
  return {};
}

Err CheckStop(const json& obj) {
  const json* v = Field(obj, "stop");
  if (!v || v->is_string()) return {};
  if (!v->is_array()) return TypeError("stop", "'stop' must be a string or an array of strings");
  if (v->size() > kMaxStopStrings)
    return ValueError(
        "stop", StrFormat("'stop' has %zu entries (at most %zu)", v->size(), kMaxStopStrings));
  for (const json& s : *v)
    if (!s.is_string()) return TypeError("stop", "'stop' must be a string or an array of strings");
  return {};
}

Err CheckMessages(const json& body) {
  const json* msgs = Field(body, "messages");
  if (!msgs || !msgs->is_array() || msgs->empty())
    return TypeError("messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    auto bad = [i](const char* what) {
      return TypeError("messages", StrFormat("messages[%zu]: %s", i, what));
    };
    if (!m.is_object()) return bad("each message must be an object");
    const json* role = Field(m, "role");
    if (role && !role->is_string()) return bad("'role' must be a string");
    if (!role || role->get_ref<const std::string&>().empty())
      return bad("each message needs a 'role'");
    const json* c = Field(m, "content");
    if (!c || c->is_string()) continue;
    if (!c->is_array()) return bad("'content' must be a string or an array of text parts");
    for (const json& part : *c) {
      const json* type = part.is_object() ? Field(part, "type") : nullptr;
      const json* text = part.is_object() ? Field(part, "text") : nullptr;
      if (!type || *type != "text" || !text || !text->is_string())
        return bad("'content' parts must be {\"type\": \"text\", \"text\": string}");
    }
  }
  return {};
}

// logprobs: chat's bool + top_logprobs 0..20, completions' int 0..5 (OpenAI's shapes).
Err CheckLogprobs(GenKind kind, const json& body) {
  if (kind == GenKind::kChat) {
    if (Err e = CheckBool(body, "logprobs")) return e;
    if (Err e = CheckInteger(body, "top_logprobs", 0, 20)) return e;
    const json* lp = Field(body, "logprobs");
    if (Field(body, "top_logprobs") && !(lp && lp->get<bool>()))
      return ValueError("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    return {};
  }
  if (kind == GenKind::kCompletions) {
    if (Err e = CheckInteger(body, "logprobs", 0, 5)) return e;
    if (Err e = CheckBool(body, "echo")) return e;
  }
  return {};
}

// Chat's tool and thinking fields (their values are checked by the node).
Err CheckChatTools(const json& body) {
  if (const json* t = Field(body, "tools"); t && !t->is_array())
    return TypeError("tools", "'tools' must be an array of function definitions");
  if (const json* c = Field(body, "tool_choice"); c && !c->is_string() && !c->is_object())
    return TypeError("tool_choice", "'tool_choice' must be a string or an object");
  if (Err e = CheckBool(body, "parallel_tool_calls")) return e;
  if (Err e = CheckBool(body, "think")) return e;
  if (const json* kw = Field(body, "chat_template_kwargs")) {
    if (!kw->is_object())
      return TypeError("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    if (Err e = CheckBool(*kw, "enable_thinking")) return e;
  }
  return {};
}

Err CheckPrompt(GenKind kind, const json& body) {
  const json* p = Field(body, "prompt");
  if (p && p->is_string()) {
    if (p->get_ref<const std::string&>().empty()) return ValueError("prompt", "No prompt provided");
    return {};
  }
  if (p && kind == GenKind::kCompletions && p->is_array()) {
    if (p->size() == 1 && (*p)[0].is_string()) {
      if ((*p)[0].get_ref<const std::string&>().empty())
        return ValueError("prompt", "No prompt provided");
      return {};
    }
    if (p->empty()) return ValueError("prompt", "No prompt provided");
    if (p->size() > kMaxTokenIds) return ValueError("prompt", "'prompt' has too many token ids");
    for (const json& t : *p)
      if (!t.is_number_integer())
        return TypeError("prompt",
                         "'prompt' must be a string, one string in an array, or token ids");
    return CheckTokenIds(*p, "prompt");
  }
  if (p) return TypeError("prompt", "'prompt' must be a string");
  return ValueError("prompt", "No prompt provided");
}

// Fields of the OpenAI endpoints (not read by /inference).
Err CheckStreamFields(const json& body) {
  if (Err e = CheckBool(body, "stream")) return e;
  if (const json* so = Field(body, "stream_options")) {
    if (!so->is_object()) return TypeError("stream_options", "'stream_options' must be an object");
    if (Err e = CheckBool(*so, "include_usage")) {
      e->field = "stream_options.include_usage";
      e->message = "'stream_options.include_usage' must be a boolean";
      return e;
    }
  }
  if (Err e = CheckBool(body, "return_token_ids")) return e;
  if (Err e = CheckBool(body, "return_tokens_as_token_ids")) return e;
  if (const json* b = Field(body, "best_of"); b && AsInteger(*b) != 1)
    return ValueError("best_of",
                      "'best_of' is not supported (only 1): use 'n' for several choices");
  if (const json* c = Field(body, "continue_token_ids")) {
    if (!c->is_array())
      return TypeError("continue_token_ids", "'continue_token_ids' must be an array of token ids");
    if (c->size() > kMaxTokenIds)
      return ValueError("continue_token_ids", "'continue_token_ids' has too many token ids");
    if (Err e = CheckTokenIds(*c, "continue_token_ids")) return e;
  }
  return {};
}

}  // namespace

std::optional<FieldError> CheckGenerationBody(GenKind kind, const json& body) {
  if (!body.is_object()) return TypeError("", "the request body must be a JSON object");
  if (Err e = CheckString(body, "model")) return e;
  if (Err e = CheckInteger(body, "n", 1, 1 << 20)) return e;
  if (const json* n = Field(body, "n"); n && *AsInteger(*n) > kMaxChoices)
    return ValueError("n", StrFormat("'n' must be 1..%d (got %lld)", kMaxChoices,
                                     static_cast<long long>(*AsInteger(*n))));
  if (Err e = CheckLogprobs(kind, body)) return e;
  if (kind == GenKind::kInference)
    if (Err e = CheckInteger(body, "max_length", 0, kMaxTokensLimit)) return e;
  for (const char* f : {"max_tokens", "max_completion_tokens"})
    if (Err e = CheckInteger(body, f, 0, kMaxTokensLimit)) return e;
  if (Err e = CheckNumber(body, "temperature", 0, 100)) return e;
  if (Err e = CheckNumber(body, "top_p", 0, 1)) return e;
  if (Err e = CheckNumber(body, "min_p", 0, 1)) return e;
  if (Err e = CheckNumber(body, "presence_penalty", -2, 2)) return e;
  if (Err e = CheckNumber(body, "frequency_penalty", -2, 2)) return e;
  if (Err e = CheckNumber(body, "repeat_penalty", 0, 100)) return e;
  if (Err e = CheckInteger(body, "top_k", -1, 1 << 30)) return e;
  if (Err e = CheckInteger(body, "seed", std::numeric_limits<int64_t>::min(),
                           std::numeric_limits<int64_t>::max()))
    return e;
  if (Err e = CheckStop(body)) return e;
  if (kind != GenKind::kInference)
    if (Err e = CheckStreamFields(body)) return e;
  if (kind == GenKind::kChat)
    if (Err e = CheckChatTools(body)) return e;
  return kind == GenKind::kChat ? CheckMessages(body) : CheckPrompt(kind, body);
}

}  // namespace strata::http
