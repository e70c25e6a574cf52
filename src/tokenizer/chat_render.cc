// The chat template families rendered in C++, tools included. Each reproduces, byte for
// byte, what its reference Jinja template renders under Hugging Face transformers' settings
// (trim_blocks, lstrip_blocks, tojson = json.dumps(ensure_ascii=False));
// tests/data/templates/golden.json holds the jinja2 renderings the tests compare against.
#include <cstdio>

#include "tokenizer/chat_internal.h"

namespace strata {

using nlohmann::ordered_json;

namespace {

constexpr std::string_view kLlama3DateString = "26 Jul 2024";

void PyJsonString(const std::string& s, std::string* out) {
  *out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          *out += ch;
        }
    }
  }
  *out += '"';
}

void PyJson(const ordered_json& v, int indent, int depth, std::string* out) {
  const bool pretty = indent >= 0;
  auto newline = [&](int d) {
    *out += '\n';
    out->append(static_cast<size_t>(indent) * d, ' ');
  };
  if (v.is_object() || v.is_array()) {
    const bool obj = v.is_object();
    if (v.empty()) {
      *out += obj ? "{}" : "[]";
      return;
    }
    *out += obj ? '{' : '[';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) *out += pretty ? "," : ", ";
      first = false;
      if (pretty) newline(depth + 1);
      if (obj) {
        PyJsonString(it.key(), out);
        *out += ": ";
      }
      PyJson(it.value(), indent, depth + 1, out);
    }
    if (pretty) newline(depth);
    *out += obj ? '}' : ']';
  } else if (v.is_string()) {
    PyJsonString(v.get_ref<const std::string&>(), out);
  } else if (v.is_boolean()) {
    *out += v.get<bool>() ? "true" : "false";
  } else if (v.is_null()) {
    *out += "null";
  } else {
    *out += v.dump();  // numbers: shortest round-trip form, as Python's repr
  }
}

// A call's arguments as the Qwen and Llama templates print them (`arguments | tojson`): the
// JSON object the string holds (clients send OpenAI's string form), else the string itself.
std::string ArgumentsJson(const std::string& arguments) {
  ordered_json parsed = ordered_json::parse(arguments, nullptr, false);
  if (parsed.is_discarded()) return PyJsonDumps(ordered_json(arguments));
  return PyJsonDumps(parsed);
}

}  // namespace

std::string PyJsonDumps(const ordered_json& v, int indent) {
  std::string out;
  PyJson(v, indent, 0, &out);
  return out;
}

namespace chat_internal {

namespace {

// DeepSeek's markup of one call: "function<｜tool▁sep｜>NAME\n```json\nARGS\n```".
void DeepSeekCall(const ToolCall& c, std::string* out) {
  *out += "<｜tool▁call▁begin｜>function<｜tool▁sep｜>";
  *out += c.name;
  *out += "\n```json\n";
  *out += c.arguments;
  *out += "\n```<｜tool▁call▁end｜>";
}

}  // namespace

// DeepSeek-R1: BOS, then the last system message's content, then
// <｜User｜>text / <｜Assistant｜>answer<｜end▁of▁sentence｜>; an assistant turn keeps only
// what follows its last </think>. Tool calls and outputs use DeepSeek's markers; the state
// flags (first call, first output) never reset, as in the template. The template prints no
// tool definitions.
void RenderDeepSeekR1(const ChatTemplateInfo& info, const std::vector<ChatMessage>& messages,
                      const ChatRenderOptions& opts, const std::string& bos, ChatRender* r) {
  std::string_view system;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") system = m.content;
  }
  std::string& out = r->text;
  out = bos;
  AddContent(r, system);
  bool is_first = false, is_tool = false, is_output_first = true;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      is_tool = false;
      out += "<｜User｜>";
      AddContent(r, m.content);
    }
    const bool calls = info.tool_calls_fixed ? !m.tool_calls.empty() : m.content_null;
    if (m.role == "assistant" && calls) {
      is_tool = false;
      for (const auto& call : m.tool_calls) {
        if (!is_first) {
          out += "<｜Assistant｜><｜tool▁calls▁begin｜>";
          DeepSeekCall(call, &out);
          is_first = true;
        } else {
          out += "\n";
          DeepSeekCall(call, &out);
          if (!info.tool_calls_fixed) out += "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>";
        }
      }
      if (info.tool_calls_fixed) out += "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>";
    }
    if (m.role == "assistant" && !m.content_null) {
      if (is_tool) {
        out += "<｜tool▁outputs▁end｜>";
        AddContent(r, m.content);
        out += "<｜end▁of▁sentence｜>";
        is_tool = false;
      } else {
        std::string_view content = m.content;
        const size_t pos = content.rfind("</think>");
        if (pos != std::string_view::npos) content.remove_prefix(pos + 8);
        out += "<｜Assistant｜>";
        AddContent(r, content);
        out += "<｜end▁of▁sentence｜>";
      }
    }
    if (m.role == "tool") {
      is_tool = true;
      out += is_output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
                             : "\n<｜tool▁output▁begin｜>";
      is_output_first = false;
      AddContent(r, m.content);
      out += "<｜tool▁output▁end｜>";
    }
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (opts.add_generation_prompt && !is_tool) {
    out += "<｜Assistant｜>";
    if (!opts.enable_thinking) {
      out += "<think>\n\n</think>\n\n";
    } else if (info.think_in_prompt) {
      out += "<think>\n";
    }
  }
}

