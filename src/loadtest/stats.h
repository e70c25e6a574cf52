// Serving-benchmark arithmetic of `strata loadtest`: per-request results, percentiles and the
// per-level metrics, with the definitions of vLLM's benchmark_serving.py (docs/loadtest.md).
// No I/O: unit-tested in loadtest_test.cc.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace strata::loadtest {

// What one request measured on the client. Times in seconds from the request's send.
struct RequestResult {
  bool ok = false;
  std::string error;           // kind when !ok: "connect", "timeout", "http_401", "stream", ...
  std::string error_detail;    // first words of the server's message, for the report
  double ttft = 0;             // first chunk carrying generated text (streaming only)
  double latency = 0;          // end to end: send to the last byte
  std::vector<double> itl;     // gaps between consecutive text chunks (streaming only)
  int64_t prompt_tokens = -1;  // from the server's usage; -1 when it sent none
  int64_t output_tokens = -1;
  int64_t chunks = 0;           // text chunks received
  int64_t prompt_estimate = 0;  // the client's own estimate of the prompt's length
};

// numpy's default (linear interpolation between closest ranks) percentile, p in [0, 100].
// 0 for an empty sample.
double Percentile(std::vector<double> v, double p);

// Summary of one latency sample in milliseconds.
struct Dist {
  size_t count = 0;
  double mean = 0, median = 0, std = 0, p50 = 0, p90 = 0, p99 = 0, min = 0, max = 0;
};
Dist Summarize(const std::vector<double>& seconds);

struct LevelMetrics {
  size_t requests = 0, completed = 0, failed = 0;
  std::map<std::string, size_t> errors;  // kind -> count
  std::string first_error;               // one example message
  double duration_s = 0;
  int64_t total_input = 0, total_output = 0;
  double request_throughput = 0, output_throughput = 0, total_token_throughput = 0;
  bool streamed = true;
  Dist ttft, tpot, itl, e2el;
};

// The metrics of one level from its requests and the wall time the level took. Output length
// of a request: the server's usage.completion_tokens, else the number of text chunks.
LevelMetrics ComputeLevel(const std::vector<RequestResult>& results, double duration_s,
                          bool streamed);

}  // namespace strata::loadtest
