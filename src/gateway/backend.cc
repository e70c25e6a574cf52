#include "gateway/backend.h"

#include <algorithm>

namespace strata::gateway {

const char* HealthName(HealthState h) {
  switch (h) {
    case HealthState::kUnknown: return "unknown";
    case HealthState::kHealthy: return "healthy";
    case HealthState::kLoading: return "loading";
    case HealthState::kUnhealthy: return "unhealthy";
  }
  return "?";
}

const char* CircuitName(CircuitState c) {
  switch (c) {
    case CircuitState::kClosed: return "closed";
    case CircuitState::kOpen: return "open";
    case CircuitState::kHalfOpen: return "half_open";
  }
  return "?";
}

uint64_t StableHash(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // splitmix64 finalizer: spreads nearby inputs over the ring.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

BackendPool::BackendPool(std::vector<BackendInfo> backends, const cluster::RoutingConfig& routing,
                         const cluster::HealthConfig& health, const cluster::CircuitConfig& circuit)
    : routing_(routing), health_(health), circuit_(circuit) {
  for (size_t i = 0; i < backends.size(); ++i) {
    Backend b;
    b.view.info = std::move(backends[i]);
    for (int v = 0; v < routing_.affinity_vnodes; ++v)
      ring_.emplace_back(StableHash(b.view.info.name + "#" + std::to_string(v)),
                         static_cast<int>(i));
    b_.push_back(std::move(b));
  }
  std::sort(ring_.begin(), ring_.end());
}

bool BackendPool::Eligible(Backend& b, Clock::time_point now) {
  if (b.view.health != HealthState::kHealthy) return false;
  switch (b.view.circuit) {
    case CircuitState::kClosed: return true;
    case CircuitState::kOpen:
      if (now < b.open_until) return false;
      b.view.circuit = CircuitState::kHalfOpen;
      b.half_open_inflight = 0;
      [[fallthrough]];
    case CircuitState::kHalfOpen: return b.half_open_inflight < circuit_.half_open_max;
  }
  return false;
}

int BackendPool::LeastOutstanding(const std::vector<int>& cand) {
  // Ties rotate so that an idle cluster still spreads requests.
  int best = -1;
  const size_t start = static_cast<size_t>(rr_++ % cand.size());
  for (size_t k = 0; k < cand.size(); ++k) {
    const int i = cand[(start + k) % cand.size()];
    if (best < 0 || b_[i].view.outstanding < b_[best].view.outstanding) best = i;
  }
  return best;
}

int BackendPool::Pick(const std::string& affinity_key, const std::vector<int>& exclude,
                      Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> cand;
  for (size_t i = 0; i < b_.size(); ++i) {
    const int ii = static_cast<int>(i);
    if (std::find(exclude.begin(), exclude.end(), ii) != exclude.end()) continue;
    if (Eligible(b_[i], now)) cand.push_back(ii);
  }
  if (cand.empty()) return -1;
  if (routing_.avoid_memory_pressure) {
    // Nodes under memory pressure get new work only when no other backend is eligible.
    std::vector<int> relaxed;
    for (int i : cand)
      if (!b_[i].view.resources.memory_pressure) relaxed.push_back(i);
    if (!relaxed.empty()) cand.swap(relaxed);
  }
  int pick = -1;
  switch (routing_.policy) {
    case cluster::RoutingPolicy::kRoundRobin: {
      // Walk the full list from the cursor so the rotation is even over all backends.
      for (size_t k = 0; k < b_.size() && pick < 0; ++k) {
        const int i = static_cast<int>((rr_ + k) % b_.size());
        if (std::find(cand.begin(), cand.end(), i) != cand.end()) {
          pick = i;
          rr_ = rr_ + k + 1;
        }
      }
      break;
    }
    case cluster::RoutingPolicy::kLeastOutstanding: pick = LeastOutstanding(cand); break;
    case cluster::RoutingPolicy::kPowerOfTwo: {
      if (cand.size() == 1) {
        pick = cand[0];
        break;
      }
      std::uniform_int_distribution<size_t> d(0, cand.size() - 1);
      const size_t a = d(rng_);
      size_t b = d(rng_);
      while (b == a) b = d(rng_);
      const int x = cand[a], y = cand[b];
      pick = b_[y].view.outstanding < b_[x].view.outstanding ? y : x;
      break;
    }
    case cluster::RoutingPolicy::kAffinity: {
      const int least = LeastOutstanding(cand);
      if (affinity_key.empty() || ring_.empty()) {
        pick = least;
        break;
      }
      const uint64_t h = StableHash(affinity_key);
      auto it = std::lower_bound(ring_.begin(), ring_.end(), std::make_pair(h, -1));
      for (size_t k = 0; k < ring_.size() && pick < 0; ++k, ++it) {
        if (it == ring_.end()) it = ring_.begin();
        if (std::find(cand.begin(), cand.end(), it->second) != cand.end()) pick = it->second;
      }
      // Too uneven: the affine backend has far more in flight than the least loaded one.
      const double limit =
          std::max<double>(routing_.affinity_min_load,
                           routing_.affinity_max_load_factor * (b_[least].view.outstanding + 1));
      if (pick < 0 || b_[pick].view.outstanding >= limit) pick = least;
      break;
    }
  }
  Backend& b = b_[pick];
  ++b.view.outstanding;
  ++b.view.requests;
  if (b.view.circuit == CircuitState::kHalfOpen) ++b.half_open_inflight;
  return pick;
}

void BackendPool::Release(int i, Outcome outcome, double latency_s, double ttft_s,
                          const std::string& error, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  Backend& b = b_[static_cast<size_t>(i)];
  b.view.outstanding = std::max(0, b.view.outstanding - 1);
  if (b.view.circuit == CircuitState::kHalfOpen)
    b.half_open_inflight = std::max(0, b.half_open_inflight - 1);
  if (latency_s >= 0) {
    b.view.latency.Observe(latency_s);
    const double ms = latency_s * 1000;
    b.view.latency_ewma_ms =
        b.view.latency_ewma_ms == 0 ? ms : 0.8 * b.view.latency_ewma_ms + 0.2 * ms;
  }
  if (ttft_s >= 0) b.view.ttft.Observe(ttft_s);
  if (outcome == Outcome::kSuccess) {
    b.consecutive_failures = 0;
    if (b.view.circuit != CircuitState::kClosed) b.view.circuit = CircuitState::kClosed;
  } else if (outcome == Outcome::kFailure) {
    ++b.view.errors;
    b.view.last_error = error;
    ++b.consecutive_failures;
    if (b.view.circuit == CircuitState::kHalfOpen ||
        b.consecutive_failures >= circuit_.failure_threshold) {
      b.view.circuit = CircuitState::kOpen;
      b.open_until = now + std::chrono::milliseconds(circuit_.open_ms);
    }
  }
}

void BackendPool::ObserveTtft(int i, double ttft_s) {
  std::lock_guard<std::mutex> lock(mu_);
  b_[static_cast<size_t>(i)].view.ttft.Observe(ttft_s);
}

void BackendPool::ProbeResult(int i, bool ok, bool loading, double probe_ms, int slots_busy,
                              int slots_total, int waiting, const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  Backend& b = b_[static_cast<size_t>(i)];
  b.view.probe_ms = probe_ms;
  if (ok) {
    b.view.slots_busy = slots_busy;
    b.view.slots_total = slots_total;
    b.view.waiting = waiting;
    b.consecutive_probe_fail = 0;
    ++b.consecutive_probe_ok;
    const bool was_down = b.view.health != HealthState::kHealthy;
    if (b.view.health == HealthState::kUnknown || b.view.health == HealthState::kLoading ||
        b.consecutive_probe_ok >= health_.healthy_threshold) {
      b.view.health = HealthState::kHealthy;
      if (was_down) {  // re-admitted: start with a clean breaker
        b.view.circuit = CircuitState::kClosed;
        b.consecutive_failures = 0;
      }
    }
    return;
  }
  b.consecutive_probe_ok = 0;
  ++b.consecutive_probe_fail;
  b.view.last_error = error;
  if (loading) {
    b.view.health = HealthState::kLoading;
  } else if (b.view.health == HealthState::kUnknown || b.view.health == HealthState::kLoading ||
             b.consecutive_probe_fail >= health_.unhealthy_threshold) {
    b.view.health = HealthState::kUnhealthy;
  }
}

int BackendPool::HealthyCount(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (Backend& b : b_)
    if (b.view.health == HealthState::kHealthy &&
        (b.view.circuit != CircuitState::kOpen || now >= b.open_until))
      ++n;
  return n;
}

void BackendPool::ProbeStages(int i, std::vector<StageView> stages) {
  std::lock_guard<std::mutex> lock(mu_);
  b_[static_cast<size_t>(i)].view.stages = std::move(stages);
}

bool BackendPool::ProbeResources(int i, NodeResources r) {
  std::lock_guard<std::mutex> lock(mu_);
  NodeResources& cur = b_[static_cast<size_t>(i)].view.resources;
  const bool was = cur.memory_pressure;
  cur = std::move(r);
  return was;
}

HealthState BackendPool::health(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  return b_[static_cast<size_t>(i)].view.health;
}

NodeResources ResourcesFromHealth(const nlohmann::json& health) {
  NodeResources r;
  if (!health.is_object() || !health.contains("resources") || !health["resources"].is_object())
    return r;
  const nlohmann::json& j = health["resources"];
  auto num = [&](const char* k) {
    return j.contains(k) && j[k].is_number() ? j[k].get<double>() : 0.0;
  };
  r.known = true;
  r.cpu_percent = num("cpu_percent");
  r.memory_percent = num("memory_percent");
  r.disk_percent = num("disk_percent");
  r.rss_bytes = j.contains("rss_bytes") && j["rss_bytes"].is_number_unsigned()
                    ? j["rss_bytes"].get<uint64_t>()
                    : 0;
  if (j.contains("warnings") && j["warnings"].is_array())
    for (const nlohmann::json& w : j["warnings"])
      if (w.is_string()) r.warnings.push_back(w.get<std::string>());
  r.memory_pressure = j.contains("memory_pressure") && j["memory_pressure"].is_boolean() &&
                      j["memory_pressure"].get<bool>();
  return r;
}

nlohmann::json NodeResourcesJson(const NodeResources& r) {
  if (!r.known) return nullptr;
  return {{"cpu_percent", r.cpu_percent},   {"memory_percent", r.memory_percent},
          {"disk_percent", r.disk_percent}, {"rss_bytes", r.rss_bytes},
          {"warnings", r.warnings},         {"memory_pressure", r.memory_pressure}};
}

std::vector<StageView> StagesFromHealth(const nlohmann::json& health) {
  std::vector<StageView> out;
  if (!health.is_object() || !health.contains("stages") || !health["stages"].is_array()) return out;
  auto str = [](const nlohmann::json& o, const char* k) {
    return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string();
  };
  for (const nlohmann::json& s : health["stages"])
    if (s.is_object()) out.push_back(StageView{str(s, "layers"), str(s, "addr"), str(s, "state")});
  return out;
}

bool PipelineDown(const nlohmann::json& health) {
  return health.is_object() && health.contains("next_connected") &&
         health["next_connected"].is_boolean() && !health["next_connected"].get<bool>();
}

nlohmann::json StagesJson(const std::vector<StageView>& stages) {
  nlohmann::json a = nlohmann::json::array();
  for (const StageView& s : stages)
    a.push_back({{"layers", s.layers}, {"addr", s.addr}, {"state", s.state}});
  return a;
}

std::vector<BackendView> BackendPool::Snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<BackendView> out;
  for (const Backend& b : b_) out.push_back(b.view);
  return out;
}

}  // namespace strata::gateway
