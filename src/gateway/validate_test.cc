// The gateway's request-body validation: the fields it reads (and forwards) are type- and
// range-checked, so no later read can throw and a bad body is answered 400 at the door.
#include <gtest/gtest.h>

#include "gateway/validate.h"
#include "http/json_guard.h"

namespace strata::gateway {
namespace {

using nlohmann::json;

std::optional<ValidationError> V(std::string_view path, const char* body) {
  auto j = ::strata::http::ParseJsonLimited(body);
  EXPECT_TRUE(j.ok()) << body;
  return ValidateGatewayBody(path, j.value());
}

TEST(GatewayValidate, AcceptsOrdinaryRequests) {
  EXPECT_FALSE(V("/v1/completions", R"({"prompt":"x","max_tokens":5,"stream":true,
      "stream_options":{"include_usage":true},"temperature":0.7,"top_p":1,"seed":7,
      "stop":["\n"],"model":"m","user":"u","return_token_ids":false,
      "continue_token_ids":[1,2],"whatever":{"deep":[1,[2]]}})"));
  EXPECT_FALSE(V("/v1/completions", R"({"prompt":[1,2,3],"max_tokens":null,"stream":null})"));
  EXPECT_FALSE(V("/v1/completions", R"({"prompt":["one string"],"max_tokens":5.0})"));
  EXPECT_FALSE(V("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"},
      {"role":"assistant","content":null},
      {"role":"user","content":[{"type":"text","text":"a"}]}],"max_completion_tokens":3})"));
  EXPECT_FALSE(V("/api/inference", R"({"prompt":"x","max_length":10})"));
  // /inference does not read "stream": a legacy client's odd value is not refused there.
  EXPECT_FALSE(V("/api/inference", R"({"prompt":"x","stream":"yes"})"));
  // Other paths are not generation requests.
  EXPECT_FALSE(V("/v1/models", R"({"stream":"yes"})"));
}

TEST(GatewayValidate, RefusesWrongTypesNamingTheField) {
  struct Case {
    const char* path;
    const char* body;
    const char* field;
  } cases[] = {
      {"/v1/completions", R"({"prompt":"x","stream":"yes"})", "stream"},
      {"/v1/completions", R"({"prompt":"x","stream":1})", "stream"},
      {"/v1/completions", R"({"prompt":"x","max_tokens":"5"})", "max_tokens"},
      {"/v1/completions", R"({"prompt":"x","max_tokens":1.5})", "max_tokens"},
      {"/v1/completions", R"({"prompt":"x","max_completion_tokens":[]})", "max_completion_tokens"},
      {"/v1/completions", R"({"prompt":"x","temperature":"hot"})", "temperature"},
      {"/v1/completions", R"({"prompt":"x","model":5})", "model"},
      {"/v1/completions", R"({"prompt":"x","seed":"7"})", "seed"},
      {"/v1/completions", R"({"prompt":"x","seed":1.5})", "seed"},
      {"/v1/completions", R"({"prompt":"x","n":"1"})", "n"},
      {"/v1/completions", R"({"prompt":"x","return_token_ids":"true"})", "return_token_ids"},
      {"/v1/completions", R"({"prompt":"x","continue_token_ids":"1,2"})", "continue_token_ids"},
      {"/v1/completions", R"({"prompt":"x","continue_token_ids":[1,"2"]})", "continue_token_ids"},
      {"/v1/completions", R"({"prompt":"x","stream_options":true})", "stream_options"},
      {"/v1/completions", R"({"prompt":"x","stream_options":{"include_usage":1}})",
       "stream_options.include_usage"},
      {"/v1/completions", R"({"prompt":"x","stop":[1]})", "stop"},
      {"/v1/completions", R"({"prompt":"x","stop":{}})", "stop"},
      {"/v1/completions", R"({"prompt":{"a":1}})", "prompt"},
      {"/v1/completions", R"({"prompt":[1,"a"]})", "prompt"},
      {"/v1/chat/completions", R"({"messages":"hi"})", "messages"},
      {"/v1/chat/completions", R"({"messages":[1]})", "messages"},
      {"/v1/chat/completions", R"({"messages":[{"role":1,"content":"x"}]})", "messages"},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":5}]})", "messages"},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":[{"type":"image"}]}]})",
       "messages"},
      {"/api/inference", R"({"prompt":5})", "prompt"},
      {"/api/inference", R"({"prompt":"x","max_length":"9"})", "max_length"},
  };
  for (const Case& c : cases) {
    auto e = V(c.path, c.body);
    ASSERT_TRUE(e) << c.body;
    EXPECT_EQ(e->status, 400);
    EXPECT_EQ(e->field, c.field) << c.body;
    EXPECT_NE(e->message.find(std::string(c.field).substr(0, std::string(c.field).find('.'))),
              std::string::npos)
        << e->message;
    EXPECT_EQ(e->code, "invalid_type") << c.body;
  }
}

