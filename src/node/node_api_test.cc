// The node's API layer without sockets: request parsing and validation, the reasoning split,
// response shapes and the Prometheus exposition.
#include <gtest/gtest.h>

#include "node/api.h"
#include "node/metrics.h"

namespace strata::node {
namespace {

using nlohmann::json;

TEST(Api, ParsesChatRequestAndIgnoresUnknownFields) {
  GenRequest g;
  ApiError e;
  ASSERT_TRUE(ParseGenRequest(Endpoint::kChat, R"({
      "model": "m", "messages": [{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
      "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "top_k": 3, "min_p": 0.1,
      "seed": 42, "stop": ["a", "bc"], "presence_penalty": 0.5, "frequency_penalty": -0.5,
      "stream": true, "stream_options": {"include_usage": true}, "n": 1, "whatever": {"x": 1},
      "user": null})",
                              &g, &e))
      << e.message;
  EXPECT_EQ(g.model, "m");
  ASSERT_EQ(g.messages.size(), 2u);
  EXPECT_EQ(g.messages[1].role, "user");
  EXPECT_EQ(g.messages[1].content, "hi");
  EXPECT_EQ(g.max_tokens, 7);
  EXPECT_EQ(g.sampler.temperature, 0.0f);
  EXPECT_FLOAT_EQ(g.sampler.top_p, 0.5f);
  EXPECT_EQ(g.sampler.top_k, 3);
  EXPECT_TRUE(g.seed_given);
  EXPECT_EQ(g.sampler.seed, 42u);
  EXPECT_EQ(g.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_FLOAT_EQ(g.sampler.frequency_penalty, -0.5f);
  EXPECT_TRUE(g.stream);
  EXPECT_TRUE(g.include_usage);
}

TEST(Api, RejectsBadInput) {
  GenRequest g;
  ApiError e;
  const char* bad[] = {"{",
                       "[]",
                       R"({"prompt": 5})",
                       R"({"prompt": "x", "temperature": "hot"})",
                       R"({"prompt": "x", "max_tokens": 1.5})",
                       R"({"prompt": "x", "max_tokens": -1})",
                       R"({"prompt": "x", "n": 9})",
                       R"({"prompt": "x", "stop": [1]})",
                       R"({"prompt": "x", "stream": "yes"})",
                       R"({"prompt": ""})",
                       R"({})",
                       "{\"prompt\": \"\xff\xfe\"}",
                       R"({"prompt": "x", "top_p": 2})",
                       R"({"prompt": [1, -2]})"};
  for (const char* b : bad) {
    EXPECT_FALSE(ParseGenRequest(Endpoint::kCompletions, b, &g, &e)) << b;
    EXPECT_EQ(e.status, 400) << b;
    EXPECT_FALSE(e.message.empty());
  }
  EXPECT_FALSE(ParseGenRequest(Endpoint::kChat, R"({"messages": []})", &g, &e));
  EXPECT_FALSE(ParseGenRequest(Endpoint::kChat, R"({"messages": [{"content": "x"}]})", &g, &e));
  EXPECT_FALSE(ParseGenRequest(Endpoint::kInference, R"({"max_length": 3})", &g, &e));
  EXPECT_EQ(e.message, "No prompt provided");
  ASSERT_TRUE(ParseGenRequest(Endpoint::kInference, R"({"prompt": "p", "max_length": 3})", &g, &e));
  EXPECT_EQ(g.max_tokens, 3);
  ASSERT_TRUE(ParseGenRequest(Endpoint::kCompletions, R"({"prompt": [1, 2, 3]})", &g, &e));
  EXPECT_TRUE(g.prompt_is_ids);
  EXPECT_EQ(g.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
}

TEST(Api, RefusesDeepNestingWhileParsing) {
  GenRequest g;
  ApiError e;
  // The attack body of issue 11: 100,000 nested arrays in an extra field.
  const std::string deep =
      R"({"prompt":"x","a":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_FALSE(ParseGenRequest(Endpoint::kCompletions, deep, &g, &e));
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.code, "json_too_deep");
  EXPECT_NE(e.message.find("deeper than 64"), std::string::npos) << e.message;
  std::string objs = R"({"prompt":"x","a":)";
  for (int i = 0; i < 100; ++i) objs += R"({"b":)";
  objs += "1" + std::string(100, '}') + "}";
  EXPECT_FALSE(ParseGenRequest(Endpoint::kCompletions, objs, &g, &e));
  EXPECT_EQ(e.code, "json_too_deep");
  // 64 levels in all (the body is level 1) are fine.
  const std::string ok =
      R"({"prompt":"x","a":)" + std::string(63, '[') + std::string(63, ']') + "}";
  EXPECT_TRUE(ParseGenRequest(Endpoint::kCompletions, ok, &g, &e)) << e.message;
  EXPECT_FALSE(ParseGenRequest(Endpoint::kCompletions, "{\"prompt\": ", &g, &e));
  EXPECT_EQ(e.code, "invalid_json");
}

TEST(Api, RefusesEachFieldByName) {
  struct Case {
    Endpoint ep;
    const char* body;
    const char* field;
  } cases[] = {
      {Endpoint::kCompletions, R"({"prompt":"x","stream":"yes"})", "'stream'"},
      {Endpoint::kCompletions, R"({"prompt":"x","stream_options":{"include_usage":"y"}})",
       "include_usage"},
      {Endpoint::kCompletions, R"({"prompt":"x","stream_options":[]})", "stream_options"},
      {Endpoint::kCompletions, R"({"prompt":"x","max_tokens":"5"})", "'max_tokens'"},
      {Endpoint::kCompletions, R"({"prompt":"x","max_tokens":100000000})", "'max_tokens'"},
      {Endpoint::kCompletions, R"({"prompt":"x","max_completion_tokens":-3})",
       "'max_completion_tokens'"},
      {Endpoint::kCompletions, R"({"prompt":"x","temperature":-1})", "'temperature'"},
      {Endpoint::kCompletions, R"({"prompt":"x","temperature":101})", "'temperature'"},
      {Endpoint::kCompletions, R"({"prompt":"x","temperature":-1e300})", "'temperature'"},
      {Endpoint::kCompletions, R"({"prompt":"x","top_p":1.01})", "'top_p'"},
      {Endpoint::kCompletions, R"({"prompt":"x","top_k":"3"})", "'top_k'"},
      {Endpoint::kCompletions, R"({"prompt":"x","min_p":-0.5})", "'min_p'"},
      {Endpoint::kCompletions, R"({"prompt":"x","seed":"1"})", "'seed'"},
      {Endpoint::kCompletions, R"({"prompt":"x","frequency_penalty":9})", "'frequency_penalty'"},
      {Endpoint::kCompletions, R"({"prompt":"x","presence_penalty":[]})", "'presence_penalty'"},
      {Endpoint::kCompletions, R"({"prompt":"x","model":1})", "'model'"},
      {Endpoint::kCompletions, R"({"prompt":"x","n":"1"})", "'n'"},
      {Endpoint::kCompletions, R"({"prompt":"x","return_token_ids":1})", "'return_token_ids'"},
      {Endpoint::kCompletions, R"({"prompt":"x","continue_token_ids":[-1]})", "continue_token_ids"},
      {Endpoint::kCompletions, R"({"prompt":"x","continue_token_ids":[1.5]})",
       "continue_token_ids"},
      {Endpoint::kCompletions, R"({"prompt":"x","continue_token_ids":{}})", "continue_token_ids"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":{}}]})", "'content'"},
      {Endpoint::kChat, R"({"messages":[{"role":["user"],"content":"x"}]})", "'role'"},
      {Endpoint::kChat, R"({"messages":{"role":"user"}})", "'messages'"},
      {Endpoint::kInference, R"({"prompt":"x","max_length":"9"})", "'max_length'"},
  };
  for (const Case& c : cases) {
    GenRequest g;
    ApiError e;
    EXPECT_FALSE(ParseGenRequest(c.ep, c.body, &g, &e)) << c.body;
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_NE(e.message.find(c.field), std::string::npos) << c.body << " -> " << e.message;
    EXPECT_TRUE(e.code == "invalid_type" || e.code == "invalid_value") << e.code;
  }
  // Null counts as absent; /inference does not read the OpenAI streaming fields.
  GenRequest g;
  ApiError e;
  ASSERT_TRUE(ParseGenRequest(Endpoint::kCompletions,
                              R"({"prompt":"x","stream":null,"temperature":null,"model":null})", &g,
                              &e))
      << e.message;
  EXPECT_FALSE(g.stream);
  ASSERT_TRUE(ParseGenRequest(Endpoint::kInference, R"({"prompt":"x","stream":"yes"})", &g, &e))
      << e.message;
}

TEST(Api, ErrorEnvelope) {
  ApiError e;
  e.status = 401;
  e.message = "nope";
  e.type = "authentication_error";
  const json j = json::parse(ErrorJson(e));
  EXPECT_EQ(j["error"]["message"], "nope");
  EXPECT_EQ(j["error"]["type"], "authentication_error");
  EXPECT_TRUE(j["error"]["code"].is_null());
}

// Feeds text in every possible two-piece split and in single bytes: the split never depends
// on how the text arrives.
void CheckSplit(const std::string& text, bool in_reasoning, const std::string& want_r,
                const std::string& want_c) {
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    ReasoningSplitter s(in_reasoning);
    std::string r, c;
    s.Push(text.substr(0, cut), &r, &c);
    s.Push(text.substr(cut), &r, &c);
    s.Flush(&r, &c);
    EXPECT_EQ(r, want_r) << "cut " << cut << " of " << text;
    EXPECT_EQ(c, want_c) << "cut " << cut << " of " << text;
  }
  ReasoningSplitter s(in_reasoning);
  std::string r, c;
  for (char ch : text) s.Push(std::string(1, ch), &r, &c);
  s.Flush(&r, &c);
  EXPECT_EQ(r, want_r);
  EXPECT_EQ(c, want_c);
}

TEST(Api, ReasoningSplit) {
  CheckSplit("Let me think.\n</think>\n\nThe answer is 4.", true, "Let me think.\n",
             "The answer is 4.");
  CheckSplit("still thinking </thi", true, "still thinking </thi", "");
  CheckSplit("<think>hmm</think>ok", false, "hmm", "ok");
  CheckSplit("plain answer <think> kept", false, "", "plain answer <think> kept");
  CheckSplit("a < b </think>x</think>", true, "a < b ", "x</think>");
}

TEST(Api, Chunks) {
  const json c = ChatChunk("id1", 5, "m", {{"content", "hi"}}, "", true);
  EXPECT_EQ(c["object"], "chat.completion.chunk");
  EXPECT_EQ(c["choices"][0]["delta"]["content"], "hi");
  EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(c.contains("usage") && c["usage"].is_null());
  const json u = UsageChunk("id1", 5, "m", true, {3, 4});
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 7);
  EXPECT_EQ(SseEvent(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  const json t = CompletionChunk("id2", 5, "m", "x", "length", false);
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(t.contains("usage"));
}

TEST(Metrics, PrometheusText) {
  Metrics m;
  m.ObserveTtft(0.02);
  m.ObserveTtft(7);
  m.ObserveInterToken(0.003);
  m.CountHttp(200);
  SchedulerStats st{.running = 2, .waiting = 1, .kv_used = 50, .kv_total = 200};
  st.generated_tokens = 9;
  const std::string text = m.Render(&st, "/proc/self/exe");
  for (const char* line :
       {"strata_requests_running 2\n", "strata_requests_waiting 1\n",
        "strata_generation_tokens_total 9\n", "strata_kv_cache_usage_ratio 0.25\n",
        "strata_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n",
        "strata_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n",
        "strata_time_to_first_token_seconds_count 2\n",
        "strata_inter_token_latency_seconds_count 1\n", "process_resident_memory_bytes ",
        "process_cpu_seconds_total ", "strata_model_disk_usage_bytes ",
        "strata_http_responses_total{code=\"200\"} 1\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line;
}

}  // namespace
}  // namespace strata::node

namespace strata::node {
namespace {

// The constraint and thinking fields of issue 15 (docs/constrained-decoding.md).
TEST(Api, ParsesConstraintAndThinkingFields) {
  GenRequest g;
  ApiError e;
  ASSERT_TRUE(ParseGenRequest(Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": true,
          "schema": {"type": "object", "properties": {"zeta": {"type": "string"},
                                                      "alpha": {"type": "integer"}}}}},
      "reasoning_effort": "medium", "ignore_eos": true})",
                              &g, &e))
      << e.message;
  EXPECT_EQ(g.constraint.kind, grammar::ConstraintSpec::kJsonSchema);
  EXPECT_EQ(g.constraint.schema["properties"].begin().key(), "zeta");  // declared order kept
  EXPECT_EQ(g.thinking_budget, kEffortMedium);
  EXPECT_TRUE(g.ignore_eos);
  g = GenRequest();
  ASSERT_TRUE(ParseGenRequest(Endpoint::kCompletions,
                              R"({"prompt": "x", "grammar": "root ::= \"a\"", "thinking_budget": 0,
                                  "reasoning_effort": "high", "response_format": {"type": "text"}})",
                              &g, &e))
      << e.message;
  EXPECT_EQ(g.constraint.kind, grammar::ConstraintSpec::kGbnf);
  EXPECT_EQ(g.constraint.gbnf, "root ::= \"a\"");
  EXPECT_EQ(g.thinking_budget, 0);  // thinking_budget wins over reasoning_effort
  g = GenRequest();
  ASSERT_TRUE(ParseGenRequest(Endpoint::kCompletions,
                              R"({"prompt": "x", "response_format": {"type": "json_object"}})", &g,
                              &e));
  EXPECT_EQ(g.constraint.kind, grammar::ConstraintSpec::kJsonObject);
  EXPECT_EQ(g.thinking_budget, -1);
  EXPECT_FALSE(g.return_tokens_as_token_ids);
  g = GenRequest();
  ASSERT_TRUE(ParseGenRequest(
      Endpoint::kCompletions,
      R"({"prompt": "x", "logprobs": 2, "return_tokens_as_token_ids": true})", &g, &e));
  EXPECT_TRUE(g.return_tokens_as_token_ids);
  for (
      const char* bad :
      {R"({"prompt": "x", "grammar": "root ::= \"a\"", "json_schema": {"type": "string"}})",
       R"({"prompt": "x", "response_format": {"type": "json_object"}, "grammar": "root ::= \"a\""})",
       R"({"prompt": "x", "response_format": {"type": "yaml"}})",
       R"({"prompt": "x", "response_format": {"type": "json_schema", "json_schema": {"name": "n"}}})",
       R"({"prompt": "x", "grammar": 3})", R"({"prompt": "x", "json_schema": "string"})",
       R"({"prompt": "x", "thinking_budget": -1})", R"({"prompt": "x", "thinking_budget": 1.5})",
       R"({"prompt": "x", "reasoning_effort": "extreme"})",
       R"({"prompt": "x", "ignore_eos": "yes"})",
       R"({"prompt": "x", "return_tokens_as_token_ids": 1})"}) {
    g = GenRequest();
    EXPECT_FALSE(ParseGenRequest(Endpoint::kCompletions, bad, &g, &e)) << bad;
    EXPECT_EQ(e.status, 400) << bad;
  }
  Usage u{3, 5, 2};
  EXPECT_EQ(UsageJson(u)["completion_tokens_details"]["reasoning_tokens"], 2);
  EXPECT_FALSE(UsageJson(Usage{3, 5}).contains("completion_tokens_details"));
}

