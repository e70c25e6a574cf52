#include "http/json_guard.h"

#include <pthread.h>

#include <chrono>
#include <string>

#include <gtest/gtest.h>

namespace strata::http {
namespace {

using nlohmann::json;

std::string NestedArrays(int depth, std::string_view inner = "1") {
  return std::string(static_cast<size_t>(depth), '[') + std::string(inner) +
         std::string(static_cast<size_t>(depth), ']');
}

std::string NestedObjects(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(static_cast<size_t>(depth), '}');
  return s;
}

TEST(JsonGuard, ParsesOrdinaryBodies) {
  auto r = ParseJsonLimited(R"({"prompt":"hi","max_tokens":5,"stop":["a","b"],"x":{"y":[1,2]}})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value()["prompt"], "hi");
  EXPECT_EQ(r.value()["x"]["y"][1], 2);
  EXPECT_EQ(JsonDepth(r.value()), 3);
}

TEST(JsonGuard, DepthLimitIsExact) {
  // 64 containers deep (the default) is accepted, 65 refused.
  auto ok = ParseJsonLimited(NestedArrays(64));
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(JsonDepth(ok.value()), 64);
  JsonRefusal why = JsonRefusal::kNone;
  auto bad = ParseJsonLimited(NestedArrays(65), {}, &why);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(why, JsonRefusal::kTooDeep);
  EXPECT_STREQ(JsonRefusalCode(why), "json_too_deep");
  EXPECT_NE(bad.status().message().find("deeper than 64"), std::string::npos);

  EXPECT_TRUE(ParseJsonLimited(NestedObjects(64)).ok());
  EXPECT_FALSE(ParseJsonLimited(NestedObjects(65), {}, &why).ok());
  EXPECT_EQ(why, JsonRefusal::kTooDeep);
  // Mixed, inside a request body.
  std::string body = R"({"prompt":"x","a":)" + NestedArrays(63) + "}";
  EXPECT_TRUE(ParseJsonLimited(body).ok());
  body = R"({"prompt":"x","a":)" + NestedArrays(64) + "}";
  EXPECT_FALSE(ParseJsonLimited(body).ok());
  // A smaller configured limit.
  JsonLimits lim;
  lim.max_depth = 2;
  EXPECT_TRUE(ParseJsonLimited(R"({"a":[1]})", lim).ok());
  EXPECT_FALSE(ParseJsonLimited(R"({"a":[[1]]})", lim).ok());
  EXPECT_TRUE(ParseJsonLimited("7", lim).ok());
}

struct HugeResult {
  bool ok = true;
  JsonRefusal why = JsonRefusal::kNone;
  double seconds = 0;
};

void* ParseHuge(void* arg) {
  auto* out = static_cast<HugeResult*>(arg);
  // The attack body: 100,000 nested arrays (and objects) in a field of a valid request.
  const std::string arrays = R"({"prompt":"x","a":)" + NestedArrays(100000) + "}";
  const std::string objects = R"({"prompt":"x","a":)" + NestedObjects(100000) + "}";
  const auto t0 = std::chrono::steady_clock::now();
  for (const std::string* b : {&arrays, &objects}) {
    auto r = ParseJsonLimited(*b, {}, &out->why);
    out->ok = out->ok && r.ok();
    if (out->why != JsonRefusal::kTooDeep) break;
  }
  out->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return nullptr;
}

TEST(JsonGuard, HundredThousandLevelsRefusedOnASmallStack) {
  // Run on a 256 KiB stack: a recursive parse, copy or destruction of a 100,000-level value
  // would overflow it (and crash the test).
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
  HugeResult res;
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, &attr, ParseHuge, &res), 0);
  pthread_join(t, nullptr);
  pthread_attr_destroy(&attr);
  EXPECT_FALSE(res.ok);
  EXPECT_EQ(res.why, JsonRefusal::kTooDeep);
  EXPECT_LT(res.seconds, 1.0);  // refused at level 65, not after reading 200 KB of brackets
}

TEST(JsonGuard, ValueAndStringLimits) {
  JsonLimits lim;
  lim.max_values = 5;  // the object, 2 keys, 2 values
  EXPECT_TRUE(ParseJsonLimited(R"({"a":1,"b":2})", lim).ok());
  JsonRefusal why = JsonRefusal::kNone;
  EXPECT_FALSE(ParseJsonLimited(R"({"a":1,"b":2,"c":3})", lim, &why).ok());
  EXPECT_EQ(why, JsonRefusal::kTooManyValues);
  EXPECT_FALSE(ParseJsonLimited("[1,2,3,4,5,6]", lim, &why).ok());
  EXPECT_EQ(why, JsonRefusal::kTooManyValues);
  EXPECT_TRUE(ParseJsonLimited("[[],[],[],[]]", lim).ok());

  lim = {};
  lim.max_string_bytes = 4;
  EXPECT_TRUE(ParseJsonLimited(R"({"abcd":"wxyz"})", lim).ok());
  EXPECT_FALSE(ParseJsonLimited(R"({"abcd":"vwxyz"})", lim, &why).ok());
  EXPECT_EQ(why, JsonRefusal::kStringTooLong);
  EXPECT_FALSE(ParseJsonLimited(R"({"abcde":1})", lim, &why).ok());
  EXPECT_EQ(why, JsonRefusal::kStringTooLong);
}

TEST(JsonGuard, InvalidJsonAndUtf8) {
  JsonRefusal why = JsonRefusal::kNone;
  for (const std::string& bad : {std::string("{"), std::string("{\"a\":}"), std::string(""),
                                 std::string("{\"a\":1} x"), std::string("{\"a\":\"\xff\"}"),
                                 std::string("[1,]"), std::string("NaN"), std::string("{'a':1}")}) {
    auto r = ParseJsonLimited(bad, {}, &why);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(why, JsonRefusal::kInvalid) << bad;
    EXPECT_EQ(r.status().message().rfind("invalid JSON: ", 0), 0u) << r.status().message();
  }
  // The message stays short even when the bad token is huge.
  auto r = ParseJsonLimited("{\"a\":\"" + std::string(100000, 'x') + "\xff\"}");
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.status().message().size(), 400u);
  // A number beyond double's range is refused by the parser (never becomes infinity).
  JsonRefusal why2 = JsonRefusal::kNone;
  EXPECT_FALSE(ParseJsonLimited(R"({"t":1e999})", {}, &why2).ok());
  EXPECT_EQ(why2, JsonRefusal::kInvalid);
  auto big = ParseJsonLimited(R"({"t":1e300,"u":-1e300})");
  ASSERT_TRUE(big.ok());
  EXPECT_TRUE(big.value()["t"].is_number_float());
}

TEST(JsonGuard, JsonDepthIsIterative) {
  // Build a deep value by hand (not through the parser) and measure it.
  json j = 1;
  for (int i = 0; i < 2000; ++i) j = json::array({std::move(j)});
  EXPECT_EQ(JsonDepth(j), 2000);
  EXPECT_EQ(JsonDepth(json(5)), 0);
  EXPECT_EQ(JsonDepth(json::object()), 1);
}

}  // namespace
}  // namespace strata::http