TEST(GatewayValidate, RefusesOutOfRangeValues) {
  const char* bad[] = {
      R"({"prompt":"x","temperature":-0.1})",
      R"({"prompt":"x","temperature":101})",
      R"({"prompt":"x","temperature":1e300})",
      R"({"prompt":"x","top_p":1.5})",
      R"({"prompt":"x","top_p":-1})",
      R"({"prompt":"x","min_p":2})",
      R"({"prompt":"x","max_tokens":-1})",
      R"({"prompt":"x","max_tokens":99999999999})",
      R"({"prompt":"x","max_tokens":1e300})",
      R"({"prompt":"x","n":9})",
      R"({"prompt":"x","top_k":-2})",
      R"({"prompt":"x","presence_penalty":3})",
      R"({"prompt":"x","continue_token_ids":[-1]})",
      R"({"prompt":"x","continue_token_ids":[4294967296]})",
      R"({"prompt":[1,-2]})",
      R"({"prompt":""})",
      R"({"prompt":[]})",
      R"({})",
      R"({"prompt":"x","stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o",
          "p","q"]})",
  };
  for (const char* b : bad) {
    auto e = V("/v1/completions", b);
    ASSERT_TRUE(e) << b;
    EXPECT_EQ(e->status, 400);
    EXPECT_FALSE(e->message.empty());
  }
  auto e = V("/v1/completions", R"({"prompt":"x","temperature":150})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "invalid_value");
  EXPECT_NE(e->message.find("'temperature' must be between 0 and 100"), std::string::npos);
  EXPECT_TRUE(V("/v1/chat/completions", R"({"messages":[]})"));
  EXPECT_TRUE(V("/v1/chat/completions", R"({"messages":[{"content":"x"}]})"));
  e = V("/api/inference", R"({"max_length":3})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->message, "No prompt provided");
}

TEST(GatewayValidate, NoFieldReadAfterwardsCanThrow) {
  // What the gateway reads from a body that passed: value() with a typed default throws on a
  // wrong type, so every such read must be safe once validation passed.
  const char* ok[] = {R"({"prompt":"x","stream":true,"return_token_ids":true,"model":"m"})",
                      R"({"prompt":"x","stream":null,"return_token_ids":null,"model":null})"};
  for (const char* b : ok) {
    auto j = ::strata::http::ParseJsonLimited(b).value();
    ASSERT_FALSE(ValidateGatewayBody("/v1/completions", j));
    json nonull = j;
    DropNullFields(&nonull);
    EXPECT_FALSE(nonull.contains("stream") && nonull["stream"].is_null());
    EXPECT_NO_THROW((void)nonull.value("stream", false));
    EXPECT_NO_THROW((void)nonull.value("return_token_ids", false));
    EXPECT_NO_THROW((void)nonull.value("model", ""));
  }
}

}  // namespace
}  // namespace strata::gateway

#include "gateway/accounting.h"

namespace strata::gateway {
namespace {

TEST(GatewayAccounting, BillsRealUsageAndContinuedIds) {
  const nlohmann::json plain = {{"prompt", "x"}};
  // Usage known: prompt + completion, whatever max_tokens said (or did not say).
  EXPECT_EQ(BilledTokens(plain, 100, 10, 500, 281), 510);
  // Ids the client continues from count as prompt tokens.
  const nlohmann::json cont = {{"prompt", "x"}, {"continue_token_ids", {1, 2, 3, 4}}};
  EXPECT_EQ(BilledTokens(cont, 100, 10, 5, 300), 19);
  // Only the completion known (a cut stream): the prompt is estimated from the body.
  EXPECT_EQ(BilledTokens(plain, 400, -1, 7, 300), 107);
  // Nothing known: the reservation stands.
  EXPECT_EQ(BilledTokens(plain, 400, -1, -1, 300), 300);
}

TEST(GatewayAccounting, ClientUsageWish) {
  using nlohmann::json;
  EXPECT_FALSE(ClientWantsStreamUsage(json{{"stream", true}}));
  EXPECT_FALSE(ClientWantsStreamUsage(json{{"stream_options", {{"include_usage", false}}}}));
  EXPECT_FALSE(ClientWantsStreamUsage(json{{"stream_options", nullptr}}));
  EXPECT_TRUE(ClientWantsStreamUsage(json{{"stream_options", {{"include_usage", true}}}}));
}

}  // namespace
}  // namespace strata::gateway
