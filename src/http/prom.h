// Prometheus text-format primitives shared by the node and the gateway: a fixed-bucket
// histogram and helpers for HELP/TYPE headers, single-value metrics and label escaping.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace strata::http {

// Not synchronized: the owner guards it.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // upper bounds, ascending
  static std::vector<double> LatencyBuckets();     // seconds, 5 ms .. 120 s

  void Observe(double v);
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  // Appends name_bucket{labels,le=...} (cumulative), name_sum and name_count lines.
  // labels: `a="b"` or "".
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last: +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

// A number as Prometheus writes it (+Inf, -Inf, shortest exact-enough decimal).
std::string PromNum(double v);
// Appends "# HELP name help" and "# TYPE name type".
void PromHeader(const std::string& name, const char* type, const std::string& help,
                std::string* out);
// Appends the header and one unlabelled sample.
void PromMetric(const std::string& name, const char* type, const std::string& help, double value,
                std::string* out);
// PromMetric of a counter: a total of events or units.
void PromCounter(const std::string& name, const std::string& help, uint64_t value,
                 std::string* out);
// Escapes a label value.
std::string PromEscape(const std::string& s);

}  // namespace strata::http
