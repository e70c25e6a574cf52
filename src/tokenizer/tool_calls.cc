#include "tokenizer/tool_calls.h"

#include <algorithm>

namespace strata {

using nlohmann::ordered_json;

namespace {

constexpr std::string_view kDsCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDsCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDsCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDsCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDsSep = "<｜tool▁sep｜>";
constexpr std::string_view kQwenBegin = "<tool_call>";
constexpr std::string_view kQwenEnd = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kSpace = " \t\r\n";

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(kSpace);
  return s.substr(b, e - b + 1);
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Arguments as compact JSON (key order kept), or the raw text when it is not JSON.
std::string NormalizeArguments(std::string_view raw) {
  ordered_json j = ordered_json::parse(raw, nullptr, false);
  if (j.is_discarded()) return std::string(Trim(raw));
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

// {"name": ..., "arguments"|"parameters": {...}}: the call, or false.
bool ParseJsonCall(std::string_view body, ToolCall* call) {
  ordered_json j = ordered_json::parse(Trim(body), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string()) return false;
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  if (args == j.end()) return false;
  call->name = name->get<std::string>();
  call->arguments = args->is_string()
                        ? args->get<std::string>()
                        : args->dump(-1, ' ', false, ordered_json::error_handler_t::replace);
  return true;
}

// "function<｜tool▁sep｜>NAME\n```json\nARGS\n```" (the text between a call's markers).
bool ParseDeepSeekCall(std::string_view body, ToolCall* call) {
  const size_t sep = body.find(kDsSep);
  if (sep == std::string_view::npos) return false;
  std::string_view rest = body.substr(sep + kDsSep.size());
  const size_t nl = rest.find('\n');
  call->name = std::string(Trim(rest.substr(0, nl)));
  if (call->name.empty()) return false;
  std::string_view args = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  args = Trim(args);
  if (StartsWith(args, "```")) {
    const size_t line = args.find('\n');
    args = line == std::string_view::npos ? std::string_view() : args.substr(line + 1);
  }
  args = Trim(args);
  if (args.size() >= 3 && args.substr(args.size() - 3) == "```") args.remove_suffix(3);
  call->arguments = NormalizeArguments(args);
  return true;
}

}  // namespace

size_t PartialTag(std::string_view s, std::string_view tag) {
  for (size_t len = std::min(s.size(), tag.size() - 1); len > 0; --len)
    if (s.substr(s.size() - len) == tag.substr(0, len)) return len;
  return 0;
}

void ToolCallParser::Push(std::string_view text, std::string* content,
                          std::vector<ToolCall>* calls) {
  buf_.append(text);
  Drain(false, content, calls);
}

void ToolCallParser::Flush(std::string* content, std::vector<ToolCall>* calls) {
  Drain(true, content, calls);
}

// Inside DeepSeek's block: completed calls out, the end marker leaves it. Returns false when
// it must wait for more text (or, when final, gave up on what is left).
bool ToolCallParser::DrainDeepSeekBlock(bool final, std::vector<ToolCall>* calls) {
  while (true) {
    const size_t p = buf_.find_first_not_of(kSpace);
    if (p == std::string::npos) return false;
    std::string_view rest = std::string_view(buf_).substr(p);
    if (StartsWith(rest, kDsCallsEnd)) {
      buf_.erase(0, p + kDsCallsEnd.size());
      in_block_ = false;
      return true;
    }
    if (StartsWith(rest, kDsCallBegin)) {
      const size_t end = rest.find(kDsCallEnd);
      if (end == std::string_view::npos) return false;
      ToolCall call;
      if (ParseDeepSeekCall(rest.substr(kDsCallBegin.size(), end - kDsCallBegin.size()), &call))
        calls->push_back(std::move(call));
      buf_.erase(0, p + end + kDsCallEnd.size());
      continue;
    }
    if (!final &&
        (kDsCallsEnd.substr(0, rest.size()) == rest || kDsCallBegin.substr(0, rest.size()) == rest))
      return false;     // a marker still arriving
    in_block_ = false;  // the model left the markup without closing it: text again
    return true;
  }
}

void ToolCallParser::Drain(bool final, std::string* content, std::vector<ToolCall>* calls) {
  if (family_ == ChatFamily::kLlama3) {
    if (!started_) {
      const size_t p = buf_.find_first_not_of(kSpace);
      if (p == std::string::npos && !final) return;
      std::string_view rest =
          p == std::string::npos ? std::string_view() : std::string_view(buf_).substr(p);
      if (StartsWith(rest, "{") || StartsWith(rest, kPythonTag)) {
        in_block_ = true;
      } else if (!final && kPythonTag.substr(0, rest.size()) == rest) {
        return;
      }
      started_ = true;
    }
    if (in_block_ && !final) return;  // a JSON call is decided at the end
    ToolCall call;
    std::string_view body = Trim(buf_);
    if (StartsWith(body, kPythonTag)) body.remove_prefix(kPythonTag.size());
    if (in_block_ && ParseJsonCall(body, &call)) {
      calls->push_back(std::move(call));
    } else {
      content->append(buf_);
    }
    buf_.clear();
    in_block_ = false;
    return;
  }
  const bool ds = family_ == ChatFamily::kDeepSeekR1;
  while (!buf_.empty()) {
    if (in_block_) {
      if (ds) {
        if (DrainDeepSeekBlock(final, calls)) continue;
        if (final) {  // never closed: the text stays visible
          content->append(buf_);
          buf_.clear();
          in_block_ = false;
        }
        return;
      }
      const size_t end = buf_.find(kQwenEnd);
      if (end == std::string::npos) {
        if (final) {
          content->append(kQwenBegin);
          content->append(buf_);
          buf_.clear();
          in_block_ = false;
        }
        return;
      }
      ToolCall call;
      if (ParseJsonCall(std::string_view(buf_).substr(0, end), &call)) {
        calls->push_back(std::move(call));
      } else {
        content->append(kQwenBegin);
        content->append(buf_, 0, end + kQwenEnd.size());
      }
      buf_.erase(0, end + kQwenEnd.size());
      in_block_ = false;
      continue;
    }
    // Plain text: up to the first opening marker.
    size_t open = std::string::npos, skip = 0;
    if (ds) {
      const size_t a = buf_.find(kDsCallsBegin), b = buf_.find(kDsCallBegin);
      if (a != std::string::npos && (b == std::string::npos || a <= b)) {
        open = a;
        skip = kDsCallsBegin.size();
      } else if (b != std::string::npos) {
        open = b;  // a call without the block's opening: the block starts here
      }
    } else {
      open = buf_.find(kQwenBegin);
      skip = kQwenBegin.size();
    }
    if (open != std::string::npos) {
      content->append(buf_, 0, open);
      buf_.erase(0, open + skip);
      in_block_ = true;
      continue;
    }
    size_t hold = 0;
    if (!final) {
      hold = ds ? std::max(PartialTag(buf_, kDsCallsBegin), PartialTag(buf_, kDsCallBegin))
                : PartialTag(buf_, kQwenBegin);
    }
    content->append(buf_, 0, buf_.size() - hold);
    buf_.erase(0, buf_.size() - hold);
    return;
  }
}

ToolCallFrame ToolCallMarkup(ChatFamily family, const std::string& name) {
  const std::string quoted = PyJsonDumps(ordered_json(name));
  switch (family) {
    case ChatFamily::kDeepSeekR1:
      return {std::string(kDsCallsBegin) + std::string(kDsCallBegin) + "function" +
                  std::string(kDsSep) + name + "\n```json\n",
              "\n```" + std::string(kDsCallEnd) + std::string(kDsCallsEnd)};
    case ChatFamily::kChatML:
      return {std::string(kQwenBegin) + "\n{\"name\": " + quoted + ", \"arguments\": ",
              "}\n" + std::string(kQwenEnd)};
    case ChatFamily::kLlama3: return {"{\"name\": " + quoted + ", \"parameters\": ", "}"};
  }
  return {};
}

}  // namespace strata
