// Chat templates rendered in C++ (no Jinja): the family is recognised from the GGUF's
// tokenizer.chat_template, and the output equals what that Jinja template renders.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "tokenizer/tokenizer.h"

namespace strata {

enum class ChatFamily {
  kDeepSeekR1,  // DeepSeek-R1 distills (Qwen and Llama): <｜User｜>..<｜Assistant｜><think>\n
  kLlama3,      // Llama 3.x instruct: <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  kChatML,      // Qwen2.5 / ChatML: <|im_start|>role\n...<|im_end|>\n
};

// A function call of an assistant turn (OpenAI's tool_calls entry).
struct ToolCall {
  std::string id;  // "call_..."
  std::string name;
  std::string arguments;  // JSON text (OpenAI sends a string)
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
  // The content was null/absent (an assistant turn that only calls tools): DeepSeek's
  // template tells the two apart.
  bool content_null = false;
  std::vector<ToolCall> tool_calls;  // assistant
  std::string tool_call_id;          // tool
};

// Options of one rendering beyond the messages.
struct ChatRenderOptions {
  bool add_generation_prompt = true;
  // Tool definitions as the request gave them ({"type": "function", "function": {...}}),
  // key order kept: templates print them with Python's json.dumps. Empty: no tools.
  std::vector<nlohmann::ordered_json> tools;
  // false: thinking switched off. For DeepSeek-R1 the generation prompt then carries an
  // empty, closed think block ("<think>\n\n</think>\n\n", as Qwen3's template does).
  bool enable_thinking = true;
};

const char* ChatFamilyName(ChatFamily f);
// Recognises the family of a Jinja chat template string; error when unknown.
Result<ChatFamily> DetectChatFamily(const std::string& jinja_template);
// "deepseek-r1", "llama3" (or "llama3.1"), "chatml" (or "qwen2.5").
Result<ChatFamily> ParseChatFamily(const std::string& name);

// What a recognised template fixes beyond its family. ChatML templates differ in the
// system prompt they inject when the conversation has none: Qwen2.5 injects "You are Qwen,
// created by Alibaba Cloud. You are a helpful assistant.", the plain ChatML template of
// e.g. ggml-vocab-qwen2.gguf injects "You are a helpful assistant". Prefer
// AnalyzeChatTemplate + the RenderChat overload below when the GGUF carries a template.
struct ChatTemplateInfo {
  ChatFamily family = ChatFamily::kChatML;
  // ChatML: system prompt inserted when messages[0] is not a system message ("" = none).
  std::string default_system;
  // Whether an empty conversation renders (as the template does) instead of an error.
  bool allows_empty = false;
  // DeepSeek-R1: the generation prompt opens "<think>\n" (the updated template); the first
  // published one (still in some GGUFs) ends with "<｜Assistant｜>" and the model opens it.
  bool think_in_prompt = true;
  // DeepSeek-R1: the tool-call layout of the template. false: DeepSeek's original (calls of
  // an assistant turn whose content is null; "<｜tool▁calls▁end｜>" after the second and
  // later calls only). true: the corrected variant (calls of any turn with tool_calls, the
  // end marker once after them), as in llama.cpp's models/templates and some GGUFs.
  bool tool_calls_fixed = false;
};

// The template a model is served with: what was found, and whether it is a fallback.
struct ChatTemplateChoice {
  ChatTemplateInfo info;
  std::string name;       // family name as --chat-template takes it
  bool fallback = false;  // the GGUF's template was missing or not recognised
  std::string source;     // "gguf", "flag" or "fallback"
  std::string note;       // why a fallback was used ("" otherwise)
};
// Picks the template: `override_name` (--chat-template) when set, else the GGUF's
// `gguf_template` ("" when it has none), else DeepSeek-R1's as an announced fallback.
// Error only for an unknown override name.
Result<ChatTemplateChoice> ChooseChatTemplate(const std::string& gguf_template,
                                              const std::string& override_name);
// The defaults of a family: Qwen2.5's ChatML, DeepSeek-R1, Llama 3.1 ("26 Jul 2024").
ChatTemplateInfo DefaultChatTemplateInfo(ChatFamily family);
// DetectChatFamily plus the ChatML details read from the template text.
Result<ChatTemplateInfo> AnalyzeChatTemplate(const std::string& jinja_template);

// Renders the conversation. `bos_text` is the BOS token's text (the templates emit it
// themselves); add_generation_prompt appends the opening of the assistant's turn.
Result<std::string> RenderChat(ChatFamily family, const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt, const std::string& bos_text);
// Same, with the details from AnalyzeChatTemplate. RenderChat(family, ...) equals
// RenderChat(DefaultChatTemplateInfo(family), ...). Roles other than system, user and
// assistant are an error.
Result<std::string> RenderChat(const ChatTemplateInfo& info,
                               const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                               const std::string& bos_text);

// A rendered conversation and where the messages' contents lie in it, so that the contents
// can be tokenized without special-token parsing (Tokenizer::EncodeWithPlainSpans) while the
// template's own markers stay special.
struct ChatRender {
  std::string text;
  std::vector<TextSpan> contents;  // sorted, not overlapping
};
// RenderChat, with the content spans. RenderChat(...) equals RenderChatWithSpans(...).text.
Result<ChatRender> RenderChatWithSpans(const ChatTemplateInfo& info,
                                       const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const std::string& bos_text);
// The full rendering: tools, tool calls and results, thinking switch. Errors where the
// Jinja template raises (e.g. Llama 3.1 with two calls in one turn).
Result<ChatRender> RenderChatWithSpans(const ChatTemplateInfo& info,
                                       const std::vector<ChatMessage>& messages,
                                       const ChatRenderOptions& opts, const std::string& bos_text);

// Python's json.dumps(v, ensure_ascii=False, indent=indent) (indent < 0: none), as the
// templates' tojson filter prints; key order as given.
std::string PyJsonDumps(const nlohmann::ordered_json& v, int indent = -1);

// Tokens of a conversation, the same for `strata run --chat` and every node endpoint:
// rendered with `info`, contents plain text (unless parse_special_in_content), exactly one
// BOS. *in_reasoning: the prompt ends inside an open think block.
Result<std::vector<int32_t>> ChatPromptTokens(const Tokenizer& tok, const ChatTemplateInfo& info,
                                              const std::vector<ChatMessage>& messages,
                                              const ChatRenderOptions& opts,
                                              bool parse_special_in_content, bool* in_reasoning);

}  // namespace strata
