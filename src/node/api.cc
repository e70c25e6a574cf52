#include "node/api.h"

#include <cmath>
#include <limits>
#include <random>

#include "http/json_guard.h"
#include "tokenizer/tool_calls.h"

namespace strata::node {

using nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

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

ChatMessage ReadMessage(const json& m) {
  ChatMessage msg;
  msg.role = m["role"].get<std::string>();
  msg.content = MessageContent(m);
  msg.content_null = Field(m, "content") == nullptr;
  GetString(m, "tool_call_id", &msg.tool_call_id);
  if (const json* calls = Field(m, "tool_calls")) {
    for (const json& c : *calls) {
      ToolCall call;
      GetString(c, "id", &call.id);
      const json& f = c.at("function");
      call.name = f.at("name").get<std::string>();
      const json* args = Field(f, "arguments");
      call.arguments = !args ? "{}" : args->is_string() ? args->get<std::string>() : Dump(*args);
      msg.tool_calls.push_back(std::move(call));
    }
  }
  return msg;
}

// tools, tool_choice, parallel_tool_calls and the thinking switches of a chat request.
// Tools are read again from the body with their key order (templates print them as given).
void ReadChatOptions(const json& j, std::string_view body, GenRequest* r) {
  if (const json* tc = Field(j, "tool_choice")) {
    if (tc->is_string()) {
      r->tool_choice = tc->get<std::string>();
    } else {
      r->tool_choice = "function";
      r->tool_choice_name = tc->at("function").at("name").get<std::string>();
    }
  }
  GetBool(j, "parallel_tool_calls", &r->parallel_tool_calls);
  if (const json* kw = Field(j, "chat_template_kwargs"))
    GetBool(*kw, "enable_thinking", &r->enable_thinking);
  bool think = true;
  GetBool(j, "think", &think);
  if (!think) r->enable_thinking = false;
  if (Field(j, "tools") && !j["tools"].empty()) {
    const auto ordered = nlohmann::ordered_json::parse(body);
    for (const auto& t : ordered["tools"]) r->tools.push_back(t);
  }
}

// Checks of the chat fields beyond their JSON types; "" when fine.
std::string CheckChatOptions(const GenRequest& r) {
  const std::string& c = r.tool_choice;
  if (c != "none" && c != "auto" && c != "required" && c != "function")
    return "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
           "\"function\": {\"name\": ...}} (got \"" +
           c + "\")";
  if ((c == "required" || c == "function") && r.tools.empty())
    return "'tool_choice' \"" + c + "\" needs 'tools'";
  if (c == "function") {
    bool found = false;
    for (const auto& t : r.tools)
      if (t.contains("function") && t["function"].value("name", "") == r.tool_choice_name)
        found = true;
    if (!found)
      return "'tool_choice' names the function '" + r.tool_choice_name +
             "', which is not in 'tools'";
  }
  for (size_t i = 0; i < r.tools.size(); ++i) {
    const auto& t = r.tools[i];
    if (!t.is_object() || !t.contains("function") || !t["function"].is_object() ||
        !t["function"].contains("name") || !t["function"]["name"].is_string())
      return "tools[" + std::to_string(i) +
             "]: expected {\"type\": \"function\", \"function\": "
             "{\"name\": string, \"parameters\": object}}";
  }
  return {};
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
void ReadGenRequest(const json& j, std::string_view body, GenRequest* r) {
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
  int64_t n = 1;
  GetInt(j, "n", &n);
  r->n = static_cast<int>(n);
  if (endpoint == Endpoint::kChat) {
    bool lp = false;
    GetBool(j, "logprobs", &lp);
    int64_t top = 0;
    GetInt(j, "top_logprobs", &top);
    if (lp) r->top_logprobs = static_cast<int>(top);
  } else if (endpoint == Endpoint::kCompletions) {
    int64_t lp = -1;
    GetInt(j, "logprobs", &lp);
    r->top_logprobs = static_cast<int>(lp);
    GetBool(j, "echo", &r->echo);
  }
  if (endpoint != Endpoint::kInference) {
    GetBool(j, "stream", &r->stream);
    if (const json* so = Field(j, "stream_options"))
      GetBool(*so, "include_usage", &r->include_usage);
    GetBool(j, "return_token_ids", &r->return_token_ids);
    GetBool(j, "return_tokens_as_token_ids", &r->return_tokens_as_token_ids);
    if (const json* c = Field(j, "continue_token_ids")) r->continue_ids = TokenIds(*c);
  }
  if (endpoint == Endpoint::kChat) {
    for (const json& m : j["messages"]) r->messages.push_back(ReadMessage(m));
  } else {
    ReadPrompt(j, r);
  }
}

// response_format, grammar, json_schema (at most one), thinking_budget, reasoning_effort and
// ignore_eos: "" when valid, else the 400 message. The schema is read again from the body
// with its keys in order (properties are generated in the order they are declared).
std::string ReadConstraintFields(const json& j, std::string_view body, GenRequest* r) {
  using grammar::ConstraintSpec;
  ConstraintSpec& c = r->constraint;
  int given = 0;
  const char* schema_at = nullptr;  // path of the schema in the body
  if (const json* rf = Field(j, "response_format")) {
    const json* type = rf->is_object() ? Field(*rf, "type") : nullptr;
    if (!type || !type->is_string())
      return "'response_format' must be an object with a 'type' (text, json_object, json_schema)";
    const std::string t = type->get<std::string>();
    if (t == "json_object") {
      c.kind = ConstraintSpec::kJsonObject;
      ++given;
    } else if (t == "json_schema") {
      const json* js = Field(*rf, "json_schema");
      const json* schema = js && js->is_object() ? Field(*js, "schema") : nullptr;
      if (!schema || !(schema->is_object() || schema->is_boolean()))
        return "'response_format.json_schema.schema' must be a JSON Schema object";
      if (const json* strict = Field(*js, "strict"); strict && !strict->is_boolean())
        return "'response_format.json_schema.strict' must be a boolean";
      c.kind = ConstraintSpec::kJsonSchema;
      schema_at = "rf";
      ++given;
    } else if (t != "text") {
      return "'response_format.type' must be text, json_object or json_schema (got '" + t + "')";
    }
  }
  if (const json* g = Field(j, "grammar")) {
    if (!g->is_string() || g->get<std::string>().empty())
      return "'grammar' must be a non-empty GBNF string";
    c.kind = ConstraintSpec::kGbnf;
    c.gbnf = g->get<std::string>();
    ++given;
  }
  if (const json* js = Field(j, "json_schema")) {
    if (!js->is_object()) return "'json_schema' must be a JSON Schema object";
    c.kind = ConstraintSpec::kJsonSchema;
    schema_at = "top";
    ++given;
  }
  if (given > 1)
    return "give at most one constraint: response_format (json_object or json_schema), grammar "
           "or json_schema";
  if (schema_at) {
    const nlohmann::ordered_json o = nlohmann::ordered_json::parse(body);
    c.schema =
        schema_at[0] == 't' ? o["json_schema"] : o["response_format"]["json_schema"]["schema"];
  }
  if (const json* e = Field(j, "reasoning_effort")) {
    const std::string v = e->is_string() ? e->get<std::string>() : "";
    if (v == "low") {
      r->thinking_budget = kEffortLow;
    } else if (v == "medium") {
      r->thinking_budget = kEffortMedium;
    } else if (v == "high") {
      r->thinking_budget = kEffortHigh;
    } else {
      return "'reasoning_effort' must be low, medium or high";
    }
  }
  if (const json* tb = Field(j, "thinking_budget")) {  // wins over reasoning_effort
    if (!tb->is_number_integer() || tb->get<int64_t>() < 0 || tb->get<int64_t>() > (1 << 24))
      return "'thinking_budget' must be an integer in 0..16777216";
    r->thinking_budget = static_cast<int>(tb->get<int64_t>());
  }
  if (const json* ie = Field(j, "ignore_eos")) {
    if (!ie->is_boolean()) return "'ignore_eos' must be a boolean";
    r->ignore_eos = ie->get<bool>();
  }
  return "";
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
    ReadGenRequest(j, body, &r);
    if (endpoint == Endpoint::kChat) ReadChatOptions(j, body, &r);
    if (endpoint != Endpoint::kInference) {
      const std::string bad = ReadConstraintFields(j, body, &r);
      if (!bad.empty()) {
        *err = BadRequest(bad);
        return false;
      }
    }
  } catch (const std::exception& e) {  // a reader and the check disagree: report, never escape
    *err = BadRequest(std::string("invalid request: ") + e.what());
    return false;
  }
  if (std::string why = endpoint == Endpoint::kChat ? CheckChatOptions(r) : ""; !why.empty()) {
    *err = BadRequest(why);
    return false;
  }
  *out = std::move(r);
  return true;
}

json ToolCallsJson(const std::vector<ToolCall>& calls, size_t first_index, bool with_index) {
  json out = json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    json c = {{"id", calls[k].id},
              {"type", "function"},
              {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments}}}};
    if (with_index) c["index"] = first_index + k;
    out.push_back(std::move(c));
  }
  return out;
}

