// The node's HTTP API without the transport: request bodies parsed and validated into
// generation requests, OpenAI-shaped responses and stream chunks, the error envelope, and
// the DeepSeek-R1 reasoning split. Pure functions, unit-tested without sockets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

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
  std::string model;                   // "" when not given
  std::string prompt;                  // kInference / kCompletions text
  std::vector<int32_t> prompt_ids;     // kCompletions given as token ids
  bool prompt_is_ids = false;
  std::vector<ChatMessage> messages;   // kChat
  int max_tokens = -1;                 // -1: until the context is full
  SamplerParams sampler;
  bool seed_given = false;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  // Exact continuation (docs/gateway.md): report the generated ids with the text, and go on
  // from ids generated earlier (appended to the prompt; their text is not sent again).
  bool return_token_ids = false;
  std::vector<int32_t> continue_ids;
};

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
