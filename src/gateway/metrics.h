// Prometheus primitives of the gateway: a fixed-bucket histogram and text-format helpers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace strata::gateway {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  static std::vector<double> LatencyBuckets();  // seconds, 5 ms .. 120 s

  void Observe(double v);
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  // Appends name_bucket{labels,le=...}, name_sum, name_count lines. labels: `a="b"` or "".
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last: +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Escapes a Prometheus label value.
std::string PromEscape(const std::string& s);

}  // namespace strata::gateway
