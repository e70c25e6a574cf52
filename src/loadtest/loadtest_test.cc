// Unit tests of the loadtest arithmetic (percentiles, vLLM's metric definitions), the chunk
// parser, URL handling, the workload and the SVG chart.
#include <gtest/gtest.h>

#include <set>

#include "loadtest/client.h"
#include "loadtest/report.h"
#include "loadtest/runner.h"
#include "loadtest/stats.h"

namespace strata::loadtest {
namespace {

TEST(Percentile, MatchesNumpyLinearInterpolation) {
  // numpy: np.percentile([1,2,3,4], [0,50,90,99,100]) -> 1, 2.5, 3.7, 3.97, 4
  const std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  EXPECT_NEAR(Percentile(v, 90), 3.7, 1e-12);
  EXPECT_NEAR(Percentile(v, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
  // np.percentile(range(1, 101), 99) -> 99.01
  std::vector<double> h;
  for (int i = 1; i <= 100; ++i) h.push_back(i);
  EXPECT_NEAR(Percentile(h, 99), 99.01, 1e-9);
  EXPECT_NEAR(Percentile(h, 90), 90.1, 1e-9);
}

TEST(Summarize, MillisecondsMeanPopulationStd) {
  const Dist d = Summarize({0.001, 0.002, 0.003, 0.004});
  EXPECT_EQ(d.count, 4u);
  EXPECT_NEAR(d.mean, 2.5, 1e-9);
  EXPECT_NEAR(d.median, 2.5, 1e-9);
  EXPECT_NEAR(d.std, 1.118033988749895, 1e-9);  // np.std([1,2,3,4])
  EXPECT_NEAR(d.min, 1, 1e-9);
  EXPECT_NEAR(d.max, 4, 1e-9);
}

RequestResult Ok(double ttft, double latency, std::vector<double> itl, int64_t out, int64_t in) {
  RequestResult r;
  r.ok = true;
  r.ttft = ttft;
  r.latency = latency;
  r.itl = std::move(itl);
  r.output_tokens = out;
  r.prompt_tokens = in;
  r.chunks = static_cast<int64_t>(r.itl.size()) + 1;
  return r;
}

TEST(ComputeLevel, VllmDefinitions) {
  std::vector<RequestResult> rs;
  rs.push_back(Ok(0.1, 1.1, {0.2, 0.3, 0.5}, 5, 10));  // TPOT (1.1-0.1)/4 = 0.25
  rs.push_back(Ok(0.3, 0.3, {}, 1, 20));               // one token: no TPOT
  RequestResult bad;
  bad.error = "http_401";
  bad.error_detail = "missing API key";
  rs.push_back(bad);
  RequestResult bad2;
  bad2.error = "connect";
  rs.push_back(bad2);
  const LevelMetrics m = ComputeLevel(rs, 2.0, true);
  EXPECT_EQ(m.requests, 4u);
  EXPECT_EQ(m.completed, 2u);
  EXPECT_EQ(m.failed, 2u);
  EXPECT_EQ(m.errors.at("http_401"), 1u);
  EXPECT_EQ(m.errors.at("connect"), 1u);
  EXPECT_EQ(m.first_error, "missing API key");
  EXPECT_EQ(m.total_output, 6);
  EXPECT_EQ(m.total_input, 30);
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(m.output_throughput, 3.0);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 18.0);
  EXPECT_EQ(m.tpot.count, 1u);
  EXPECT_NEAR(m.tpot.mean, 250, 1e-9);
  EXPECT_EQ(m.itl.count, 3u);  // gaps of all requests pooled
  EXPECT_NEAR(m.itl.mean, 1000.0 / 3, 1e-9);
  EXPECT_NEAR(m.ttft.mean, 200, 1e-9);
  EXPECT_NEAR(m.e2el.mean, 700, 1e-9);
}

TEST(ComputeLevel, FallsBackToChunksAndEstimates) {
  RequestResult r = Ok(0.1, 0.4, {0.1, 0.2}, -1, -1);
  r.prompt_estimate = 7;
  const LevelMetrics m = ComputeLevel({r}, 1.0, true);
  EXPECT_EQ(m.total_output, 3);
  EXPECT_EQ(m.total_input, 7);
  EXPECT_NEAR(m.tpot.mean, 150, 1e-9);
  const LevelMetrics ns = ComputeLevel({r}, 1.0, false);  // not streamed: no TTFT/TPOT/ITL
  EXPECT_EQ(ns.ttft.count, 0u);
  EXPECT_EQ(ns.tpot.count, 0u);
  EXPECT_EQ(ns.e2el.count, 1u);
}

TEST(ParseChunk, TextUsageAndErrors) {
  bool text = false;
  int64_t p = -1, c = -1;
  std::string err;
  EXPECT_TRUE(ParseChunk(R"({"choices":[{"delta":{"content":"hi"}}]})", &text, &p, &c, &err));
  EXPECT_TRUE(text);
  EXPECT_TRUE(
      ParseChunk(R"({"choices":[{"delta":{"reasoning_content":"hm"}}]})", &text, &p, &c, &err));
  EXPECT_TRUE(text);
  EXPECT_TRUE(ParseChunk(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})", &text, &p,
                         &c, &err));
  EXPECT_FALSE(text);
  EXPECT_TRUE(ParseChunk(R"({"choices":[{"text":"x"}]})", &text, &p, &c, &err));
  EXPECT_TRUE(text);
  EXPECT_TRUE(ParseChunk(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}})",
                         &text, &p, &c, &err));
  EXPECT_FALSE(text);
  EXPECT_EQ(p, 12);
  EXPECT_EQ(c, 5);
  EXPECT_TRUE(err.empty());
  EXPECT_TRUE(ParseChunk(R"({"error":{"message":"boom"}})", &text, &p, &c, &err));
  EXPECT_NE(err.find("boom"), std::string::npos);
  EXPECT_FALSE(ParseChunk("not json", &text, &p, &c, &err));
}