namespace {
json Bytes(const std::string& s) {
  json b = json::array();
  for (const char c : s) b.push_back(static_cast<unsigned char>(c));
  return b;
}
}  // namespace

json ChatLogprobs(const std::vector<LogprobToken>& tokens) {
  json content = json::array();
  for (const LogprobToken& t : tokens) {
    json top = json::array();
    for (const auto& [piece, lp] : t.top)
      top.push_back({{"token", piece}, {"logprob", lp}, {"bytes", Bytes(piece)}});
    content.push_back({{"token", t.piece},
                       {"logprob", t.logprob},
                       {"bytes", Bytes(t.piece)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

json CompletionLogprobs(const std::vector<LogprobToken>& tokens, size_t offset0) {
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  size_t off = offset0;
  for (const LogprobToken& t : tokens) {
    toks.push_back(t.piece);
    lps.push_back(t.logprob);
    json top = json::object();
    for (const auto& [piece, lp] : t.top)
      if (!top.contains(piece)) top[piece] = lp;
    tops.push_back(std::move(top));
    offs.push_back(off);
    off += t.piece.size();
  }
  return {{"tokens", std::move(toks)},
          {"token_logprobs", std::move(lps)},
          {"top_logprobs", std::move(tops)},
          {"text_offset", std::move(offs)}};
}

std::string NewToolCallId() {
  static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlnum[rng() % (sizeof(kAlnum) - 1)];
  return id;
}

// ---- Reasoning split ----

namespace {
constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";
}  // namespace

void ReasoningSplitter::Push(std::string_view text, std::string* reasoning, std::string* content) {
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
  json j = {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens}};
  if (u.reasoning_tokens >= 0)
    j["completion_tokens_details"] = {{"reasoning_tokens", u.reasoning_tokens}};
  return j;
}

namespace {

// A whole (not streamed) response of `object` with one choice, whose `key` holds `value`.
json OneChoiceResponse(const std::string& id, const char* object, int64_t created,
                       const std::string& model, const char* key, json value,
                       const std::string& finish_reason, const Usage& usage) {
  return {{"id", id},
          {"object", object},
          {"created", created},
          {"model", model},
          {"choices", json::array({{{"index", 0},
                                    {key, std::move(value)},
                                    {"logprobs", nullptr},
                                    {"finish_reason", finish_reason}}})},
          {"usage", UsageJson(usage)}};
}

}  // namespace

json ChatResponse(const std::string& id, int64_t created, const std::string& model,
                  const std::string& reasoning, const std::string& content,
                  const std::string& finish_reason, const Usage& usage) {
  json msg = {{"role", "assistant"}, {"content", content}};
  if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
  return OneChoiceResponse(id, "chat.completion", created, model, "message", std::move(msg),
                           finish_reason, usage);
}

json CompletionResponse(const std::string& id, int64_t created, const std::string& model,
                        const std::string& text, const std::string& finish_reason,
                        const Usage& usage) {
  return OneChoiceResponse(id, "text_completion", created, model, "text", text, finish_reason,
                           usage);
}

std::string SseEvent(const json& j) { return "data: " + Dump(j) + "\n\n"; }

namespace {

// A streamed chunk of `object` with one choice, whose `key` holds `value` (finish_reason null
// while empty).
json OneChoiceChunk(const std::string& id, const char* object, int64_t created,
                    const std::string& model, const char* key, json value,
                    const std::string& finish_reason, bool with_usage_null) {
  json choice = {{"index", 0}, {key, std::move(value)}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  json j = {{"id", id},
            {"object", object},
            {"created", created},
            {"model", model},
            {"choices", json::array({choice})}};
  if (with_usage_null) j["usage"] = nullptr;
  return j;
}

}  // namespace

json ChatChunk(const std::string& id, int64_t created, const std::string& model, json delta,
               const std::string& finish_reason, bool with_usage_null) {
  return OneChoiceChunk(id, "chat.completion.chunk", created, model, "delta", std::move(delta),
                        finish_reason, with_usage_null);
}

json CompletionChunk(const std::string& id, int64_t created, const std::string& model,
                     const std::string& text, const std::string& finish_reason,
                     bool with_usage_null) {
  return OneChoiceChunk(id, "text_completion", created, model, "text", text, finish_reason,
                        with_usage_null);
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
