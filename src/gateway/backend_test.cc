#include "gateway/backend.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>

namespace strata::gateway {
namespace {

std::vector<BackendInfo> Three() {
  std::vector<BackendInfo> v;
  for (const char* n : {"a", "b", "c"}) v.push_back({n, "127.0.0.1", 1, "replica", "auto"});
  return v;
}

std::unique_ptr<BackendPool> MakePoolPtr(cluster::RoutingPolicy policy,
                                         cluster::CircuitConfig cc = {},
                                         cluster::HealthConfig hc = {}) {
  cluster::RoutingConfig rc;
  rc.policy = policy;
  auto p = std::make_unique<BackendPool>(Three(), rc, hc, cc);
  for (int i = 0; i < 3; ++i) p->ProbeResult(i, true, false, 1, 0, 4, 0, "");
  return p;
}

TEST(BackendPool, UnprobedBackendsGetNoTraffic) {
  BackendPool p(Three(), {}, {}, {});
  EXPECT_EQ(p.Pick("", {}), -1);
  p.ProbeResult(1, true, false, 1, 0, 4, 0, "");
  EXPECT_EQ(p.Pick("", {}), 1);
  p.ProbeResult(2, false, /*loading=*/true, 1, 0, 4, 0, "loading");
  EXPECT_EQ(p.Snapshot()[2].health, HealthState::kLoading);
  EXPECT_EQ(p.HealthyCount(), 1);
}

TEST(BackendPool, RoundRobinIsEven) {
  auto pp = MakePoolPtr(cluster::RoutingPolicy::kRoundRobin);
  auto& p = *pp;
  std::map<int, int> n;
  for (int k = 0; k < 30; ++k) {
    const int b = p.Pick("", {});
    ++n[b];
    p.Release(b, Outcome::kSuccess, 0.01, -1, "");
  }
  EXPECT_EQ(n[0], 10);
  EXPECT_EQ(n[1], 10);
  EXPECT_EQ(n[2], 10);
}

TEST(BackendPool, LeastOutstandingPicksTheIdlest) {
  auto pp = MakePoolPtr(cluster::RoutingPolicy::kLeastOutstanding);
  auto& p = *pp;
  // Hold two on whatever is picked first, one on the second: the third must be the idle one.
  const int a = p.Pick("", {});
  const int b = p.Pick("", {});
  EXPECT_NE(a, b);
  const int c = p.Pick("", {});
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
  p.Release(b, Outcome::kSuccess, 0.01, -1, "");
  p.Release(c, Outcome::kSuccess, 0.01, -1, "");
  const int d = p.Pick("", {});
  EXPECT_NE(d, a);  // a still has one outstanding
}

TEST(BackendPool, PowerOfTwoAvoidsTheBusiest) {
  auto pp = MakePoolPtr(cluster::RoutingPolicy::kPowerOfTwo);
  auto& p = *pp;
  // Load backend 0 heavily (pick with the others excluded).
  for (int k = 0; k < 10; ++k) ASSERT_EQ(p.Pick("", {1, 2}), 0);
  std::map<int, int> n;
  for (int k = 0; k < 200; ++k) {
    const int b = p.Pick("", {});
    ++n[b];
    p.Release(b, Outcome::kSuccess, 0.01, -1, "");
  }
  EXPECT_EQ(n[0], 0);  // always the less loaded of any two sampled
  EXPECT_GT(n[1], 50);
  EXPECT_GT(n[2], 50);
}

TEST(BackendPool, AffinityIsStickyAndSpreads) {
  auto pp = MakePoolPtr(cluster::RoutingPolicy::kAffinity);
  auto& p = *pp;
  std::map<int, int> owners;
  for (int s = 0; s < 60; ++s) {
    const std::string key = "session-" + std::to_string(s);
    const int first = p.Pick(key, {});
    p.Release(first, Outcome::kSuccess, 0.01, -1, "");
    for (int k = 0; k < 5; ++k) {
      const int again = p.Pick(key, {});
      EXPECT_EQ(again, first) << key;
      p.Release(again, Outcome::kSuccess, 0.01, -1, "");
    }
    ++owners[first];
  }
  EXPECT_EQ(owners.size(), 3u);  // the ring spreads sessions over every backend
  for (auto& [b, n] : owners) EXPECT_GT(n, 5);
}

TEST(BackendPool, AffinityYieldsWhenTooUneven) {
  auto pp = MakePoolPtr(cluster::RoutingPolicy::kAffinity);
  auto& p = *pp;
  const int home = p.Pick("s", {});
  // Pile requests on the home backend (excluding the others) up to the limit.
  for (int k = 0; k < 8; ++k) {
    std::vector<int> ex;
    for (int i = 0; i < 3; ++i)
      if (i != home) ex.push_back(i);
    p.Pick("s", ex);
  }
  EXPECT_NE(p.Pick("s", {}), home);
}

TEST(BackendPool, CircuitBreakerOpensAndHalfOpens) {
  cluster::CircuitConfig cc;
  cc.failure_threshold = 2;
  cc.open_ms = 100;
  auto pp = MakePoolPtr(cluster::RoutingPolicy::kRoundRobin, cc);
  auto& p = *pp;
  const auto t0 = Clock::now();
  for (int k = 0; k < 2; ++k) {
    ASSERT_EQ(p.Pick("", {1, 2}, t0), 0);
    p.Release(0, Outcome::kFailure, -1, -1, "refused", t0);
  }
  EXPECT_EQ(p.Snapshot()[0].circuit, CircuitState::kOpen);
  EXPECT_EQ(p.Pick("", {1, 2}, t0), -1);  // ejected
  const auto later = t0 + std::chrono::milliseconds(150);
  EXPECT_EQ(p.Pick("", {1, 2}, later), 0);   // half-open trial
  EXPECT_EQ(p.Pick("", {1, 2}, later), -1);  // one trial at a time
  p.Release(0, Outcome::kFailure, -1, -1, "refused", later);
  EXPECT_EQ(p.Snapshot()[0].circuit, CircuitState::kOpen);  // failed trial: open again
  const auto later2 = later + std::chrono::milliseconds(150);
  EXPECT_EQ(p.Pick("", {1, 2}, later2), 0);
  p.Release(0, Outcome::kSuccess, 0.01, -1, "", later2);
  EXPECT_EQ(p.Snapshot()[0].circuit, CircuitState::kClosed);
}

TEST(BackendPool, HealthThresholds) {
  cluster::HealthConfig hc;
  hc.unhealthy_threshold = 2;
  hc.healthy_threshold = 2;
  auto pp = MakePoolPtr(cluster::RoutingPolicy::kRoundRobin, {}, hc);
  auto& p = *pp;
  p.ProbeResult(0, false, false, 1, 0, 0, 0, "refused");
  EXPECT_EQ(p.Snapshot()[0].health, HealthState::kHealthy);  // one failure is tolerated
  p.ProbeResult(0, false, false, 1, 0, 0, 0, "refused");
  EXPECT_EQ(p.Snapshot()[0].health, HealthState::kUnhealthy);
  EXPECT_EQ(p.Pick("", {1, 2}), -1);
  p.ProbeResult(0, true, false, 1, 0, 4, 0, "");
  EXPECT_EQ(p.Snapshot()[0].health, HealthState::kUnhealthy);
  p.ProbeResult(0, true, false, 1, 0, 4, 0, "");
  EXPECT_EQ(p.Snapshot()[0].health, HealthState::kHealthy);
  EXPECT_EQ(p.Pick("", {1, 2}), 0);
}

TEST(Pipeline, StagesAndStateFromHealth) {
  const auto health = nlohmann::json::parse(R"({"status": "healthy", "role": "head",
      "next_connected": false, "pipeline_state": "down",
      "stages": [{"layers": "0-13", "addr": "10.0.0.1:8080", "state": "up"},
                 {"layers": "14-27", "addr": "10.0.0.2:9100", "state": "down"}, 7]})");
  const std::vector<StageView> st = StagesFromHealth(health);
  ASSERT_EQ(st.size(), 2u);  // the malformed entry is skipped
  EXPECT_EQ(st[1].layers, "14-27");
  EXPECT_EQ(st[1].addr, "10.0.0.2:9100");
  EXPECT_EQ(st[1].state, "down");
  EXPECT_TRUE(PipelineDown(health));
  EXPECT_FALSE(PipelineDown(nlohmann::json::parse(R"({"status": "healthy"})")));
  EXPECT_FALSE(PipelineDown(nlohmann::json::parse(R"({"next_connected": true})")));
  EXPECT_TRUE(StagesFromHealth(nlohmann::json::parse(R"({"stages": "x"})")).empty());
  const nlohmann::json j = StagesJson(st);
  EXPECT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["addr"], "10.0.0.1:8080");

