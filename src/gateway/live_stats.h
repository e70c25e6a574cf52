// The gateway's live view for its dashboard (/api/dashboard): a ring of per-second points
// (requests/s, completion tokens/s, errors/s, TTFT and latency percentiles over a trailing
// window, requests active and queued) and a ring of recent events (failovers, retries, backend
// health changes, errors). No I/O: thread-safe state, unit-tested without sockets.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace strata::gateway {

struct LiveEvent {
  int64_t t_ms = 0;  // unix milliseconds
  std::string kind;  // failover | retry | error | backend_down | backend_up | memory_pressure
  std::string backend, message, request_id;
};

class LiveStats {
 public:
  struct Options {
    size_t points = 300;            // kept per-tick points (5 minutes at one a second)
    size_t events = 64;             // kept events
    size_t window_ticks = 10;       // percentiles over the samples of this many ticks
    size_t samples_per_tick = 512;  // latency samples kept per tick (a reservoir beyond)
  };
  LiveStats() : LiveStats(Options{}) {}
  explicit LiveStats(Options o);

  // A finished generation request. ttft_s < 0: not a stream (or no byte); tokens < 0: unknown.
  void Record(double latency_s, double ttft_s, int64_t tokens, bool error);
  // Closes the current tick: rates over the time since the previous tick, percentiles over
  // the trailing window. now_ms: unix milliseconds.
  void Tick(int64_t now_ms, int active, int queued);
  void Event(LiveEvent e);

  // {"t": [...], "rps", "tps", "eps", "ttft_p50", "ttft_p90", "ttft_p99",
  //  "latency_p50", "latency_p90", "latency_p99", "active", "queued" (columns, oldest first;
  //  percentiles in ms, null without samples), "totals": {requests, errors, tokens},
  //  "events": [{t_ms, kind, backend, message, request_id}] newest first}
  nlohmann::json Json() const;

  // Nearest-rank percentile (p in [0, 100]) of unsorted samples; -1 when empty.
  static double Percentile(std::vector<double> v, double p);

 private:
  struct Bucket {
    uint64_t requests = 0, errors = 0, tokens = 0, seen = 0;
    std::vector<double> ttft, latency;
  };
  struct Point {
    int64_t t_ms = 0;
    double rps = 0, tps = 0, eps = 0;
    double ttft[3] = {-1, -1, -1}, lat[3] = {-1, -1, -1};
    int active = 0, queued = 0;
  };
  void Keep(std::vector<double>* v, double x, uint64_t seen);

  Options o_;
  mutable std::mutex mu_;
  Bucket cur_;
  std::deque<Bucket> window_;  // closed buckets of the trailing window
  std::deque<Point> points_;
  std::deque<LiveEvent> events_;
  int64_t last_tick_ms_ = 0;
  uint64_t total_requests_ = 0, total_errors_ = 0, total_tokens_ = 0;
  uint64_t rng_ = 0x9e3779b97f4a7c15ull;
};

}  // namespace strata::gateway
