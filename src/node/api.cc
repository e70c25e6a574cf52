#include "node/api.h"

#include <cmath>
#include <limits>

#include "http/json_guard.h"

namespace strata::node {

using nlohmann::json;

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ErrorJson(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}};
  err["code"] = e.code.empty() ? json(nullptr) : json(e.code);
  return Dump(json{{"error", err}});
}

ApiError BadRequest(std::string message) {
  ApiError e;
  e.status = 400;
  e.message = std::move(message);
  e.type = "invalid_request_error";
  return e;
}

namespace {

// Field readers: absent or null leaves *out unchanged and succeeds.
const json* Field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

bool GetNumber(const json& obj, const char* key, double lo, double hi, float* out,
               ApiError* err) {
  const json* v = Field(obj, key);
  if (!v) return true;
  if (!v->is_number()) {
    *err = BadRequest(StrFormat("'%s' must be a number", key));
    return false;
  }
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    *err = BadRequest(StrFormat("'%s' must be between %g and %g (got %g)", key, lo, hi, d));
    return false;
  }
  *out = static_cast<float>(d);
  return true;
}

bool GetInt(const json& obj, const char* key, int64_t lo, int64_t hi, int64_t* out,
            ApiError* err) {
  const json* v = Field(obj, key);
  if (!v) return true;
  int64_t x = 0;
  if (v->is_number_integer()) {
    x = v->get<int64_t>();
  } else if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    x = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
            ? std::numeric_limits<int64_t>::max()
            : static_cast<int64_t>(u);
  } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
             std::fabs(v->get<double>()) < 9e15) {
    x = static_cast<int64_t>(v->get<double>());
  } else {
    *err = BadRequest(StrFormat("'%s' must be an integer", key));
    return false;
  }
  if (x < lo || x > hi) {
    *err = BadRequest(StrFormat("'%s' must be between %lld and %lld (got %lld)", key,
                                static_cast<long long>(lo), static_cast<long long>(hi),
                                static_cast<long long>(x)));
    return false;
  }
  *out = x;
  return true;
}

bool GetBool(const json& obj, const char* key, bool* out, ApiError* err) {
  const json* v = Field(obj, key);
  if (!v) return true;
  if (!v->is_boolean()) {
    *err = BadRequest(StrFormat("'%s' must be a boolean", key));
    return false;
  }
  *out = v->get<bool>();
  return true;
}

bool GetString(const json& obj, const char* key, std::string* out, ApiError* err) {
  const json* v = Field(obj, key);
  if (!v) return true;
  if (!v->is_string()) {
    *err = BadRequest(StrFormat("'%s' must be a string", key));
    return false;
  }
  *out = v->get<std::string>();
  return true;
}

// Chat content: a string, or an array of {"type": "text", "text": ...} parts.
bool MessageContent(const json& v, std::string* out, ApiError* err) {
  if (v.is_null()) return true;
  if (v.is_string()) {
    *out = v.get<std::string>();
    return true;
  }
  if (v.is_array()) {
    for (const json& part : v) {
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
          !part.contains("text") || !part["text"].is_string()) {
        *err = BadRequest("message content parts must be {\"type\": \"text\", \"text\": string}");
        return false;
      }
      *out += part["text"].get<std::string>();
    }
    return true;
  }
  *err = BadRequest("'content' must be a string or an array of text parts");
  return false;
}

bool ParseStop(const json& obj, std::vector<std::string>* out, ApiError* err) {
  const json* v = Field(obj, "stop");
  if (!v) return true;
  if (v->is_string()) {
    if (!v->get<std::string>().empty()) out->push_back(v->get<std::string>());
    return true;
  }
  if (v->is_array()) {
    if (v->size() > 16) {
      *err = BadRequest(StrFormat("'stop' has %zu entries (at most 16)", v->size()));
      return false;
    }
    for (const json& s : *v) {
      if (!s.is_string()) {
        *err = BadRequest("'stop' must be a string or an array of strings");
        return false;
      }
      if (!s.get<std::string>().empty()) out->push_back(s.get<std::string>());
    }
    return true;
  }
  *err = BadRequest("'stop' must be a string or an array of strings");
  return false;
}

}  // namespace

