// Internals shared by chat_template.cc (analysis, dispatch) and chat_render.cc (the
// family renderers). Not a public interface.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"

namespace strata::chat_internal {

// Python's str.strip() (Jinja's |trim).
std::string PyTrim(std::string_view s);

// Appends a message's content to r->text, recording its span.
inline void AddContent(ChatRender* r, std::string_view content) {
  if (content.empty()) return;
  r->contents.push_back(TextSpan{r->text.size(), r->text.size() + content.size()});
  r->text += content;
}

void RenderDeepSeekR1(const ChatTemplateInfo& info, const std::vector<ChatMessage>& messages,
                      const ChatRenderOptions& opts, const std::string& bos, ChatRender* r);
Status RenderLlama3(const std::vector<ChatMessage>& messages, const ChatRenderOptions& opts,
                    const std::string& bos, ChatRender* r);
Status RenderChatML(const ChatTemplateInfo& info, const std::vector<ChatMessage>& messages,
                    const ChatRenderOptions& opts, ChatRender* r);

}  // namespace strata::chat_internal
