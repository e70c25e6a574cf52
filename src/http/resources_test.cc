#include "http/resources.h"

#include <gtest/gtest.h>

namespace strata::http {
namespace {

TEST(Resources, ParseProcStat) {
  const auto t =
      ParseProcStat("cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 1 2 3\n");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->total, 1000u);
  EXPECT_EQ(t->busy, 160u);  // all but idle and iowait
  EXPECT_FALSE(ParseProcStat("cpu0 1 2 3 4\n").has_value());
  EXPECT_FALSE(ParseProcStat("cpu  1 2\n").has_value());
  EXPECT_DOUBLE_EQ(CpuPercent({100, 1000}, {175, 1100}), 75.0);
  EXPECT_DOUBLE_EQ(CpuPercent({100, 1000}, {100, 1000}), 0.0);
}

TEST(Resources, ParseMeminfo) {
  auto m = ParseMeminfo("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:  250 kB\n");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->total_bytes, 1024000u);
  EXPECT_EQ(m->available_bytes, 256000u);
  // Old kernels: free + buffers + cached.
  m = ParseMeminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\n");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->available_bytes, 350u * 1024);
  EXPECT_FALSE(ParseMeminfo("MemFree: 1 kB\n").has_value());
}

TEST(Resources, WarningCrossingsWithHysteresis) {
  EXPECT_FALSE(NextWarning(false, 90, 90));  // above, not at
  EXPECT_TRUE(NextWarning(false, 90.5, 90));
  EXPECT_TRUE(NextWarning(true, 88.5, 90));   // within the hysteresis: still warning
  EXPECT_FALSE(NextWarning(true, 87.9, 90));  // recovered
  EXPECT_FALSE(NextWarning(false, 100, 0));   // 0: off
}

TEST(Resources, SampleOfThisHost) {
  ResourceMonitor::Options o;
  o.component = "test";
  o.disk_path = "/";
  o.thresholds = {0, 0.001, 0};  // memory warning on (any use is above it); cpu, disk off
  ResourceMonitor m(o);
  m.Sample();
  const ResourceSample s = m.Current();
  ASSERT_TRUE(s.valid);
  EXPECT_GT(s.memory_percent, 0);
  EXPECT_LE(s.memory_percent, 100);
  EXPECT_GT(s.disk_total_bytes, 0u);
  EXPECT_GT(s.rss_bytes, 0u);
  EXPECT_TRUE(s.warning[static_cast<int>(Resource::kMemory)]);
  EXPECT_FALSE(s.warning[static_cast<int>(Resource::kCpu)]);
  const auto j = m.Json();
  EXPECT_EQ(j["warnings"], nlohmann::json::array({"memory"}));
  EXPECT_EQ(j["memory_pressure"], true);
  std::string text;
  m.RenderMetrics(&text);
  for (const char* line : {"strata_resource_warning{resource=\"memory\"} 1\n",
                           "strata_resource_warning{resource=\"disk\"} 0\n",
                           "\nstrata_host_memory_percent ", "\nstrata_process_resident_bytes "})
    EXPECT_NE(text.find(line), std::string::npos) << line;
}

}  // namespace
}  // namespace strata::http
