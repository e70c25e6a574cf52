#include "gateway/live_stats.h"

#include <gtest/gtest.h>

namespace strata::gateway {
namespace {

TEST(LiveStats, Percentile) {
  EXPECT_EQ(LiveStats::Percentile({}, 50), -1);
  EXPECT_EQ(LiveStats::Percentile({3, 1, 2}, 50), 2);
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(LiveStats::Percentile(v, 90), 90);
  EXPECT_EQ(LiveStats::Percentile(v, 99), 99);
  EXPECT_EQ(LiveStats::Percentile(v, 100), 100);
  EXPECT_EQ(LiveStats::Percentile(v, 0), 1);
}

TEST(LiveStats, RatesAndPercentilesPerTick) {
  LiveStats s;
  s.Tick(1000, 0, 0);  // opens the series
  for (int i = 0; i < 4; ++i) s.Record(0.1 * (i + 1), 0.01 * (i + 1), 10, false);
  s.Record(2.0, -1, -1, true);  // an error: counted, not in the percentiles
  s.Tick(3000, 2, 1);           // two seconds later
  const auto j = s.Json();
  ASSERT_EQ(j["t"].size(), 2u);
  EXPECT_EQ(j["t"][1], 3000);
  EXPECT_DOUBLE_EQ(j["rps"][1].get<double>(), 2.5);   // 5 requests / 2 s
  EXPECT_DOUBLE_EQ(j["tps"][1].get<double>(), 20.0);  // 40 tokens / 2 s
  EXPECT_DOUBLE_EQ(j["eps"][1].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["latency_p50"][1].get<double>(), 200.0);
  EXPECT_DOUBLE_EQ(j["latency_p99"][1].get<double>(), 400.0);
  EXPECT_DOUBLE_EQ(j["ttft_p90"][1].get<double>(), 40.0);
  EXPECT_TRUE(j["ttft_p50"][0].is_null());  // no samples in the first tick
  EXPECT_EQ(j["active"][1], 2);
  EXPECT_EQ(j["queued"][1], 1);
  EXPECT_EQ(j["totals"]["requests"], 5);
  EXPECT_EQ(j["totals"]["errors"], 1);
  EXPECT_EQ(j["totals"]["tokens"], 40);
}

TEST(LiveStats, WindowAndRingsAreBounded) {
  LiveStats::Options o;
  o.points = 5;
  o.events = 3;
  o.window_ticks = 2;
  o.samples_per_tick = 8;
  LiveStats s(o);
  s.Record(5.0, -1, 1, false);  // falls out of the 2-tick window below
  for (int t = 1; t <= 10; ++t) {
    for (int k = 0; k < 100; ++k) s.Record(0.001 * t, -1, 1, false);
    s.Tick(t * 1000, 0, 0);
  }
  for (int e = 0; e < 5; ++e) s.Event({e, "retry", "b", "m" + std::to_string(e), ""});
  const auto j = s.Json();
  EXPECT_EQ(j["t"].size(), 5u);
  EXPECT_EQ(j["t"][0], 6000);
  EXPECT_LE(j["latency_p99"][4].get<double>(), 10.0);  // only ticks 9 and 10 count
  EXPECT_GE(j["latency_p50"][4].get<double>(), 9.0);
  ASSERT_EQ(j["events"].size(), 3u);
  EXPECT_EQ(j["events"][0]["message"], "m4");  // newest first
}

}  // namespace
}  // namespace strata::gateway
