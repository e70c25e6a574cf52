// The gateway's view of its backends (replicas and pipeline heads): health from active
// probes, a circuit breaker fed by request outcomes, outstanding requests, latency, and the
// routing policies that pick one. No I/O: thread-safe state, unit-tested without sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/config.h"
#include "http/prom.h"

namespace strata::gateway {

using Clock = std::chrono::steady_clock;
using ::strata::http::Histogram;

enum class HealthState { kUnknown, kHealthy, kLoading, kUnhealthy };
enum class CircuitState { kClosed, kOpen, kHalfOpen };
const char* HealthName(HealthState h);
const char* CircuitName(CircuitState c);

struct BackendInfo {
  std::string name, host;
  int port = 0;
  std::string mode = "replica";  // replica | pipeline
  std::string layers = "auto";
};

// One stage of a pipeline backend, as its head's /health reports it.
struct StageView {
  std::string layers;  // "A-B"
  std::string addr;    // host:port ("" when the head does not know it)
  std::string state;   // up | down | unknown
};

// A node's host resources, as its /health reports them ("resources", src/http/resources.h).
struct NodeResources {
  bool known = false;  // the node reported them
  double cpu_percent = 0, memory_percent = 0, disk_percent = 0;
  uint64_t rss_bytes = 0;
  std::vector<std::string> warnings;  // "cpu" | "memory" | "disk"
  bool memory_pressure = false;
};

// A snapshot of one backend for /api/cluster and /metrics.
struct BackendView {
  BackendInfo info;
  HealthState health = HealthState::kUnknown;
  CircuitState circuit = CircuitState::kClosed;
  int outstanding = 0;
  int slots_busy = 0, slots_total = 0, waiting = 0;  // from the last probe
  double latency_ewma_ms = 0;                        // request latency
  double probe_ms = 0;                               // last probe round trip
  uint64_t requests = 0, errors = 0;
  std::string last_error;
  std::vector<StageView> stages;  // a pipeline head's chain (empty for a replica)
  NodeResources resources;        // from the last good probe
  Histogram latency{Histogram::LatencyBuckets()}, ttft{Histogram::LatencyBuckets()};
};

// Outcome of a proxied request for the passive health / circuit breaker.
enum class Outcome {
  kSuccess,
  kFailure,  // connection error, 5xx (but 503), broken stream: counts against the backend
  kNeutral,  // the node said "busy" (503) or the client went away: no verdict
};

class BackendPool {
 public:
  BackendPool(std::vector<BackendInfo> backends, const cluster::RoutingConfig& routing,
              const cluster::HealthConfig& health, const cluster::CircuitConfig& circuit);

  size_t size() const { return b_.size(); }
  const BackendInfo& info(int i) const { return b_[static_cast<size_t>(i)].view.info; }

  // Picks an eligible backend (healthy, circuit closed or a half-open trial) that is not in
  // `exclude`, by the policy, and counts it outstanding. -1: none eligible.
  // `affinity_key` is used by the affinity policy ("" -> least outstanding).
  int Pick(const std::string& affinity_key, const std::vector<int>& exclude,
           Clock::time_point now = Clock::now());
  // Ends a request picked with Pick. latency_s / ttft_s < 0: not observed.
  void Release(int i, Outcome outcome, double latency_s, double ttft_s, const std::string& error,
               Clock::time_point now = Clock::now());

  void ObserveTtft(int i, double ttft_s);
  // An active probe's result. `loading`: the node answered but is not ready.
  void ProbeResult(int i, bool ok, bool loading, double probe_ms, int slots_busy, int slots_total,
                   int waiting, const std::string& error);

  // A pipeline head's stages from its latest /health.
  void ProbeStages(int i, std::vector<StageView> stages);
  // The node's resources from its latest /health (routing.avoid_memory_pressure reads them).
  // Returns the previous memory_pressure.
  bool ProbeResources(int i, NodeResources r);
  HealthState health(int i);

  int HealthyCount(Clock::time_point now = Clock::now());
  std::vector<BackendView> Snapshot();

 private:
  struct Backend {
    BackendView view;
    int consecutive_probe_fail = 0, consecutive_probe_ok = 0;
    int consecutive_failures = 0;  // requests, for the breaker
    Clock::time_point open_until{};
    int half_open_inflight = 0;
  };
  bool Eligible(Backend& b, Clock::time_point now);
  int LeastOutstanding(const std::vector<int>& cand);

  std::mutex mu_;
  std::vector<Backend> b_;
  cluster::RoutingConfig routing_;
  cluster::HealthConfig health_;
  cluster::CircuitConfig circuit_;
  uint64_t rr_ = 0;
  std::mt19937_64 rng_{0x5eed};
  std::vector<std::pair<uint64_t, int>> ring_;  // (hash point, backend), sorted
};

// A node's /health answer: the stages a pipeline head reports (empty for a replica), and
// whether the pipeline behind a head is broken (a stage down: no new request should go there).
std::vector<StageView> StagesFromHealth(const nlohmann::json& health);
bool PipelineDown(const nlohmann::json& health);
NodeResources ResourcesFromHealth(const nlohmann::json& health);
// /api/cluster's "resources" of a backend (null when unknown).
nlohmann::json NodeResourcesJson(const NodeResources& r);
// /api/cluster's "stages": [{layers, addr, state}].
nlohmann::json StagesJson(const std::vector<StageView>& stages);

// 64-bit FNV-1a with a final mix: stable across runs and machines.
uint64_t StableHash(std::string_view s);

}  // namespace strata::gateway
