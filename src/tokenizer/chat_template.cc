// Chat templates rendered in C++. Each family reproduces, byte for byte, what its
// reference Jinja template renders under Hugging Face transformers' settings
// (trim_blocks, lstrip_blocks, no tools); tests/data/templates/golden.json holds the
// jinja2 renderings the tests compare against.
#include "tokenizer/chat_template.h"

#include "tokenizer/chat_internal.h"
#include "tokenizer/pretokenize.h"

#include <cstdint>
#include <string_view>

namespace strata {
namespace {

constexpr std::string_view kQwenDefaultSystem =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

// ---------------------------------------------------------------------------------------
// Python's str.strip() (Jinja's |trim): removes leading and trailing Unicode whitespace,
// i.e. code points for which str.isspace() is true.

bool IsPythonSpace(uint32_t cp) {
  if (cp >= 0x09 && cp <= 0x0D) return true;
  if (cp >= 0x1C && cp <= 0x20) return true;
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace

std::string chat_internal::PyTrim(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    uint32_t cp;
    const size_t n = tok::DecodeUtf8At(s, begin, &cp);
    if (n == 0 || !IsPythonSpace(cp)) break;
    begin += n;
  }
  size_t end = s.size();
  while (end > begin) {
    // Start of the last code point: step back over up to 3 continuation bytes.
    size_t start = end - 1;
    while (start > begin && end - start < 4 &&
           (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
      --start;
    }
    uint32_t cp;
    const size_t n = tok::DecodeUtf8At(s, start, &cp);
    if (n != end - start || !IsPythonSpace(cp)) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

namespace {

// ---------------------------------------------------------------------------------------

Status CheckRoles(const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
      return Errorf(
          "chat message %zu: unsupported role '%s' (expected system, user, "
          "assistant or tool)",
          i, r.c_str());
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Template analysis.

bool Contains(const std::string& s, std::string_view needle) {
  return s.find(needle) != std::string::npos;
}

// Undoes the escapes of a Jinja string literal (\n, \t, \r, \\, \', \").
std::string UnescapeJinjaLiteral(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      switch (c) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        default: out += c; break;  // \\ \' \"
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

// The default system prompt of a ChatML template: a string literal of the form
// '<|im_start|>system\nTEXT<|im_end|>' whose TEXT is constant (not joined with a
// variable). Empty when the template has none.
std::string FindChatMLDefaultSystem(const std::string& t) {
  // The newline is either escaped ('\\n', as in Qwen2.5's template) or a raw newline
  // inside the literal (as in templates stored by some GGUF converters).
  static constexpr std::string_view kOpen = "<|im_start|>system";
  static constexpr std::string_view kClose = "<|im_end|>";
  size_t pos = 0;
  while ((pos = t.find(kOpen, pos)) != std::string::npos) {
    pos += kOpen.size();
    size_t text_begin;
    if (t.compare(pos, 2, "\\n") == 0) {
      text_begin = pos + 2;
    } else if (t.compare(pos, 1, "\n") == 0) {
      text_begin = pos + 1;
    } else {
      continue;
    }
    const size_t close = t.find(kClose, text_begin);
    if (close == std::string::npos) break;
    std::string_view text(t.data() + text_begin, close - text_begin);
    bool constant = !text.empty();
    for (size_t i = 0; i < text.size() && constant; ++i) {
      const char c = text[i];
      const bool escaped = i > 0 && text[i - 1] == '\\';
      if ((c == '\'' || c == '"') && !escaped) constant = false;
      if (c == '{' || c == '}' || c == '%') constant = false;
    }
    if (constant) return UnescapeJinjaLiteral(text);
  }
  return std::string();
}

// Every name ParseChatFamily accepts; a family's first is its ChatFamilyName, the others are
// aliases (the NamesRoundTrip test checks that every family has one).
constexpr struct {
  const char* name;
  ChatFamily family;
} kFamilyNames[] = {
    {"deepseek-r1", ChatFamily::kDeepSeekR1}, {"llama3", ChatFamily::kLlama3},
    {"chatml", ChatFamily::kChatML},          {"llama3.1", ChatFamily::kLlama3},
    {"qwen2.5", ChatFamily::kChatML},
};

}  // namespace

const char* ChatFamilyName(ChatFamily f) {
  for (const auto& n : kFamilyNames)
    if (n.family == f) return n.name;
  return "unknown";
}

Result<ChatFamily> ParseChatFamily(const std::string& name) {
  for (const auto& n : kFamilyNames)
    if (name == n.name) return n.family;
  return Errorf(
      "unknown chat template name '%s' (expected deepseek-r1, qwen2.5, llama3.1 or "
      "chatml)",
      name.c_str());
}

ChatTemplateInfo DefaultChatTemplateInfo(ChatFamily family) {
  ChatTemplateInfo info;
  info.family = family;
  switch (family) {
    case ChatFamily::kDeepSeekR1: info.allows_empty = true; break;
    case ChatFamily::kLlama3: info.allows_empty = false; break;
    case ChatFamily::kChatML:
      info.default_system = std::string(kQwenDefaultSystem);
      info.allows_empty = false;
      break;
  }
  return info;
}

Result<ChatTemplateInfo> AnalyzeChatTemplate(const std::string& t) {
  if (t.empty()) return Status::Error("chat template is empty");
  if (Contains(t, "<｜User｜>") && Contains(t, "<｜Assistant｜>")) {
    // The variants of the R1 distills' template that publishers ship: with or without
    // "<think>\n" in the generation prompt, DeepSeek's tool-call layout or its correction.
    ChatTemplateInfo info = DefaultChatTemplateInfo(ChatFamily::kDeepSeekR1);
    info.think_in_prompt =
        Contains(t, "<｜Assistant｜><think>\\n") || Contains(t, "<｜Assistant｜><think>\n");
    info.tool_calls_fixed = Contains(t, "message['role'] == 'assistant' and message['tool_calls']");
    return info;
  }
  if (Contains(t, "<|start_header_id|>") && Contains(t, "<|eot_id|>")) {
    // Only the Llama 3.1 layout (system header with the fixed dates) is reproduced.
    if (!Contains(t, "Cutting Knowledge Date: December 2023") || !Contains(t, "26 Jul 2024")) {
      return Status::Error(
          "unsupported Llama 3 chat template variant (only the Llama 3.1 template with "
          "'Cutting Knowledge Date' and date_string '26 Jul 2024' is supported); pass "
          "--chat-template llama3 to force it");
    }
    return DefaultChatTemplateInfo(ChatFamily::kLlama3);
  }
  if (Contains(t, "<|im_start|>") && Contains(t, "<|im_end|>")) {
    ChatTemplateInfo info;
    info.family = ChatFamily::kChatML;
    info.default_system = FindChatMLDefaultSystem(t);
    // A template that reads messages[0] before its message loop (Qwen2.5) fails on an
    // empty conversation; one that only looks inside the loop renders it.
    const size_t first_ref = t.find("messages[0]");
    size_t loop = t.find("for message in messages");
    info.allows_empty =
        first_ref == std::string::npos || (loop != std::string::npos && loop < first_ref);
    return info;
  }
  return Status::Error(
      "unrecognised chat template (supported: DeepSeek-R1, Llama 3.1, ChatML/Qwen2.5); "
      "pass --chat-template deepseek-r1|llama3|chatml to choose one");
}

Result<ChatFamily> DetectChatFamily(const std::string& jinja_template) {
  auto info = AnalyzeChatTemplate(jinja_template);
  if (!info.ok()) return info.status();
  return info->family;
}

Result<ChatRender> RenderChatWithSpans(const ChatTemplateInfo& info,
                                       const std::vector<ChatMessage>& messages,
                                       const ChatRenderOptions& opts, const std::string& bos_text) {
  STRATA_RETURN_IF_ERROR(CheckRoles(messages));
  ChatRender r;
  switch (info.family) {
    case ChatFamily::kDeepSeekR1:
      chat_internal::RenderDeepSeekR1(info, messages, opts, bos_text, &r);
      return r;
    case ChatFamily::kLlama3:
      STRATA_RETURN_IF_ERROR(chat_internal::RenderLlama3(messages, opts, bos_text, &r));
      return r;
    case ChatFamily::kChatML:
      STRATA_RETURN_IF_ERROR(chat_internal::RenderChatML(info, messages, opts, &r));
      return r;
  }
  return Status::Error("RenderChat: invalid chat family");
}

Result<ChatRender> RenderChatWithSpans(const ChatTemplateInfo& info,
                                       const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const std::string& bos_text) {
  ChatRenderOptions opts;
  opts.add_generation_prompt = add_generation_prompt;
  return RenderChatWithSpans(info, messages, opts, bos_text);
}

Result<ChatTemplateChoice> ChooseChatTemplate(const std::string& gguf_template,
                                              const std::string& override_name) {
  ChatTemplateChoice c;
  if (!override_name.empty()) {
    STRATA_ASSIGN_OR_RETURN(ChatFamily f, ParseChatFamily(override_name));
    c.info = DefaultChatTemplateInfo(f);
    // The GGUF's own template of that family keeps its details (ChatML system prompt, R1
    // variant).
    if (!gguf_template.empty()) {
      auto found = AnalyzeChatTemplate(gguf_template);
      if (found.ok() && found->family == f) c.info = found.value();
    }
    c.source = "flag";
  } else if (gguf_template.empty()) {
    c.info = DefaultChatTemplateInfo(ChatFamily::kDeepSeekR1);
    c.fallback = true;
    c.source = "fallback";
    c.note = "the model has no tokenizer.chat_template";
  } else {
    auto found = AnalyzeChatTemplate(gguf_template);
    if (found.ok()) {
      c.info = found.value();
      c.source = "gguf";
    } else {
      c.info = DefaultChatTemplateInfo(ChatFamily::kDeepSeekR1);
      c.fallback = true;
      c.source = "fallback";
      c.note = found.status().message();
    }
  }
  c.name = ChatFamilyName(c.info.family);
  return c;
}

Result<std::vector<int32_t>> ChatPromptTokens(const Tokenizer& tok, const ChatTemplateInfo& info,
                                              const std::vector<ChatMessage>& messages,
                                              const ChatRenderOptions& opts,
                                              bool parse_special_in_content, bool* in_reasoning) {
  const std::string bos = tok.bos() >= 0 ? tok.Text(tok.bos()) : std::string();
  STRATA_ASSIGN_OR_RETURN(ChatRender r, RenderChatWithSpans(info, messages, opts, bos));
  const std::string& text = r.text;
  // The templates write BOS themselves: add it only when the rendered text lacks it, so the
  // prompt has exactly one.
  const bool has_bos = !bos.empty() && text.rfind(bos, 0) == 0;
  std::vector<int32_t> ids = parse_special_in_content
                                 ? tok.Encode(text, !has_bos, true)
                                 : tok.EncodeWithPlainSpans(text, !has_bos, r.contents);
  if (tok.bos() >= 0 && ids.size() >= 2 && ids[0] == tok.bos() && ids[1] == tok.bos())
    ids.erase(ids.begin());
  size_t end = text.find_last_not_of(" \t\r\n");
  end = end == std::string::npos ? 0 : end + 1;
  if (in_reasoning) *in_reasoning = end >= 7 && text.compare(end - 7, 7, "<think>") == 0;
  return ids;
}

Result<std::string> RenderChat(const ChatTemplateInfo& info,
                               const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                               const std::string& bos_text) {
  STRATA_ASSIGN_OR_RETURN(ChatRender r,
                          RenderChatWithSpans(info, messages, add_generation_prompt, bos_text));
  return std::move(r.text);
}

Result<std::string> RenderChat(ChatFamily family, const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt, const std::string& bos_text) {
  return RenderChat(DefaultChatTemplateInfo(family), messages, add_generation_prompt, bos_text);
}

}  // namespace strata
