// Tool-call markup parsing: whole answers and the same text fed in every split.
#include "tokenizer/tool_calls.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace strata {
namespace {

struct Parsed {
  std::string content;
  std::vector<ToolCall> calls;
};

Parsed Whole(ChatFamily f, const std::string& text) {
  ToolCallParser p(f);
  Parsed out;
  p.Push(text, &out.content, &out.calls);
  p.Flush(&out.content, &out.calls);
  return out;
}

// Feeds the text in pieces of `step` bytes; checks that no call arrives before its markup
// is complete.
Parsed Pieces(ChatFamily f, const std::string& text, size_t step) {
  ToolCallParser p(f);
  Parsed out;
  for (size_t i = 0; i < text.size(); i += step)
    p.Push(text.substr(i, step), &out.content, &out.calls);
  p.Flush(&out.content, &out.calls);
  return out;
}

void ExpectSameEverySplit(ChatFamily f, const std::string& text, const Parsed& want) {
  for (size_t step = 1; step <= text.size(); ++step) {
    const Parsed got = Pieces(f, text, step);
    ASSERT_EQ(got.content, want.content) << "step " << step;
    ASSERT_EQ(got.calls.size(), want.calls.size()) << "step " << step;
    for (size_t k = 0; k < got.calls.size(); ++k) {
      EXPECT_EQ(got.calls[k].name, want.calls[k].name);
      EXPECT_EQ(got.calls[k].arguments, want.calls[k].arguments);
    }
  }
}

TEST(ToolCallParser, DeepSeekMarkup) {
  const std::string text =
      "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
      "```json\n{\"city\": \"Paris\", \"unit\": \"celsius\"}\n```<｜tool▁call▁end｜>\n"
      "<｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{\"a\":1,\"b\":2}\n```"
      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const Parsed p = Whole(ChatFamily::kDeepSeekR1, text);
  EXPECT_EQ(p.content, "Let me check.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, "{\"city\":\"Paris\",\"unit\":\"celsius\"}");
  EXPECT_EQ(p.calls[1].name, "add");
  EXPECT_EQ(p.calls[1].arguments, "{\"a\":1,\"b\":2}");
  ExpectSameEverySplit(ChatFamily::kDeepSeekR1, text, p);
}

TEST(ToolCallParser, QwenMarkup) {
  const std::string text =
      "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"b\": 2, \"a\": 1}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n"
      "</tool_call>";
  const Parsed p = Whole(ChatFamily::kChatML, text);
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "add");
  EXPECT_EQ(p.calls[0].arguments, "{\"b\":2,\"a\":1}");  // key order kept
  EXPECT_EQ(p.calls[1].arguments, "{\"city\":\"Zürich\"}");
  EXPECT_EQ(p.content, "\n");  // the text between the blocks
  ExpectSameEverySplit(ChatFamily::kChatML, text, p);
}

TEST(ToolCallParser, LlamaJsonAnswer) {
  const std::string text = "{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}";
  const Parsed p = Whole(ChatFamily::kLlama3, text);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "add");
  EXPECT_EQ(p.calls[0].arguments, "{\"a\":1,\"b\":2}");
  EXPECT_EQ(p.content, "");
  ExpectSameEverySplit(ChatFamily::kLlama3, text, p);
  const Parsed tagged = Whole(ChatFamily::kLlama3, "<|python_tag|>" + text);
  ASSERT_EQ(tagged.calls.size(), 1u);
  // JSON that is not a call stays content; so does prose.
  EXPECT_EQ(Whole(ChatFamily::kLlama3, "{\"x\": 1}").content, "{\"x\": 1}");
  EXPECT_TRUE(Whole(ChatFamily::kLlama3, "{\"x\": 1}").calls.empty());
  EXPECT_EQ(Whole(ChatFamily::kLlama3, "Hello {there}").content, "Hello {there}");
}

TEST(ToolCallParser, PlainTextPassesAndLookalikesAreReleased) {
  for (ChatFamily f : {ChatFamily::kDeepSeekR1, ChatFamily::kChatML}) {
    const std::string text = "a <tool_ b <｜tool c";
    const Parsed p = Whole(f, text);
    EXPECT_EQ(p.content, text);
    EXPECT_TRUE(p.calls.empty());
    ExpectSameEverySplit(f, text, p);
  }
}

TEST(ToolCallParser, UnclosedMarkupStaysVisible) {
  const Parsed q = Whole(ChatFamily::kChatML, "x<tool_call>\n{\"name\": \"add\"");
  EXPECT_TRUE(q.calls.empty());
  EXPECT_EQ(q.content, "x<tool_call>\n{\"name\": \"add\"");
  const Parsed d =
      Whole(ChatFamily::kDeepSeekR1,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{");
  EXPECT_TRUE(d.calls.empty());
  EXPECT_NE(d.content.find("add"), std::string::npos);
}

TEST(ToolCallParser, StreamedCallArrivesWhenComplete) {
  ToolCallParser p(ChatFamily::kChatML);
  std::string content;
  std::vector<ToolCall> calls;
  p.Push("Sure.<tool_call>\n{\"name\": \"add\", ", &content, &calls);
  EXPECT_EQ(content, "Sure.");
  EXPECT_TRUE(calls.empty());
  p.Push("\"arguments\": {}}\n</tool_call>", &content, &calls);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].arguments, "{}");
}

TEST(ToolCallMarkup, FramesParseBack) {
  for (ChatFamily f : {ChatFamily::kDeepSeekR1, ChatFamily::kChatML, ChatFamily::kLlama3}) {
    const ToolCallFrame fr = ToolCallMarkup(f, "get_weather");
    const Parsed p = Whole(f, fr.prefix + "{\"city\": \"Oslo\"}" + fr.suffix);
    ASSERT_EQ(p.calls.size(), 1u) << ChatFamilyName(f);
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].arguments, "{\"city\":\"Oslo\"}");
    EXPECT_EQ(p.content, "");
  }
}

}  // namespace
}  // namespace strata