bool ParseGenRequest(Endpoint endpoint, std::string_view body, GenRequest* out, ApiError* err) {
  GenRequest r;
  r.endpoint = endpoint;
  // Depth and size limits while parsing (nothing recursive touches a deeper value); nlohmann
  // rejects invalid UTF-8 inside strings as a parse error.
  http::JsonRefusal why{};
  auto parsed = http::ParseJsonLimited(body, http::JsonLimits{}, &why);
  if (!parsed.ok()) {
    *err = BadRequest(why == http::JsonRefusal::kInvalid
                          ? "the request body is not valid JSON (or not valid UTF-8): " +
                                parsed.status().message()
                          : "request body: " + parsed.status().message());
    err->code = http::JsonRefusalCode(why);
    return false;
  }
  json j = std::move(parsed).value();
  if (!j.is_object()) {
    *err = BadRequest("the request body must be a JSON object");
    return false;
  }
  // Every field's type and range, by the rules the gateway applies too.
  const http::GenKind kind = endpoint == Endpoint::kInference     ? http::GenKind::kInference
                             : endpoint == Endpoint::kCompletions ? http::GenKind::kCompletions
                                                                  : http::GenKind::kChat;
  if (auto bad = http::CheckGenerationBody(kind, j)) {
    *err = BadRequest(bad->message);
    err->code = bad->code;
    return false;
  }
  try {
    if (!GetString(j, "model", &r.model, err)) return false;
    int64_t n = 1;
    if (!GetInt(j, "n", 1, 1 << 20, &n, err)) return false;
    if (n != 1) {
      *err = BadRequest(StrFormat("'n' must be 1: this server returns one choice (got %lld)",
                                  static_cast<long long>(n)));
      return false;
    }
    int64_t max_tokens = r.max_tokens;
    const int64_t kMaxTok = 1 << 24;
    if (endpoint == Endpoint::kInference) {
      max_tokens = 256;
      if (!GetInt(j, "max_length", 0, kMaxTok, &max_tokens, err)) return false;
    }
    if (!GetInt(j, "max_tokens", 0, kMaxTok, &max_tokens, err)) return false;
    if (!GetInt(j, "max_completion_tokens", 0, kMaxTok, &max_tokens, err)) return false;
    r.max_tokens = static_cast<int>(max_tokens);

    SamplerParams& s = r.sampler;
    if (!GetNumber(j, "temperature", 0, 100, &s.temperature, err)) return false;
    if (!GetNumber(j, "top_p", 0, 1, &s.top_p, err)) return false;
    if (!GetNumber(j, "min_p", 0, 1, &s.min_p, err)) return false;
    if (!GetNumber(j, "presence_penalty", -2, 2, &s.presence_penalty, err)) return false;
    if (!GetNumber(j, "frequency_penalty", -2, 2, &s.frequency_penalty, err)) return false;
    if (!GetNumber(j, "repeat_penalty", 0, 100, &s.repeat_penalty, err)) return false;
    int64_t top_k = s.top_k;
    if (!GetInt(j, "top_k", -1, 1 << 30, &top_k, err)) return false;
    s.top_k = static_cast<int32_t>(top_k);
    if (Field(j, "seed")) {
      int64_t seed = 0;
      if (!GetInt(j, "seed", std::numeric_limits<int64_t>::min(),
                  std::numeric_limits<int64_t>::max(), &seed, err))
        return false;
      s.seed = static_cast<uint64_t>(seed);
      r.seed_given = true;
    }
    if (!ParseStop(j, &r.stop, err)) return false;
    if (endpoint != Endpoint::kInference) {
      if (!GetBool(j, "stream", &r.stream, err)) return false;
      if (const json* so = Field(j, "stream_options")) {
        if (!so->is_object()) {
          *err = BadRequest("'stream_options' must be an object");
          return false;
        }
        if (!GetBool(*so, "include_usage", &r.include_usage, err)) return false;
      }
      if (!GetBool(j, "return_token_ids", &r.return_token_ids, err)) return false;
      if (const json* c = Field(j, "continue_token_ids")) {
        if (!c->is_array() || c->size() > (1u << 24)) {
          *err = BadRequest("'continue_token_ids' must be an array of token ids");
          return false;
        }
        for (const json& t : *c) {
          if (!t.is_number_integer() && !t.is_number_unsigned()) {
            *err = BadRequest("'continue_token_ids' must be an array of token ids");
            return false;
          }
          const int64_t id = t.get<int64_t>();
          if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
            *err = BadRequest(StrFormat("token id %lld in 'continue_token_ids' is out of range",
                                        static_cast<long long>(id)));
            return false;
          }
          r.continue_ids.push_back(static_cast<int32_t>(id));
        }
      }
    }

    if (endpoint == Endpoint::kChat) {
      const json* msgs = Field(j, "messages");
      if (!msgs || !msgs->is_array() || msgs->empty()) {
        *err = BadRequest("'messages' must be a non-empty array");
        return false;
      }
      for (const json& m : *msgs) {
        if (!m.is_object()) {
          *err = BadRequest("each message must be an object");
          return false;
        }
        ChatMessage cm;
        if (!GetString(m, "role", &cm.role, err)) return false;
        if (cm.role.empty()) {
          *err = BadRequest("each message needs a 'role'");
          return false;
        }
        if (m.contains("content") && !MessageContent(m["content"], &cm.content, err)) return false;
        r.messages.push_back(std::move(cm));
      }
    } else {
      const json* p = Field(j, "prompt");
      if (p && p->is_string()) {
        r.prompt = p->get<std::string>();
      } else if (p && endpoint == Endpoint::kCompletions && p->is_array()) {
        if (p->size() == 1 && (*p)[0].is_string()) {
          r.prompt = (*p)[0].get<std::string>();
        } else {
          for (const json& t : *p) {
            if (!t.is_number_integer() && !t.is_number_unsigned()) {
              *err = BadRequest("'prompt' must be a string, one string in an array, or token ids");
              return false;
            }
            const int64_t id = t.get<int64_t>();
            if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
              *err = BadRequest(StrFormat("token id %lld in 'prompt' is out of range",
                                          static_cast<long long>(id)));
              return false;
            }
            r.prompt_ids.push_back(static_cast<int32_t>(id));
          }
          r.prompt_is_ids = true;
        }
      } else if (p) {
        *err = BadRequest("'prompt' must be a string");
        return false;
      }
      if (r.prompt_is_ids ? r.prompt_ids.empty() : r.prompt.empty()) {
        *err = BadRequest("No prompt provided");
        return false;
      }
    }
  } catch (const std::exception& e) {  // nlohmann type errors: report, never escape
    *err = BadRequest(std::string("invalid request: ") + e.what());
    return false;
  }
  *out = std::move(r);
  return true;
}

