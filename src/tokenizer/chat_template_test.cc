// Chat template tests: every case of tests/data/templates/golden.json (rendered by
// jinja2 from the reference templates, see render_golden.py) must be reproduced exactly.
#include "tokenizer/chat_template.h"

#include "gguf/gguf.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace strata {
namespace {

const std::string kDir = std::string(STRATA_TEST_DATA) + "/templates/";
const char* kDeepSeekFile = "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja";
const char* kLlamaFile = "meta-llama-Llama-3.1-8B-Instruct.jinja";
const char* kQwenFile = "Qwen-Qwen2.5-7B-Instruct.jinja";
const char* kGgufChatMLFile = "ggml-vocab-qwen2.jinja";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<ChatMessage> Messages(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j) {
    ChatMessage msg;
    msg.role = m.at("role").get<std::string>();
    if (m.at("content").is_null()) {
      msg.content_null = true;
    } else {
      msg.content = m.at("content").get<std::string>();
    }
    msg.tool_call_id = m.value("tool_call_id", "");
    if (m.contains("tool_calls")) {
      for (const auto& c : m.at("tool_calls")) {
        msg.tool_calls.push_back({c.at("id").get<std::string>(),
                                  c.at("function").at("name").get<std::string>(),
                                  c.at("function").at("arguments").get<std::string>()});
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

// The case's tools, key order as written in golden.json.
std::vector<nlohmann::ordered_json> Tools(const std::string& golden_text, const std::string& name,
                                          const nlohmann::json& c) {
  std::vector<nlohmann::ordered_json> tools;
  if (!c.contains("tools")) return tools;
  static const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(golden_text);
  for (const auto& oc : ordered.at("cases")) {
    if (oc.at("name") == name && oc.contains("tools")) {
      for (const auto& t : oc.at("tools")) tools.push_back(t);
      break;
    }
  }
  EXPECT_FALSE(tools.empty()) << name;
  return tools;
}

TEST(ChatTemplateGolden, EveryCaseMatchesJinja) {
  const std::string golden_text = ReadFile(kDir + "golden.json");
  const nlohmann::json golden = nlohmann::json::parse(golden_text);
  const auto& cases = golden.at("cases");
  ASSERT_GE(cases.size(), 100u);
  std::map<std::string, int> checked;
  int errors_expected = 0;
  for (const auto& c : cases) {
    const std::string file = c.at("template").get<std::string>();
    const std::string label = file + " / " + c.at("name").get<std::string>() +
                              (c.at("add_generation_prompt").get<bool>() ? " +gen" : "");
    SCOPED_TRACE(label);
    auto info = AnalyzeChatTemplate(ReadFile(kDir + file));
    ASSERT_TRUE(info.ok()) << info.status().message();
    ASSERT_EQ(ChatFamilyName(info->family),
              golden.at("templates").at(file).at("family").get<std::string>());

    const auto msgs = Messages(c.at("messages"));
    const bool gen = c.at("add_generation_prompt").get<bool>();
    const std::string bos = c.at("bos_token").get<std::string>();
    ChatRenderOptions opts;
    opts.add_generation_prompt = gen;
    opts.tools = Tools(golden_text, c.at("name").get<std::string>(), c);
    auto rendered = RenderChatWithSpans(*info, msgs, opts, bos);
    Result<std::string> out = rendered.ok() ? Result<std::string>(rendered->text)
                                            : Result<std::string>(rendered.status());
    if (c.at("expected").is_null()) {
      ++errors_expected;
      EXPECT_FALSE(out.ok()) << "jinja failed (" << c.value("jinja_error", "")
                             << ") but got: " << (out.ok() ? *out : "");
    } else {
      ASSERT_TRUE(out.ok()) << out.status().message();
      EXPECT_EQ(*out, c.at("expected").get<std::string>());
    }
    // The reference templates of each family are the family's defaults.
    if (file == kDeepSeekFile || file == kLlamaFile || file == kQwenFile) {
      auto by_family = RenderChatWithSpans(DefaultChatTemplateInfo(info->family), msgs, opts, bos);
      ASSERT_EQ(by_family.ok(), out.ok());
      if (out.ok()) {
        EXPECT_EQ(by_family->text, *out);
      }
    }
    ++checked[file];
  }
  EXPECT_EQ(checked.size(), 6u);
  for (const auto& [file, n] : checked) EXPECT_GE(n, 20) << file;
  EXPECT_GT(errors_expected, 0);  // empty conversations fail where Jinja fails
}

TEST(ChatTemplateDetect, ReferenceTemplates) {
  const std::pair<std::string, ChatFamily> kWant[] = {{kDeepSeekFile, ChatFamily::kDeepSeekR1},
                                                      {kLlamaFile, ChatFamily::kLlama3},
                                                      {kQwenFile, ChatFamily::kChatML},
                                                      {kGgufChatMLFile, ChatFamily::kChatML}};
  for (const auto& [file, family] : kWant) {
    auto f = DetectChatFamily(ReadFile(kDir + file));
    ASSERT_TRUE(f.ok()) << file << ": " << f.status().message();
    EXPECT_EQ(*f, family) << file;
  }
}

TEST(ChatTemplateDetect, ChatMLDefaultSystemPromptFromTemplate) {
  auto qwen = AnalyzeChatTemplate(ReadFile(kDir + kQwenFile));
  ASSERT_TRUE(qwen.ok());
  EXPECT_EQ(qwen->default_system,
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_FALSE(qwen->allows_empty);
  EXPECT_EQ(qwen->default_system, DefaultChatTemplateInfo(ChatFamily::kChatML).default_system);

  auto plain = AnalyzeChatTemplate(ReadFile(kDir + kGgufChatMLFile));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->default_system, "You are a helpful assistant");
  EXPECT_TRUE(plain->allows_empty);

  // A ChatML template without a default system prompt injects none.
  const std::string bare =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
      "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  auto b = AnalyzeChatTemplate(bare);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->family, ChatFamily::kChatML);
  EXPECT_EQ(b->default_system, "");
  auto out = RenderChat(*b, {{"user", "hi"}}, true, "");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

// The ChatML template stored in the qwen2 vocab GGUF is the one golden.json was rendered
// from, and is recognised with its own default system prompt.
TEST(ChatTemplateDetect, GgufQwen2VocabTemplate) {
  const std::string path = std::string(STRATA_TEST_DATA) + "/vocab/ggml-vocab-qwen2.gguf";
  if (!std::ifstream(path).good()) GTEST_SKIP() << path << " not present";
  auto file = gguf::File::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  auto tmpl = (*file)->GetString("tokenizer.chat_template");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().message();
  const std::string text(*tmpl);
  EXPECT_EQ(text, ReadFile(kDir + kGgufChatMLFile));
  auto info = AnalyzeChatTemplate(text);
  ASSERT_TRUE(info.ok()) << info.status().message();
  EXPECT_EQ(info->family, ChatFamily::kChatML);
  EXPECT_EQ(info->default_system, "You are a helpful assistant");
}

TEST(ChatTemplateDetect, UnknownAndUnsupportedTemplatesAreErrors) {
  auto empty = DetectChatFamily("");
  EXPECT_FALSE(empty.ok());
  auto gemma = DetectChatFamily(
      "{% for message in messages %}<start_of_turn>{{ message['role'] }}\n{{ "
      "message['content'] }}<end_of_turn>\n{% endfor %}");
  ASSERT_FALSE(gemma.ok());
  EXPECT_NE(gemma.status().message().find("unrecognised chat template"), std::string::npos);

  // Llama 3.0 (no date header) renders differently from 3.1: refused, not mis-rendered.
  auto llama30 = DetectChatFamily(
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] "
      "| trim + '<|eot_id|>' %}{{ content }}{% endfor %}");
  EXPECT_FALSE(llama30.ok());

  // A DeepSeek template whose generation prompt has no <think>: the original variant.
  auto old_ds = AnalyzeChatTemplate(ReadFile(kDir + "deepseek-r1-original-no-think.jinja"));
  ASSERT_TRUE(old_ds.ok());
  EXPECT_FALSE(old_ds->think_in_prompt);
  EXPECT_FALSE(old_ds->tool_calls_fixed);
  auto fixed = AnalyzeChatTemplate(ReadFile(kDir + "deepseek-r1-tool-calls-fixed.jinja"));
  ASSERT_TRUE(fixed.ok());
  EXPECT_TRUE(fixed->think_in_prompt);
  EXPECT_TRUE(fixed->tool_calls_fixed);
}

TEST(ChatTemplateFamily, NamesRoundTrip) {
  for (ChatFamily f : {ChatFamily::kDeepSeekR1, ChatFamily::kLlama3, ChatFamily::kChatML}) {
    auto p = ParseChatFamily(ChatFamilyName(f));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, f);
  }
  EXPECT_FALSE(ParseChatFamily("gemma").ok());
  EXPECT_FALSE(ParseChatFamily("").ok());
}

TEST(ChatTemplateRender, DeepSeekGenerationPromptOpensThinkBlock) {
  auto out = RenderChat(ChatFamily::kDeepSeekR1, {{"user", "hi"}}, true, "<BOS>");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "<BOS><｜User｜>hi<｜Assistant｜><think>\n");
  auto no_gen = RenderChat(ChatFamily::kDeepSeekR1, {{"user", "hi"}}, false, "<BOS>");
  ASSERT_TRUE(no_gen.ok());
  EXPECT_EQ(*no_gen, "<BOS><｜User｜>hi");
}

TEST(ChatTemplateRender, DeepSeekStripsReasoningOfEarlierAnswers) {
  auto out = RenderChat(ChatFamily::kDeepSeekR1,
                        {{"user", "q"},
                         {"assistant", "<think>\nsecret reasoning\n</think>\n\nvisible"},
                         {"user", "q2"}},
                        true, "");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->find("secret"), std::string::npos);
  EXPECT_NE(out->find("<｜Assistant｜>\n\nvisible<｜end▁of▁sentence｜>"), std::string::npos);
}

TEST(ChatTemplateRender, OtherRolesAreErrors) {
  for (ChatFamily f : {ChatFamily::kDeepSeekR1, ChatFamily::kLlama3, ChatFamily::kChatML}) {
    auto out = RenderChat(f, {{"user", "hi"}, {"function", "42"}}, true, "");
    ASSERT_FALSE(out.ok()) << ChatFamilyName(f);
    EXPECT_NE(out.status().message().find("function"), std::string::npos);
    EXPECT_FALSE(RenderChat(f, {{"User", "hi"}}, false, "").ok());
  }
}

TEST(ChatTemplateRender, Llama3TrimsUnicodeWhitespaceLikePython) {
  // \u3000 and \u00a0 are whitespace to Python's str.strip(); U+200B is not.
  auto out =
      RenderChat(ChatFamily::kLlama3,
                 {{"user", "\u3000\u00a0 x \u2003\n"}, {"assistant", "\u200by\u200b"}}, false, "");
  ASSERT_TRUE(out.ok());
  EXPECT_NE(out->find("<|end_header_id|>\n\nx<|eot_id|>"), std::string::npos);
  EXPECT_NE(out->find("\n\n\u200by\u200b<|eot_id|>"), std::string::npos);
  // Invalid UTF-8 is kept, not trimmed into.
  auto bad = RenderChat(ChatFamily::kLlama3, {{"user", " \xC2"}}, false, "");
  ASSERT_TRUE(bad.ok());
  EXPECT_NE(bad->find("\n\n\xC2<|eot_id|>"), std::string::npos);
}

}  // namespace
}  // namespace strata

