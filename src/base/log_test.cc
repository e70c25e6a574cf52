// The shared log line format (docs/logging.md).
#include <gtest/gtest.h>

#include "base/log.h"

namespace strata {
namespace {

TEST(Log, JsonLineHasTheSharedFields) {
  SetLogComponent("gateway");
  SetLogNode("n1");
  // 2026-12-03T18:33:40.123Z
  const std::string line =
      FormatLogLine(LogFormat::kJson, 1796322820123, LogLevel::kWarn, "said \"hi\"\n", "gw-1f",
                    {{"status", "200"}, {"path", LogQuote("/v1/x")}});
  EXPECT_EQ(line,
            "{\"ts\":\"2026-12-03T18:33:40.123Z\",\"level\":\"warn\",\"component\":\"gateway\","
            "\"node\":\"n1\",\"request_id\":\"gw-1f\",\"msg\":\"said \\\"hi\\\"\\n\","
            "\"status\":200,\"path\":\"/v1/x\"}");
  SetLogNode("");
  const std::string bare = FormatLogLine(LogFormat::kJson, 0, LogLevel::kInfo, "m", "", {});
  EXPECT_EQ(bare,
            "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"level\":\"info\",\"component\":\"gateway\","
            "\"msg\":\"m\"}");
  SetLogComponent("strata");
}

TEST(Log, TextLineAndFormatNames) {
  SetLogComponent("node");
  SetLogNode("a");
  EXPECT_EQ(FormatLogLine(LogFormat::kText, 1000, LogLevel::kError, "boom", "r1", {{"k", "1"}}),
            "1970-01-01T00:00:01.000Z [node a error] [r1] boom k=1");
  SetLogComponent("strata");
  SetLogNode("");
  LogFormat f = LogFormat::kText;
  EXPECT_TRUE(ParseLogFormat("json", &f));
  EXPECT_EQ(f, LogFormat::kJson);
  EXPECT_TRUE(ParseLogFormat("text", &f));
  EXPECT_EQ(f, LogFormat::kText);
  EXPECT_FALSE(ParseLogFormat("xml", &f));
  EXPECT_EQ(LogQuote(std::string("a\x01", 2)), "\"a\\u0001\"");
}

}  // namespace
}  // namespace strata
