#include "gateway/live_stats.h"

#include <algorithm>
#include <cmath>

namespace strata::gateway {

using nlohmann::json;

LiveStats::LiveStats(Options o) : o_(o) {}

double LiveStats::Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(v.size()));
  const size_t i = static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(v.size()))) - 1;
  return v[i];
}

void LiveStats::Keep(std::vector<double>* v, double x, uint64_t seen) {
  if (v->size() < o_.samples_per_tick) {
    v->push_back(x);
    return;
  }
  // Reservoir sampling: each of the `seen` samples stays with equal probability.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const uint64_t j = rng_ % seen;
  if (j < v->size()) (*v)[j] = x;
}

void LiveStats::Record(double latency_s, double ttft_s, int64_t tokens, bool error) {
  std::lock_guard<std::mutex> lock(mu_);
  ++cur_.requests;
  ++cur_.seen;
  ++total_requests_;
  if (error) {
    ++cur_.errors;
    ++total_errors_;
  }
  if (tokens > 0) {
    cur_.tokens += static_cast<uint64_t>(tokens);
    total_tokens_ += static_cast<uint64_t>(tokens);
  }
  if (error) return;  // percentiles of served requests only
  if (latency_s >= 0) Keep(&cur_.latency, latency_s * 1000, cur_.seen);
  if (ttft_s >= 0) Keep(&cur_.ttft, ttft_s * 1000, cur_.seen);
}

void LiveStats::Tick(int64_t now_ms, int active, int queued) {
  std::lock_guard<std::mutex> lock(mu_);
  Point p;
  p.t_ms = now_ms;
  const double dt = last_tick_ms_ > 0 && now_ms > last_tick_ms_
                        ? static_cast<double>(now_ms - last_tick_ms_) / 1000.0
                        : 1.0;
  last_tick_ms_ = now_ms;
  p.rps = static_cast<double>(cur_.requests) / dt;
  p.tps = static_cast<double>(cur_.tokens) / dt;
  p.eps = static_cast<double>(cur_.errors) / dt;
  p.active = active;
  p.queued = queued;
  window_.push_back(std::move(cur_));
  cur_ = Bucket{};
  while (window_.size() > o_.window_ticks) window_.pop_front();
  std::vector<double> ttft, lat;
  for (const Bucket& b : window_) {
    ttft.insert(ttft.end(), b.ttft.begin(), b.ttft.end());
    lat.insert(lat.end(), b.latency.begin(), b.latency.end());
  }
  const double qs[3] = {50, 90, 99};
  for (int i = 0; i < 3; ++i) {
    p.ttft[i] = Percentile(ttft, qs[i]);
    p.lat[i] = Percentile(lat, qs[i]);
  }
  points_.push_back(p);
  while (points_.size() > o_.points) points_.pop_front();
}

void LiveStats::Event(LiveEvent e) {
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_front(std::move(e));
  while (events_.size() > o_.events) events_.pop_back();
}

json LiveStats::Json() const {
  std::lock_guard<std::mutex> lock(mu_);
  json t = json::array(), rps = json::array(), tps = json::array(), eps = json::array(),
       active = json::array(), queued = json::array();
  json ttft[3] = {json::array(), json::array(), json::array()};
  json lat[3] = {json::array(), json::array(), json::array()};
  auto ms = [](double v) { return v < 0 ? json(nullptr) : json(std::round(v * 10) / 10); };
  auto rate = [](double v) { return std::round(v * 100) / 100; };
  for (const Point& p : points_) {
    t.push_back(p.t_ms);
    rps.push_back(rate(p.rps));
    tps.push_back(rate(p.tps));
    eps.push_back(rate(p.eps));
    active.push_back(p.active);
    queued.push_back(p.queued);
    for (int i = 0; i < 3; ++i) {
      ttft[i].push_back(ms(p.ttft[i]));
      lat[i].push_back(ms(p.lat[i]));
    }
  }
  json events = json::array();
  for (const LiveEvent& e : events_)
    events.push_back({{"t_ms", e.t_ms},
                      {"kind", e.kind},
                      {"backend", e.backend},
                      {"message", e.message},
                      {"request_id", e.request_id}});
  return {{"t", t},
          {"rps", rps},
          {"tps", tps},
          {"eps", eps},
          {"ttft_p50", ttft[0]},
          {"ttft_p90", ttft[1]},
          {"ttft_p99", ttft[2]},
          {"latency_p50", lat[0]},
          {"latency_p90", lat[1]},
          {"latency_p99", lat[2]},
          {"active", active},
          {"queued", queued},
          {"totals",
           {{"requests", total_requests_}, {"errors", total_errors_}, {"tokens", total_tokens_}}},
          {"events", events}};
}

}  // namespace strata::gateway
