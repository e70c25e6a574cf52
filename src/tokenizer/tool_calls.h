// The tool-call markup of each chat template family: parsing a model's answer into calls
// (whole or streamed piece by piece), and the literal text around one call's arguments
// (what a constraint that forces a call must produce).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"

namespace strata {

// Length of the longest suffix of s that is a proper prefix of tag: streamed text that must be
// held back because it may still become the tag.
size_t PartialTag(std::string_view s, std::string_view tag);

// Markup of the calls, per family:
//   deepseek-r1  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n
//                ```json\nARGS\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//   chatml       <tool_call>\n{"name": NAME, "arguments": ARGS}\n</tool_call> (Qwen2.5)
//   llama3       the whole answer is {"name": NAME, "parameters": ARGS}, optionally after
//                <|python_tag|> (Llama 3.1's JSON tool calls)
// Calls carry name and arguments (compact JSON text; the raw text when it is not JSON); ids
// are the caller's.
class ToolCallParser {
 public:
  explicit ToolCallParser(ChatFamily family) : family_(family) {}
  // Feeds answer text: plain text goes to *content as soon as it cannot start markup, calls
  // to *calls as each one completes.
  void Push(std::string_view text, std::string* content, std::vector<ToolCall>* calls);
  // End of the answer: whatever is held is decided; markup that never completed is returned
  // as content (nothing is lost).
  void Flush(std::string* content, std::vector<ToolCall>* calls);

 private:
  void Drain(bool final, std::string* content, std::vector<ToolCall>* calls);
  bool DrainDeepSeekBlock(bool final, std::vector<ToolCall>* calls);
  ChatFamily family_;
  std::string buf_;
  bool in_block_ = false;  // inside the markup of calls
  bool started_ = false;   // content other than whitespace seen (llama3)
  std::string block_raw_;  // the markup consumed so far (returned if it never closes)
};

// The literal text around the arguments of one call to `name` in `family`'s markup: a
// constraint forcing that call makes the answer prefix + (JSON matching the function's
// parameters schema) + suffix.
struct ToolCallFrame {
  std::string prefix, suffix;
};
ToolCallFrame ToolCallMarkup(ChatFamily family, const std::string& name);

}  // namespace strata
