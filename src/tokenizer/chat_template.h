// Chat templates rendered in C++ (no Jinja): the family is recognised from the GGUF's
// tokenizer.chat_template, and the output equals what that Jinja template renders.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "tokenizer/tokenizer.h"

namespace strata {

enum class ChatFamily {
  kDeepSeekR1,  // DeepSeek-R1 distills (Qwen and Llama): <｜User｜>..<｜Assistant｜><think>\n
  kLlama3,      // Llama 3.x instruct: <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  kChatML,      // Qwen2.5 / ChatML: <|im_start|>role\n...<|im_end|>\n
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

const char* ChatFamilyName(ChatFamily f);
// Recognises the family of a Jinja chat template string; error when unknown.
Result<ChatFamily> DetectChatFamily(const std::string& jinja_template);
Result<ChatFamily> ParseChatFamily(const std::string& name);  // "deepseek-r1", "llama3", "chatml"

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
};
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
                               const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt, const std::string& bos_text);

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

}  // namespace strata