namespace strata {
namespace {

TEST(ChatTemplateRender, ThinkingOffClosesAnEmptyThinkBlock) {
  ChatRenderOptions opts;
  opts.enable_thinking = false;
  for (bool think_in_prompt : {true, false}) {
    ChatTemplateInfo info = DefaultChatTemplateInfo(ChatFamily::kDeepSeekR1);
    info.think_in_prompt = think_in_prompt;
    auto r = RenderChatWithSpans(info, {{"user", "hi"}}, opts, "<BOS>");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->text, "<BOS><｜User｜>hi<｜Assistant｜><think>\n\n</think>\n\n");
  }
  // Families without a think block are unchanged.
  auto q =
      RenderChatWithSpans(DefaultChatTemplateInfo(ChatFamily::kChatML), {{"user", "hi"}}, opts, "");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->text.substr(q->text.size() - 22), "<|im_start|>assistant\n");
}

TEST(ChatTemplateChoose, FallbackIsAnnouncedAndFlagWins) {
  auto none = ChooseChatTemplate("", "");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->fallback);
  EXPECT_EQ(none->name, "deepseek-r1");
  auto gemma = ChooseChatTemplate("<start_of_turn>{{ x }}", "");
  ASSERT_TRUE(gemma.ok());
  EXPECT_TRUE(gemma->fallback);
  EXPECT_NE(gemma->note.find("unrecognised"), std::string::npos);
  auto qwen = ChooseChatTemplate(ReadFile(kDir + kQwenFile), "");
  ASSERT_TRUE(qwen.ok());
  EXPECT_FALSE(qwen->fallback);
  EXPECT_EQ(qwen->name, "chatml");
  EXPECT_EQ(qwen->source, "gguf");
  auto flag = ChooseChatTemplate(ReadFile(kDir + kQwenFile), "llama3.1");
  ASSERT_TRUE(flag.ok());
  EXPECT_EQ(flag->info.family, ChatFamily::kLlama3);
  EXPECT_EQ(flag->source, "flag");
  EXPECT_FALSE(ChooseChatTemplate("", "gemma").ok());
}

TEST(PyJson, MatchesPythonJsonDumps) {
  const auto v = nlohmann::ordered_json::parse(
      R"({"b": [1, 2.5, true, null, {}], "a": "x\"\n\u0001é", "e": []})");
  EXPECT_EQ(PyJsonDumps(v), R"({"b": [1, 2.5, true, null, {}], "a": "x\"\n\u0001é", "e": []})");
  EXPECT_EQ(PyJsonDumps(v, 2),
            "{\n  \"b\": [\n    1,\n    2.5,\n    true,\n    null,\n    {}\n  ],\n  \"a\": "
            "\"x\\\"\\n\\u0001é\",\n  \"e\": []\n}");
}

}  // namespace
}  // namespace strata