// ---- Reasoning split ----

namespace {
constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// Length of the longest suffix of s that is a proper prefix of tag.
size_t PartialTag(std::string_view s, std::string_view tag) {
  for (size_t len = std::min(s.size(), tag.size() - 1); len > 0; --len)
    if (s.substr(s.size() - len) == tag.substr(0, len)) return len;
  return 0;
}
}  // namespace

void ReasoningSplitter::Push(std::string_view text, std::string* reasoning,
                             std::string* content) {
  buf_.append(text);
  Drain(false, reasoning, content);
}

void ReasoningSplitter::Flush(std::string* reasoning, std::string* content) {
  Drain(true, reasoning, content);
}

void ReasoningSplitter::Drain(bool final, std::string* reasoning, std::string* content) {
  while (!buf_.empty()) {
    if (in_reasoning_) {
      const size_t p = buf_.find(kClose);
      if (p != std::string::npos) {
        reasoning->append(buf_, 0, p);
        buf_.erase(0, p + kClose.size());
        in_reasoning_ = false;
        after_close_ = true;
        continue;
      }
      const size_t hold = final ? 0 : PartialTag(buf_, kClose);
      reasoning->append(buf_, 0, buf_.size() - hold);
      buf_.erase(0, buf_.size() - hold);
      return;
    }
    if (after_close_) {
      // The answer starts after the whitespace that follows </think>.
      const size_t p = buf_.find_first_not_of(" \t\r\n");
      if (p == std::string::npos) {
        buf_.clear();
        return;
      }
      buf_.erase(0, p);
      after_close_ = false;
    }
    if (!content_started_) {
      // A <think> opening the output starts the reasoning.
      const size_t p = buf_.find_first_not_of(" \t\r\n");
      if (p == std::string::npos) {
        if (final) content->append(buf_);
        if (final) buf_.clear();
        return;
      }
      std::string_view rest = std::string_view(buf_).substr(p);
      if (rest.substr(0, kOpen.size()) == kOpen) {
        buf_.erase(0, p + kOpen.size());
        in_reasoning_ = true;
        continue;
      }
      if (!final && rest.size() < kOpen.size() && kOpen.substr(0, rest.size()) == rest) return;
      content_started_ = true;
    }
    content->append(buf_);
    buf_.clear();
  }
}

// ---- Responses ----

json UsageJson(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json ChatResponse(const std::string& id, int64_t created, const std::string& model,
                  const std::string& reasoning, const std::string& content,
                  const std::string& finish_reason, const Usage& usage) {
  json msg = {{"role", "assistant"}, {"content", content}};
  if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
  return {{"id", id},
          {"object", "chat.completion"},
          {"created", created},
          {"model", model},
          {"choices",
           json::array({{{"index", 0},
                         {"message", msg},
                         {"logprobs", nullptr},
                         {"finish_reason", finish_reason}}})},
          {"usage", UsageJson(usage)}};
}

json CompletionResponse(const std::string& id, int64_t created, const std::string& model,
                        const std::string& text, const std::string& finish_reason,
                        const Usage& usage) {
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", model},
          {"choices",
           json::array({{{"index", 0},
                         {"text", text},
                         {"logprobs", nullptr},
                         {"finish_reason", finish_reason}}})},
          {"usage", UsageJson(usage)}};
}

std::string SseEvent(const json& j) { return "data: " + Dump(j) + "\n\n"; }

json ChatChunk(const std::string& id, int64_t created, const std::string& model, json delta,
               const std::string& finish_reason, bool with_usage_null) {
  json choice = {{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  json j = {{"id", id},
            {"object", "chat.completion.chunk"},
            {"created", created},
            {"model", model},
            {"choices", json::array({choice})}};
  if (with_usage_null) j["usage"] = nullptr;
  return j;
}

json CompletionChunk(const std::string& id, int64_t created, const std::string& model,
                     const std::string& text, const std::string& finish_reason,
                     bool with_usage_null) {
  json choice = {{"index", 0}, {"text", text}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  json j = {{"id", id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({choice})}};
  if (with_usage_null) j["usage"] = nullptr;
  return j;
}

json UsageChunk(const std::string& id, int64_t created, const std::string& model, bool chat,
                const Usage& usage) {
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage", UsageJson(usage)}};
}

}  // namespace strata::node