  auto pool = MakePoolPtr(cluster::RoutingPolicy::kRoundRobin);
  pool->ProbeStages(1, st);
  const std::vector<BackendView> v = pool->Snapshot();
  EXPECT_TRUE(v[0].stages.empty());
  EXPECT_EQ(v[1].stages.size(), 2u);
}

TEST(BackendPool, AvoidsMemoryPressureWhileOthersAreEligible) {
  for (const bool avoid : {false, true}) {
    cluster::RoutingConfig rc;
    rc.policy = cluster::RoutingPolicy::kRoundRobin;
    rc.avoid_memory_pressure = avoid;
    BackendPool p(Three(), rc, {}, {});
    for (int i = 0; i < 3; ++i) p.ProbeResult(i, true, false, 1, 0, 4, 0, "");
    NodeResources hot;
    hot.known = true;
    hot.memory_percent = 97;
    hot.memory_pressure = true;
    EXPECT_FALSE(p.ProbeResources(1, hot));
    EXPECT_TRUE(p.ProbeResources(1, hot));  // returns the previous state
    std::map<int, int> n;
    for (int k = 0; k < 30; ++k) {
      const int b = p.Pick("", {});
      ++n[b];
      p.Release(b, Outcome::kSuccess, 0.01, -1, "");
    }
    EXPECT_EQ(n[1], avoid ? 0 : 10) << "avoid_memory_pressure " << avoid;
    // The only eligible backend still gets work, pressure or not.
    EXPECT_EQ(p.Pick("", {0, 2}), 1);
  }
}