TEST(ApiReasoningFields, ToolsChoicesAndThinking) {
  GenRequest g;
  ApiError e;
  const char* body = R"({"messages": [
      {"role": "user", "content": "w?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
    "tools": [{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"z": {}, "a": {}}}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": false, "chat_template_kwargs": {"enable_thinking": false}})";
  ASSERT_TRUE(ParseGenRequest(Endpoint::kChat, body, &g, &e)) << e.message;
  ASSERT_EQ(g.messages.size(), 3u);
  EXPECT_TRUE(g.messages[1].content_null);
  ASSERT_EQ(g.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(g.messages[1].tool_calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(g.messages[2].tool_call_id, "call_1");
  ASSERT_EQ(g.tools.size(), 1u);
  // Key order as sent (z before a): templates print tools as given.
  EXPECT_EQ(g.tools[0]["function"]["parameters"]["properties"].begin().key(), "z");
  EXPECT_EQ(g.tool_choice, "function");
  EXPECT_EQ(g.tool_choice_name, "get_weather");
  EXPECT_FALSE(g.parallel_tool_calls);
  EXPECT_FALSE(g.enable_thinking);
  ASSERT_TRUE(ParseGenRequest(Endpoint::kChat,
                              R"({"messages": [{"role": "user", "content": "x"}], "think": false})",
                              &g, &e));
  EXPECT_FALSE(g.enable_thinking);
}

TEST(ApiReasoningFields, RefusesBadToolsAndBestOf) {
  GenRequest g;
  ApiError e;
  const char* bad[] = {
      R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes",
          "tools": [{"type": "function", "function": {"name": "f"}}]})",
      R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})",
      R"({"messages": [{"role": "user", "content": "x"}], "tools": {"a": 1}})",
      R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})",
      R"({"messages": [{"role": "user", "content": "x"}], "tool_choice":
          {"type": "function", "function": {"name": "g"}},
          "tools": [{"type": "function", "function": {"name": "f"}}]})",
      R"({"messages": [{"role": "user", "content": "x"}], "best_of": 2})",
      R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3})",
      R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21})",
      R"({"messages": [{"role": "user", "content": "x"}], "think": "no"})",
  };
  for (const char* b : bad) {
    EXPECT_FALSE(ParseGenRequest(Endpoint::kChat, b, &g, &e)) << b;
    EXPECT_EQ(e.status, 400);
  }
  EXPECT_FALSE(
      ParseGenRequest(Endpoint::kCompletions, R"({"prompt": "x", "logprobs": 6})", &g, &e));
  EXPECT_NE(e.message.find("logprobs"), std::string::npos);
}