namespace {

void Llama3Tools(const ChatRenderOptions& opts, std::string* out) {
  *out +=
      "Given the following functions, please respond with a JSON for a function call "
      "with its proper arguments that best answers the given prompt.\n\n"
      "Respond in the format {\"name\": function name, \"parameters\": dictionary of "
      "argument name and its value}.Do not use variables.\n\n";
  for (const ordered_json& t : opts.tools) {
    *out += PyJsonDumps(t, 4);
    *out += "\n\n";
  }
}

void Header(const std::string& role, std::string* out) {
  *out += "<|start_header_id|>";
  *out += role;
  *out += "<|end_header_id|>\n\n";
}

}  // namespace

// Llama 3.1: BOS, a system header carrying the knowledge/today dates and the (trimmed)
// leading system message, then one header block per remaining message, content trimmed.
// With tools: "Environment: ipython", the definitions in the first user turn, calls as
// {"name", "parameters"} JSON (one per turn), results in ipython turns (content | tojson).
Status RenderLlama3(const std::vector<ChatMessage>& messages, const ChatRenderOptions& opts,
                    const std::string& bos, ChatRender* r) {
  if (messages.empty()) {
    return Status::Error("llama3 chat template: the conversation has no messages");
  }
  const bool tools = !opts.tools.empty();
  size_t first = 0;
  std::string system;
  if (messages[0].role == "system") {
    system = PyTrim(messages[0].content);
    first = 1;
  }
  std::string& out = r->text;
  out = bos;
  Header("system", &out);
  if (tools) out += "Environment: ipython\n";
  out += "Cutting Knowledge Date: December 2023\nToday Date: ";
  out += kLlama3DateString;
  out += "\n\n";
  AddContent(r, system);
  out += "<|eot_id|>";
  if (tools) {
    if (first >= messages.size()) {
      return Status::Error(
          "llama3 chat template: cannot put tools in the first user message "
          "when there is no first user message");
    }
    Header("user", &out);
    Llama3Tools(opts, &out);
    AddContent(r, PyTrim(messages[first].content));
    out += "<|eot_id|>";
    ++first;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (!m.tool_calls.empty()) {
      if (m.tool_calls.size() != 1) {
        return Status::Error(
            "llama3 chat template: this model only supports single tool "
            "calls at once");
      }
      Header("assistant", &out);
      out += "{\"name\": \"" + m.tool_calls[0].name + "\", \"parameters\": ";
      out += ArgumentsJson(m.tool_calls[0].arguments);
      out += "}<|eot_id|>";
    } else if (m.role == "tool") {
      Header("ipython", &out);
      AddContent(r, PyJsonDumps(ordered_json(m.content)));  // a string is iterable: tojson
      out += "<|eot_id|>";
    } else {
      Header(m.role, &out);
      AddContent(r, PyTrim(m.content));
      out += "<|eot_id|>";
    }
  }
  if (opts.add_generation_prompt) Header("assistant", &out);
  return Status::Ok();
}

// ChatML (Qwen2.5): <|im_start|>role\ncontent<|im_end|>\n per message, a default system
// prompt first when the conversation does not open with one. With tools, the system turn
// lists them in <tools></tools>; calls are <tool_call> JSON, results <tool_response> blocks
// in one user turn per run of tool messages.
Status RenderChatML(const ChatTemplateInfo& info, const std::vector<ChatMessage>& messages,
                    const ChatRenderOptions& opts, ChatRender* r) {
  if (messages.empty() && !info.allows_empty) {
    return Status::Error("chatml chat template: the conversation has no messages");
  }
  std::string& out = r->text;
  const bool lead_system = !messages.empty() && messages[0].role == "system";
  if (!opts.tools.empty()) {
    out += "<|im_start|>system\n";
    if (lead_system) {
      AddContent(r, messages[0].content);
    } else {
      out += info.default_system;
    }
    out +=
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query."
        "\n\nYou are provided with function signatures within <tools></tools> XML tags:\n"
        "<tools>";
    for (const ordered_json& t : opts.tools) {
      out += "\n";
      out += PyJsonDumps(t);
    }
    out +=
        "\n</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
        "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";
  } else if (!messages.empty() && !lead_system && !info.default_system.empty()) {
    out += "<|im_start|>system\n";
    out += info.default_system;
    out += "<|im_end|>\n";
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (i == 0 && lead_system && !opts.tools.empty()) continue;  // inside the tools block
    if (m.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n";
      AddContent(r, m.content);
      out += "\n</tool_response>";
      if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      out += "<|im_start|>assistant";
      if (!m.content.empty()) {
        out += "\n";
        AddContent(r, m.content);
      }
      for (const ToolCall& c : m.tool_calls) {
        out += "\n<tool_call>\n{\"name\": \"" + c.name + "\", \"arguments\": ";
        out += ArgumentsJson(c.arguments);
        out += "}\n</tool_call>";
      }
      out += "<|im_end|>\n";
    } else {
      out += "<|im_start|>";
      out += m.role;
      out += "\n";
      AddContent(r, m.content);
      out += "<|im_end|>\n";
    }
  }
  if (opts.add_generation_prompt) out += "<|im_start|>assistant\n";
  return Status::Ok();
}

}  // namespace chat_internal
}  // namespace strata
