#include "loadtest/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace strata::loadtest {

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  p = std::clamp(p, 0.0, 100.0);
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return v[lo] + (v[hi] - v[lo]) * frac;
}

Dist Summarize(const std::vector<double>& seconds) {
  Dist d;
  d.count = seconds.size();
  if (seconds.empty()) return d;
  std::vector<double> ms(seconds.size());
  std::transform(seconds.begin(), seconds.end(), ms.begin(), [](double s) { return s * 1000; });
  const double n = static_cast<double>(ms.size());
  d.mean = std::accumulate(ms.begin(), ms.end(), 0.0) / n;
  double var = 0;
  for (double x : ms) var += (x - d.mean) * (x - d.mean);
  d.std = std::sqrt(var / n);  // population standard deviation, as numpy's np.std
  d.median = d.p50 = Percentile(ms, 50);
  d.p90 = Percentile(ms, 90);
  d.p99 = Percentile(ms, 99);
  const auto [mn, mx] = std::minmax_element(ms.begin(), ms.end());
  d.min = *mn;
  d.max = *mx;
  return d;
}

LevelMetrics ComputeLevel(const std::vector<RequestResult>& results, double duration_s,
                          bool streamed) {
  LevelMetrics m;
  m.requests = results.size();
  m.duration_s = duration_s;
  m.streamed = streamed;
  std::vector<double> ttfts, tpots, itls, e2els;
  for (const RequestResult& r : results) {
    if (!r.ok) {
      ++m.failed;
      ++m.errors[r.error.empty() ? "other" : r.error];
      if (m.first_error.empty()) m.first_error = r.error_detail;
      continue;
    }
    ++m.completed;
    const int64_t out = r.output_tokens >= 0 ? r.output_tokens : r.chunks;
    m.total_output += out;
    m.total_input += r.prompt_tokens >= 0 ? r.prompt_tokens : r.prompt_estimate;
    e2els.push_back(r.latency);
    if (!streamed) continue;
    ttfts.push_back(r.ttft);
    if (out > 1) tpots.push_back((r.latency - r.ttft) / static_cast<double>(out - 1));
    itls.insert(itls.end(), r.itl.begin(), r.itl.end());
  }
  if (duration_s > 0) {
    m.request_throughput = static_cast<double>(m.completed) / duration_s;
    m.output_throughput = static_cast<double>(m.total_output) / duration_s;
    m.total_token_throughput = static_cast<double>(m.total_input + m.total_output) / duration_s;
  }
  m.ttft = Summarize(ttfts);
  m.tpot = Summarize(tpots);
  m.itl = Summarize(itls);
  m.e2el = Summarize(e2els);
  return m;
}

}  // namespace strata::loadtest