TEST(BackendPool, ResourcesFromHealth) {
  const auto j = nlohmann::json::parse(
      R"({"status":"healthy","resources":{"cpu_percent":12.5,"memory_percent":93.1,)"
      R"("disk_percent":40,"rss_bytes":1234,"warnings":["memory"],"memory_pressure":true}})");
  const NodeResources r = ResourcesFromHealth(j);
  EXPECT_TRUE(r.known);
  EXPECT_DOUBLE_EQ(r.cpu_percent, 12.5);
  EXPECT_DOUBLE_EQ(r.memory_percent, 93.1);
  EXPECT_EQ(r.rss_bytes, 1234u);
  EXPECT_TRUE(r.memory_pressure);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(NodeResourcesJson(r)["memory_pressure"], true);
  EXPECT_FALSE(ResourcesFromHealth(nlohmann::json::parse(R"({"status":"healthy"})")).known);
  EXPECT_TRUE(NodeResourcesJson(NodeResources{}).is_null());
  // Wrong types are ignored, not trusted.
  const NodeResources bad = ResourcesFromHealth(
      nlohmann::json::parse(R"({"resources":{"memory_pressure":"yes","warnings":[1,"cpu"]}})"));
  EXPECT_FALSE(bad.memory_pressure);
  EXPECT_EQ(bad.warnings, std::vector<std::string>{"cpu"});
}

}  // namespace
}  // namespace strata::gateway