TEST(ApiReasoningFields, LogprobsAndChoices) {
  GenRequest g;
  ApiError e;
  ASSERT_TRUE(ParseGenRequest(
      Endpoint::kChat,
      R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 5, "n": 4})",
      &g, &e));
  EXPECT_EQ(g.top_logprobs, 5);
  EXPECT_EQ(g.n, 4);
  ASSERT_TRUE(ParseGenRequest(Endpoint::kChat,
                              R"({"messages": [{"role": "user", "content": "x"}]})", &g, &e));
  EXPECT_EQ(g.top_logprobs, -1);
  EXPECT_EQ(g.n, 1);
  ASSERT_TRUE(ParseGenRequest(Endpoint::kCompletions,
                              R"({"prompt": "x", "logprobs": 2, "echo": true})", &g, &e));
  EXPECT_EQ(g.top_logprobs, 2);
  EXPECT_TRUE(g.echo);

  const std::vector<LogprobToken> toks = {{"He", -0.5f, {{"He", -0.5f}, {"A", -1.5f}}},
                                          {"llo", -0.25f, {{"llo", -0.25f}, {"y", -2.0f}}}};
  const auto chat = ChatLogprobs(toks);
  ASSERT_EQ(chat["content"].size(), 2u);
  EXPECT_EQ(chat["content"][0]["token"], "He");
  EXPECT_EQ(chat["content"][0]["bytes"], nlohmann::json::array({72, 101}));
  EXPECT_EQ(chat["content"][1]["top_logprobs"][1]["token"], "y");
  const auto legacy = CompletionLogprobs(toks, 3);
  EXPECT_EQ(legacy["tokens"], nlohmann::json::array({"He", "llo"}));
  EXPECT_EQ(legacy["text_offset"], nlohmann::json::array({3, 5}));
  EXPECT_FLOAT_EQ(legacy["top_logprobs"][0]["A"].get<float>(), -1.5f);
  EXPECT_FLOAT_EQ(legacy["token_logprobs"][1].get<float>(), -0.25f);
}

TEST(ApiReasoningFields, ToolCallsJsonShape) {
  const std::vector<ToolCall> calls = {{NewToolCallId(), "add", "{\"a\":1}"}};
  const auto whole = ToolCallsJson(calls);
  EXPECT_EQ(whole[0]["type"], "function");
  EXPECT_EQ(whole[0]["function"]["arguments"], "{\"a\":1}");
  EXPECT_FALSE(whole[0].contains("index"));
  const std::string cid = whole[0]["id"];
  EXPECT_EQ(cid.rfind("call_", 0), 0u);
  EXPECT_EQ(cid.size(), 29u);
  EXPECT_EQ(ToolCallsJson(calls, 2, true)[0]["index"], 2);
}

}  // namespace
}  // namespace strata::node
