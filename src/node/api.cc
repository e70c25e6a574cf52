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

// Readers of fields that http::CheckGenerationBody accepted: absent or null leaves *out
// unchanged; the type and range are known to be right.
const json* Field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

void GetNumber(const json& obj, const char* key, float* out) {
  if (const json* v = Field(obj, key)) *out = static_cast<float>(v->get<double>());
}

// Integers (also floats with an integral value), saturated to int64.
void GetInt(const json& obj, const char* key, int64_t* out) {
  const json* v = Field(obj, key);
  if (!v) return;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    *out = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
               ? std::numeric_limits<int64_t>::max()
               : static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    *out = v->get<int64_t>();
  } else {
    *out = static_cast<int64_t>(v->get<double>());
  }
}

void GetBool(const json& obj, const char* key, bool* out) {
  if (const json* v = Field(obj, key)) *out = v->get<bool>();
}

void GetString(const json& obj, const char* key, std::string* out) {
  if (const json* v = Field(obj, key)) *out = v->get<std::string>();
}

std::vector<int32_t> TokenIds(const json& arr) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const json& t : arr) ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  return ids;
}

// Chat content: a string, or an array of {"type": "text", "text": ...} parts.
std::string MessageContent(const json& m) {
  const json* v = Field(m, "content");
  if (!v) return {};
  if (v->is_string()) return v->get<std::string>();
  std::string out;
  for (const json& part : *v) out += part["text"].get<std::string>();
  return out;
}

void ReadStop(const json& obj, std::vector<std::string>* out) {
  const json* v = Field(obj, "stop");
  if (!v) return;
  if (v->is_string()) {
    if (!v->get<std::string>().empty()) out->push_back(v->get<std::string>());
    return;
  }
  for (const json& s : *v)
    if (!s.get<std::string>().empty()) out->push_back(s.get<std::string>());
}

void ReadPrompt(const json& j, GenRequest* r) {
  const json* p = Field(j, "prompt");
  if (p->is_string()) {
    r->prompt = p->get<std::string>();
  } else if (p->size() == 1 && (*p)[0].is_string()) {
    r->prompt = (*p)[0].get<std::string>();
  } else {
    r->prompt_ids = TokenIds(*p);
    r->prompt_is_ids = true;
  }
}

// Reads an accepted body into *r.
void ReadGenRequest(const json& j, GenRequest* r) {
  const Endpoint endpoint = r->endpoint;
  GetString(j, "model", &r->model);
  int64_t max_tokens = endpoint == Endpoint::kInference ? 256 : r->max_tokens;
  if (endpoint == Endpoint::kInference) GetInt(j, "max_length", &max_tokens);
  GetInt(j, "max_tokens", &max_tokens);
  GetInt(j, "max_completion_tokens", &max_tokens);
  r->max_tokens = static_cast<int>(max_tokens);

  SamplerParams& s = r->sampler;
  GetNumber(j, "temperature", &s.temperature);
  GetNumber(j, "top_p", &s.top_p);
  GetNumber(j, "min_p", &s.min_p);
  GetNumber(j, "presence_penalty", &s.presence_penalty);
  GetNumber(j, "frequency_penalty", &s.frequency_penalty);
  GetNumber(j, "repeat_penalty", &s.repeat_penalty);
  int64_t top_k = s.top_k;
  GetInt(j, "top_k", &top_k);
  s.top_k = static_cast<int32_t>(top_k);
  if (Field(j, "seed")) {
    int64_t seed = 0;
    GetInt(j, "seed", &seed);
    s.seed = static_cast<uint64_t>(seed);
    r->seed_given = true;
  }
  ReadStop(j, &r->stop);
  if (endpoint != Endpoint::kInference) {
    GetBool(j, "stream", &r->stream);
    if (const json* so = Field(j, "stream_options"))
      GetBool(*so, "include_usage", &r->include_usage);
    GetBool(j, "return_token_ids", &r->return_token_ids);
    if (const json* c = Field(j, "continue_token_ids")) r->continue_ids = TokenIds(*c);
  }
  if (endpoint == Endpoint::kChat) {
    for (const json& m : j["messages"])
      r->messages.push_back(ChatMessage{m["role"].get<std::string>(), MessageContent(m)});
  } else {
    ReadPrompt(j, r);
  }
}

}  // namespace

bool ParseGenRequest(Endpoint endpoint, std::string_view body, GenRequest* out, ApiError* err) {
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
  const json j = std::move(parsed).value();
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
  GenRequest r;
  r.endpoint = endpoint;
  try {
    ReadGenRequest(j, &r);
  } catch (const std::exception& e) {  // a reader and the check disagree: report, never escape
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
