// Prometheus text exposition for the node: request gauges, token counters, latency
// histograms (time to first token, inter-token latency), KV cache use, and process CPU,
// memory and model-file disk usage.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "http/prom.h"
#include "runtime/scheduler.h"

namespace strata::node {

class Metrics {
 public:
  Metrics();
  void ObserveTtft(double seconds);
  void ObserveInterToken(double seconds);
  void CountHttp(int status);  // a response sent
  void CountRejected();        // 503 because the queue was full

  // The whole exposition. stats may be null (model still loading).
  std::string Render(const SchedulerStats* stats, const std::string& model_path) const;

 private:
  static void RenderSpec(const SchedulerStats& s, std::string* out);  // strata_spec_*
  mutable std::mutex mu_;
  ::strata::http::Histogram ttft_, itl_;
  std::map<int, uint64_t> http_;
  uint64_t rejected_ = 0;
};

// Process CPU time (user + system) in seconds.
double ProcessCpuSeconds();

}  // namespace strata::node
