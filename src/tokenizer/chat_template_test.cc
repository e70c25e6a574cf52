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

nlohmann::json LoadGolden() {
  return nlohmann::json::parse(ReadFile(kDir + "golden.json"));
}

std::vector<ChatMessage> Messages(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j) {
    out.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  }
  return out;
}

TEST(ChatTemplateGolden, EveryCaseMatchesJinja) {
  const nlohmann::json golden = LoadGolden();
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
    auto out = RenderChat(*info, msgs, gen, bos);
    if (c.at("expected").is_null()) {
      ++errors_expected;
      EXPECT_FALSE(out.ok()) << "jinja failed (" << c.value("jinja_error", "") << ") but got: "
                             << (out.ok() ? *out : "");
    } else {
      ASSERT_TRUE(out.ok()) << out.status().message();
      EXPECT_EQ(*out, c.at("expected").get<std::string>());
    }
    // The reference templates of each family are the family's defaults.
    if (file != kGgufChatMLFile) {
      auto by_family = RenderChat(info->family, msgs, gen, bos);
      ASSERT_EQ(by_family.ok(), out.ok());
      if (out.ok()) {
        EXPECT_EQ(*by_family, *out);
      }
    }
    ++checked[file];
  }
  EXPECT_EQ(checked.size(), 4u);
  for (const auto& [file, n] : checked) EXPECT_GE(n, 20) << file;
  EXPECT_GT(errors_expected, 0);  // empty conversations fail where Jinja fails
}

TEST(ChatTemplateDetect, ReferenceTemplates) {
  auto ds = DetectChatFamily(ReadFile(kDir + kDeepSeekFile));
  ASSERT_TRUE(ds.ok()) << ds.status().message();
  EXPECT_EQ(*ds, ChatFamily::kDeepSeekR1);
  auto ll = DetectChatFamily(ReadFile(kDir + kLlamaFile));
  ASSERT_TRUE(ll.ok()) << ll.status().message();
  EXPECT_EQ(*ll, ChatFamily::kLlama3);
  auto qw = DetectChatFamily(ReadFile(kDir + kQwenFile));
  ASSERT_TRUE(qw.ok()) << qw.status().message();
  EXPECT_EQ(*qw, ChatFamily::kChatML);
  auto gg = DetectChatFamily(ReadFile(kDir + kGgufChatMLFile));
  ASSERT_TRUE(gg.ok()) << gg.status().message();
  EXPECT_EQ(*gg, ChatFamily::kChatML);
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

  // A DeepSeek template whose generation prompt has no <think>.
  std::string old_ds = ReadFile(kDir + kDeepSeekFile);
  const std::string think = "<｜Assistant｜><think>\\n";
  const size_t pos = old_ds.find(think);
  ASSERT_NE(pos, std::string::npos);
  old_ds.replace(pos, think.size(), "<｜Assistant｜>");
  EXPECT_FALSE(DetectChatFamily(old_ds).ok());
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
    auto out = RenderChat(f, {{"user", "hi"}, {"tool", "42"}}, true, "");
    ASSERT_FALSE(out.ok()) << ChatFamilyName(f);
    EXPECT_NE(out.status().message().find("tool"), std::string::npos);
    EXPECT_FALSE(RenderChat(f, {{"User", "hi"}}, false, "").ok());
  }
}

TEST(ChatTemplateRender, Llama3TrimsUnicodeWhitespaceLikePython) {
  // \u3000 and \u00a0 are whitespace to Python's str.strip(); U+200B is not.
  auto out = RenderChat(ChatFamily::kLlama3,
                        {{"user", "\u3000\u00a0 x \u2003\n"}, {"assistant", "\u200by\u200b"}},
                        false, "");
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