TEST(ParseTarget, UrlsAndEndpoints) {
  auto t = ParseTarget("http://127.0.0.1:8080", "/v1/chat/completions");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, "8080");
  EXPECT_EQ(t->path, "/v1/chat/completions");
  t = ParseTarget("http://h/v1/", "/v1/completions");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->port, "80");
  EXPECT_EQ(t->path, "/v1/completions");
  t = ParseTarget("http://[::1]:9/v1/completions", "/v1/chat/completions");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->path, "/v1/completions");
  EXPECT_FALSE(ParseTarget("https://x:1", "/v1/completions").ok());
  EXPECT_FALSE(ParseTarget("http://x:abc", "/v1/completions").ok());
}

// Every level and the warm-up send prompts of their own (a prompt cache in the server cannot
// answer a level from an earlier one), as long as the workload has enough of them.
TEST(Workload, LevelsUseDistinctPrompts) {
  LoadOptions o;
  o.prompt_tokens = 12;
  o.requests = 30;
  o.warmup = 2;
  o.levels = 3;
  auto w = BuildWorkload(o);
  ASSERT_TRUE(w.ok());
  ASSERT_GE(w->bodies.size(), 92u);
  std::set<std::string> seen;
  for (size_t i = 0; i < static_cast<size_t>(o.warmup); ++i) seen.insert(w->bodies[i]);
  for (size_t k = 0; k < 3; ++k) {
    Level level;
    level.first_prompt = FirstPrompt(o, k);
    for (size_t i = 0; i < static_cast<size_t>(o.requests); ++i) {
      const size_t idx = PromptIndex(level, i, w->bodies.size());
      EXPECT_TRUE(seen.insert(w->bodies[idx]).second) << "level " << k << " request " << i;
    }
  }
  EXPECT_EQ(seen.size(), 92u);
  Level wrap;  // past the end: round robin
  wrap.first_prompt = w->bodies.size() - 1;
  EXPECT_EQ(PromptIndex(wrap, 1, w->bodies.size()), 0u);
}

TEST(Workload, FixedLengthPromptsAndBodies) {
  EXPECT_EQ(SyntheticPrompt(5, 3), SyntheticPrompt(5, 3));
  EXPECT_NE(SyntheticPrompt(20, 3), SyntheticPrompt(20, 4));
  const std::string p = SyntheticPrompt(50, 1);
  EXPECT_EQ(std::count(p.begin(), p.end(), ' '), 49);
  LoadOptions o;
  o.prompt_tokens = 10;
  o.output_tokens = 7;
  o.ignore_eos = true;
  o.requests = 3;
  auto w = BuildWorkload(o);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->bodies.size(), 64u);
  const auto j = nlohmann::json::parse(w->bodies[0]);
  EXPECT_EQ(j["max_tokens"], 7);
  EXPECT_EQ(j["min_tokens"], 7);
  EXPECT_EQ(j["ignore_eos"], true);
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
  EXPECT_EQ(j["messages"][0]["role"], "user");
  EXPECT_FALSE(j.contains("model"));
  EXPECT_GE(w->prompt_estimates[0], 10);  // words, plus a little for punctuation
  EXPECT_LE(w->prompt_estimates[0], 12);
}

TEST(Svg, NiceTicksAndChart) {
  EXPECT_EQ(NiceTicks(9.3, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(NiceTicks(0, 5), (std::vector<double>{0, 1}));
  const auto t = NiceTicks(1234, 5);
  EXPECT_DOUBLE_EQ(t[1], 500);
  EXPECT_GE(t.back(), 1234);
  std::vector<LevelRun> runs;
  for (int c : {1, 2, 4}) {
    LevelRun r;
    r.level.concurrency = c;
    r.metrics = ComputeLevel({Ok(0.05 * c, 0.5 * c, {0.1, 0.1}, 3, 5)}, 1.0, true);
    runs.push_back(r);
  }
  const std::string svg = RenderSvg("a <b> & c", runs);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("a &lt;b&gt; &amp; c"), std::string::npos);
  EXPECT_NE(svg.find("TTFT p99"), std::string::npos);
  EXPECT_NE(svg.find("concurrency"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '<') - std::count(svg.begin(), svg.end(), '>'), 0);
}

}  // namespace
}  // namespace strata::loadtest
