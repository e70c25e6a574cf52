// The node's HTTP API without the transport: request bodies parsed and validated into
// generation requests, OpenAI-shaped responses and stream chunks, the error envelope, and
// the DeepSeek-R1 reasoning split. Pure functions, unit-tested without sockets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "grammar/constraint.h"
#include "sampler/sampler.h"
#include "tokenizer/chat_template.h"

namespace strata::node {

// An HTTP error: status code plus the OpenAI envelope's fields.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string code;  // "" -> null
};
// {"error": {"message", "type", "code"}}
std::string ErrorJson(const ApiError& e);
ApiError BadRequest(std::string message);

enum class Endpoint { kInference, kCompletions, kChat };

struct GenRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                // "" when not given
  std::string prompt;               // kInference / kCompletions text
  std::vector<int32_t> prompt_ids;  // kCompletions given as token ids
  bool prompt_is_ids = false;
  std::vector<ChatMessage> messages;  // kChat
  int max_tokens = -1;                // -1: until the context is full
  SamplerParams sampler;
  bool seed_given = false;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  // Exact continuation (docs/gateway.md): report the generated ids with the text, and go on
  // from ids generated earlier (appended to the prompt; their text is not sent again).
  bool return_token_ids = false;
  std::vector<int32_t> continue_ids;
  // Constrained decoding and thinking control (docs/constrained-decoding.md): one of
  // response_format json_object / json_schema, grammar, json_schema; thinking_budget (or
  // reasoning_effort's budget; -1: not given); ignore_eos.
  grammar::ConstraintSpec constraint;
  int thinking_budget = -1;
  bool ignore_eos = false;
  // Chat tools (docs/api.md): definitions in request order, the choice ("none", "auto",
  // "required", or "function" with tool_choice_name), whether several calls may come.
  std::vector<nlohmann::ordered_json> tools;
  std::string tool_choice = "auto";
  std::string tool_choice_name;
  bool parallel_tool_calls = true;
  // chat_template_kwargs.enable_thinking / think: false switches the reasoning off.
  bool enable_thinking = true;
  int n = 1;  // choices, seeded seed, seed+1, ... (docs/api.md)
  // Logprob entries name tokens "token_id:ID" instead of their text (vLLM's extension: exact
  // ids, e.g. to compare with another engine's logits).
  bool return_tokens_as_token_ids = false;
  int top_logprobs = -1;  // -1: no logprobs; else per token with the k most likely
  bool echo = false;      // completions: the prompt's text before the completion
};

// reasoning_effort's thinking budgets in tokens.
inline constexpr int kEffortLow = 256, kEffortMedium = 1024, kEffortHigh = 4096;

// One sampled token's log-probabilities for the response: the token's text (its bytes as
// the vocabulary holds them) and the k most likely alternatives.
struct LogprobToken {
  std::string piece;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};
// Chat's shape: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
nlohmann::json ChatLogprobs(const std::vector<LogprobToken>& tokens);
// Completions' legacy shape: {"tokens", "token_logprobs", "top_logprobs" ({text: logprob}),
// "text_offset"}; offsets count from `offset0` (the echoed prompt's length).
nlohmann::json CompletionLogprobs(const std::vector<LogprobToken>& tokens, size_t offset0);

// Tool calls parsed from an answer, as OpenAI's message.tool_calls ("call_" ids).
nlohmann::json ToolCallsJson(const std::vector<ToolCall>& calls, size_t first_index = 0,
                             bool with_index = false);
// A fresh tool-call id: "call_" + 24 random letters and digits.
std::string NewToolCallId();

// Parses and validates a request body. On failure fills *err (400) and returns false.
// Unknown fields are ignored; null values count as absent.
bool ParseGenRequest(Endpoint endpoint, std::string_view body, GenRequest* out, ApiError* err);

// Splits DeepSeek-R1 output into reasoning (inside <think>...</think>) and the answer,
// incrementally: text that could be the start of a tag is held until it is decided.
class ReasoningSplitter {
 public:
  // in_reasoning: the prompt already opened <think> (R1's generation prompt does).
  explicit ReasoningSplitter(bool in_reasoning) : in_reasoning_(in_reasoning) {}
  // Appends the newly decided text to *reasoning and *content.
  void Push(std::string_view text, std::string* reasoning, std::string* content);
  void Flush(std::string* reasoning, std::string* content);  // end of generation

 private:
  void Drain(bool final, std::string* reasoning, std::string* content);
  bool in_reasoning_;
  bool content_started_ = false;  // content text other than whitespace was emitted
  bool after_close_ = false;      // just left the reasoning: drop leading whitespace
  std::string buf_;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int reasoning_tokens = -1;  // >= 0: completion_tokens_details.reasoning_tokens
};
nlohmann::json UsageJson(const Usage& u);

// Non-streamed responses.
nlohmann::json ChatResponse(const std::string& id, int64_t created, const std::string& model,
                            const std::string& reasoning, const std::string& content,
                            const std::string& finish_reason, const Usage& usage);
nlohmann::json CompletionResponse(const std::string& id, int64_t created, const std::string& model,
                                  const std::string& text, const std::string& finish_reason,
                                  const Usage& usage);

// One SSE event "data: <json>\n\n".
std::string SseEvent(const nlohmann::json& j);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// Stream chunks. `delta` for chat ({"role"}, {"content"}, {"reasoning_content"} or {}),
// finish_reason "" -> null. with_usage_null adds "usage": null (stream_options.include_usage).
nlohmann::json ChatChunk(const std::string& id, int64_t created, const std::string& model,
                         nlohmann::json delta, const std::string& finish_reason,
                         bool with_usage_null);
nlohmann::json CompletionChunk(const std::string& id, int64_t created, const std::string& model,
                               const std::string& text, const std::string& finish_reason,
                               bool with_usage_null);
// The final usage chunk: empty choices.
nlohmann::json UsageChunk(const std::string& id, int64_t created, const std::string& model,
                          bool chat, const Usage& usage);

// Serializes JSON for the wire (invalid UTF-8 replaced, never throws).
std::string Dump(const nlohmann::json& j);

}  // namespace strata::node
