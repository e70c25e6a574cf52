// Chat templates rendered in C++ (no Jinja): the family is recognised from the GGUF's
// tokenizer.chat_template, and the output equals what that Jinja template renders.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

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

// Renders the conversation. `bos_text` is the BOS token's text (the templates emit it
// themselves); add_generation_prompt appends the opening of the assistant's turn.
Result<std::string> RenderChat(ChatFamily family, const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt, const std::string& bos_text);

}  // namespace strata
